"""One call from request text to decision: modifiers, content pre-check, LLM or rules draft, assembly."""

from __future__ import annotations

import random

from services.planner.planning.decision import PlanDecision, Refusal
from services.planner.planning.errors import PlanningError
from services.planner.planning.llm import LlmPlanner
from services.planner.planning.modifiers import parse_modifiers
from services.planner.planning.plan import plan_request
from services.planner.planning.content_policy import check_words, content_limit
from services.planner.planning.profiles import CharacterProfile, UserPolicy
from services.planner.planning.registry import Registry
from services.planner.planning.rules import draft_by_rules
from services.planner.planning.text_to_image import plan_text_to_image

__all__ = ["NO_LLM_NOTE", "Planner"]

NO_LLM_NOTE = "no LLM configured; planned by rules"


class Planner:
    """Plans requests with the LLM when one is configured, with the rules otherwise.

    Every `PlanningError` a request causes (a bad `--flag`, a LoRA stack over the limit, a character
    pointing at a missing LoRA) comes back as a `Refusal` with the error's rule, so the saga records
    ChainRefused and no request can become a poison message. Registry files are checked at load,
    before any request.
    """

    def __init__(self, registry: Registry, llm: LlmPlanner | None = None) -> None:
        self._registry = registry
        self._llm = llm

    async def plan(
        self,
        request_text: str,
        character: CharacterProfile,
        user_policy: UserPolicy,
        *,
        seed_source: random.Random | int,
        variant_index: int = 0,
    ) -> PlanDecision:
        """The plan of `request_text` for `character`, or why it is refused."""
        draft = None
        try:
            text, modifiers = parse_modifiers(request_text)
            rules = draft_by_rules(text, character.gender, note=None if self._llm else NO_LLM_NOTE)
            # Refused words never leave the process: checked before the text is sent to an LLM.
            limit = content_limit(character, user_policy)
            if refusal := check_words([rules.positive_text], limit, self._registry.content_words):
                return refusal
            draft = rules if self._llm is None or not text else await self._llm.draft(text, character.gender)
            decision = plan_request(text, modifiers, character, user_policy, self._registry,
                                    seed_source=seed_source, draft=draft, variant_index=variant_index)
        except PlanningError as exc:
            decision = Refusal(reason=str(exc), rule=exc.rule)
        # What the model calls cost travels with the decision, whichever it is.
        spend = draft.llm_spend if draft is not None else None
        return decision if spend is None else decision.model_copy(update={"llm_spend": spend})

    def plan_text(self, request_text: str, user_policy: UserPolicy, *, seed_source: random.Random | int,
                  variant_index: int = 0) -> PlanDecision:
        """The one-step plan of a text-to-image request (no character, no LLM: the text is the prompt)."""
        try:
            text, modifiers = parse_modifiers(request_text)
            return plan_text_to_image(text, modifiers, user_policy, self._registry, seed_source=seed_source,
                                      variant_index=variant_index)
        except PlanningError as exc:
            return Refusal(reason=str(exc), rule=exc.rule)
