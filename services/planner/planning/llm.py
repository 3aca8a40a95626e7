"""The LLM planner: asks any OpenAI-compatible endpoint for a plan, validates it, falls back to the rules.

An invalid answer (not JSON, or not the plan schema) is shown to the LLM and asked again once;
a second invalid answer, a timeout or an HTTP error hands the request to the rule-based planner and
the draft's note says why. Pure: the model is behind `ChatModel`, whose implementation over the shared
client is `services.planner.plan_model`. Setting examples for Grok, OpenAI and Ollama are in LLM.md.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from prometheus_client import Counter
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from services.planner.planning.decision import KIND_ORDER, Draft, EditIntent, EditKind, LlmSpend
from services.planner.planning.errors import InvalidLlmAnswer, LlmUnavailable
from services.planner.planning.plan_check import reconcile
from services.planner.planning.instructions import PRONOUNS
from services.planner.planning.profiles import Gender
from services.planner.planning.rules import draft_by_rules
from services.runtime.json_text import json_in_text
from services.runtime.metrics import LLM_FALLBACKS

__all__ = [
    "PLAN_SCHEMA", "ChatModel", "LlmPlanAnswer", "LlmPlanner", "LlmStep", "ModelAnswer", "parse_answer",
]

Messages = Sequence[Mapping[str, str]]

log = logging.getLogger(__name__)

RULES_FALLBACKS = Counter("likeness_planner_rules_fallbacks_total",
                          "Requests the LLM could not plan, planned by the rules instead, by reason", ["reason"])


@dataclass(frozen=True)
class ModelAnswer:
    """The raw text of one answer and the tokens it took (estimated when the server sent no usage)."""

    text: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    usage_reported: bool = True


class ChatModel(Protocol):
    """One chat completion whose answer should be JSON matching `schema`."""

    async def complete(self, messages: Messages, schema: Mapping[str, Any]) -> ModelAnswer: ...


class LlmStep(BaseModel):
    """One step as the LLM writes it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: EditKind
    instruction: str = Field(min_length=8, max_length=600)
    negative: str = Field(default="", max_length=400)


