"""Plans a `RequestChain`: the character from the log, then the rules or the LLM."""

from __future__ import annotations

import random
from collections import OrderedDict
from uuid import UUID

from contracts import ModelUsage, RequestChain
from services.planner.characters import character_profile
from services.planner.planning import Planner, Refusal, UserPolicy
from services.planner.planning.decision import LlmSpend
from services.planner.saga.decide import PlanAccepted, PlanRefused
from services.runtime.eventstore import EventStore
from services.runtime.prices import PriceTable
from services.runtime.metrics import LLM_COST, label_value

__all__ = ["RequestPlanning", "usage_of"]

_RECENT_PLANS = 1024


class RequestPlanning:
    """The planner service's `RequestPlanner`: planning as the saga needs it."""

    def __init__(
        self, planner: Planner, store: EventStore, *, user_policy: UserPolicy, default_style: str,
        rng: random.Random | None = None, llm_model: str | None = None, prices: PriceTable | None = None,
    ) -> None:
        self._planner = planner
        self._store = store
        self._user_policy = user_policy
        self._default_style = default_style
        self._llm_model = llm_model
        self._prices = prices or PriceTable({})
        # Seeds need only differ between requests; the plan records the ones drawn.
        self._rng = rng or random.Random()
        # Plans made here whose chain may not be recorded yet: when the append fails (the database is
        # away) the request comes back, and must not pay for a second model call. Bounded, oldest out.
        self._recent: OrderedDict[UUID, tuple[PlanAccepted | PlanRefused, float | None]] = OrderedDict()

    async def plan(self, request: RequestChain) -> tuple[PlanAccepted | PlanRefused, float | None]:
        if (made := self._recent.get(request.chain_id)) is not None:
            return made
        made = await self._plan(request)
        self._recent[request.chain_id] = made
        while len(self._recent) > _RECENT_PLANS:
            self._recent.popitem(last=False)
        return made

    async def _plan(self, request: RequestChain) -> tuple[PlanAccepted | PlanRefused, float | None]:
        # The variants of one `--count` request derive their seeds from one base; each request of a
        # POST /batch draws its own, like a request sent alone.
        variant = request.variant_index if request.batch_kind == "count" else 0
        if request.mode == "t2i":
            decision = self._planner.plan_text(request.request_text, self._user_policy, seed_source=self._rng,
                                               variant_index=variant)
            threshold = None
        else:
            assert request.character_id is not None  # an edit chain always names one (the contract says so)
            profile, threshold = await character_profile(self._store, request.character_id,
                                                         default_style=self._default_style)
            decision = await self._planner.plan(request.request_text, profile, self._user_policy,
                                                seed_source=self._rng, variant_index=variant)
        usage = usage_of(decision.llm_spend, self._llm_model, self._prices)
        if isinstance(decision, Refusal):
            return PlanRefused(decision.reason, decision.rule, llm_usage=usage), threshold
        accepted = PlanAccepted(decision.steps, decision.planner, decision.note, style=decision.style,
                                count=decision.count, llm_usage=usage)
        return accepted, threshold


def usage_of(spend: LlmSpend | None, model: str | None, prices: PriceTable) -> ModelUsage | None:
    """What a plan's model calls cost, as the event records it; None when no model was called."""
    if spend is None or not spend.calls or not model:
        return None
    cost = prices.cost(model, spend.prompt_tokens, spend.completion_tokens)
    if cost:
        # Counted where the calls were made (once per plan: a redelivered request is not planned again).
        LLM_COST.labels("plan", label_value(model)).inc(cost)
    return ModelUsage(model=model, calls=spend.calls, prompt_tokens=spend.prompt_tokens,
                      completion_tokens=spend.completion_tokens, cost_usd=cost, tokens_estimated=spend.estimated)