class LlmPlanAnswer(BaseModel):
    """The whole answer: at most one step of each kind; none when the request asks for no edit."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    steps: tuple[LlmStep, ...] = Field(max_length=len(KIND_ORDER))

    @field_validator("steps")
    @classmethod
    def _one_step_per_kind(cls, steps: tuple[LlmStep, ...]) -> tuple[LlmStep, ...]:
        kinds = [step.kind for step in steps]
        if len(set(kinds)) != len(kinds):
            raise ValueError(f"at most one step of each kind, got {kinds}")
        return steps


# Written out by hand in the subset json_schema implementations accept in strict mode; maxItems bounds
# what a grammar-constrained server can generate (an injected "plan 50 steps" cannot run on), and
# LlmPlanAnswer checks every bound again after.
PLAN_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "steps": {
            "type": "array",
            "maxItems": len(KIND_ORDER),
            "items": {
                "type": "object",
                "properties": {
                    "kind": {"type": "string", "enum": list(KIND_ORDER)},
                    "instruction": {"type": "string"},
                    "negative": {"type": "string"},
                },
                "required": ["kind", "instruction", "negative"],
                "additionalProperties": False,
            },
        }
    },
    "required": ["steps"],
    "additionalProperties": False,
}

_SYSTEM = """You plan picture edits for a character chat app. A picture of the character is edited in \
small steps by an instruction-edit model; each step changes one thing. Turn the user's request into at \
most one step of each kind:
- "background": the place, the scene, the time of day, the weather
- "outfit": clothes and accessories
- "pose": body position, gesture, expression, what the person is doing
Rules:
- Plan only the edits the request asks for: one, two or three steps, or none ({{"steps": []}}) when the \
message asks for no change to the picture (a question, small talk, anything that is not an edit).
- Never add a place, clothes or a pose the request does not name.
- Refer to the character as "{subject}" / "{object}" / "{possessive}".
- "instruction" is one imperative sentence for the edit model that says the change and then what stays \
unchanged, e.g. "Change the background to a sunny beach at sunset, keep the person unchanged".
- Negations ("no hat", "not in a dress", "without glasses") are never edits: put the negated things, \
comma-separated, in "negative" of the step they concern; otherwise "negative" is "".
- What the user wants kept ("keep her hair") is added to every instruction's "keep ... unchanged".
Answer with only a JSON object: {{"steps": [{{"kind": "background" | "outfit" | "pose", \
"instruction": "...", "negative": "..."}}]}}"""


class LlmPlanner:
    """Drafts intents with an LLM; never raises for the LLM's failures, the rules answer instead."""

    def __init__(self, chat: ChatModel) -> None:
        self._chat = chat

    async def draft(self, request_text: str, gender: Gender) -> Draft:
        """An LLM draft, or the rules' draft with a note saying why the LLM's was not used."""
        rules = draft_by_rules(request_text, gender)
        pronouns = PRONOUNS[gender]
        system = _SYSTEM.format(subject=pronouns.subject, object=pronouns.object, possessive=pronouns.possessive)
        messages: list[dict[str, str]] = [{"role": "system", "content": system},
                                          {"role": "user", "content": request_text}]
        spent = _Tally()
        try:
            draft = reconcile(await self._ask_twice(messages, rules.positive_text, spent), rules, request_text, gender)
        except LlmUnavailable as exc:
            draft = _fallback(rules, f"LLM unavailable: {exc}", "unavailable")
        except InvalidLlmAnswer as exc:
            draft = _fallback(rules, f"LLM answer invalid twice: {exc}", "invalid_answer")
        # Every answer was paid for, a rejected one too: the spend goes with whichever draft is used.
        return draft.model_copy(update={"llm_spend": spent.spend if spent.spend.calls else None})

    async def _ask_twice(self, messages: list[dict[str, str]], positive_text: str, spent: _Tally) -> Draft:
        """The first valid answer of two; the second attempt is told what was wrong with the first."""
        try:
            return _draft_of(await self._ask(messages, spent), positive_text, None)
        except InvalidLlmAnswer as first:
            retry = [*messages, {"role": "assistant", "content": _clip(first.answer) or "(no answer)"},
                     {"role": "user", "content": f"That answer was not a valid plan: {first}. "
                                                 "Answer again with only the JSON object."}]
            note = f"LLM answer invalid once ({first}); the second was used"
            return _draft_of(await self._ask(retry, spent), positive_text, note)

    async def _ask(self, messages: list[dict[str, str]], spent: _Tally) -> LlmPlanAnswer:
        answer = await self._chat.complete(messages, PLAN_SCHEMA)
        spent.spend = spent.spend.plus(answer.prompt_tokens, answer.completion_tokens, reported=answer.usage_reported)
        return parse_answer(answer.text)


class _Tally:
    """What one draft's model calls have spent so far."""

    def __init__(self) -> None:
        self.spend = LlmSpend()


def parse_answer(raw: str) -> LlmPlanAnswer:
    """Validate the LLM's text as a plan; `InvalidLlmAnswer` (reason, and the answer) when it is not one."""
    text = re.sub(r"^\s*```(?:json)?\s*|\s*```\s*$", "", raw)
    try:
        return LlmPlanAnswer.model_validate(json_in_text(text))
    except json.JSONDecodeError as exc:
        raise InvalidLlmAnswer(f"not JSON ({exc.msg} at line {exc.lineno} column {exc.colno})", answer=raw) from None
    except ValidationError as exc:
        where = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'answer'}: {e['msg']}" for e in exc.errors()[:3])
        raise InvalidLlmAnswer(f"not a plan ({where})", answer=raw) from None


def _draft_of(answer: LlmPlanAnswer, positive_text: str, note: str | None) -> Draft:
    # The safe order is a face-safety decision, not the LLM's: steps are put back in KIND_ORDER.
    steps = sorted(answer.steps, key=lambda step: KIND_ORDER.index(step.kind))
    intents = tuple(
        EditIntent(kind=step.kind, description=step.instruction, prompt=step.instruction,
                   negative=tuple(t.strip() for t in step.negative.split(",") if t.strip()))
        for step in steps
    )
    return Draft(intents=intents, planner="llm", note=note, positive_text=positive_text)


def _fallback(rules: Draft, why: str, reason: str) -> Draft:
    RULES_FALLBACKS.labels(reason).inc()
    LLM_FALLBACKS.labels("plan", reason).inc()
    log.warning("planned by the rules: %s", why)
    return rules.model_copy(update={"note": "; ".join(n for n in (why, rules.note) if n)})


def _clip(text: str, limit: int = 2000) -> str:
    return text if len(text) <= limit else text[:limit] + "..."
