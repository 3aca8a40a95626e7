"""What replies cost: usage totals per user, per model and overall (prices: `services.runtime.prices`).

`usage_totals` is pure: give it `CharacterReplied` events read from anywhere (the gateway reads them
from the log) and it adds them up.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from contracts import CharacterReplied

__all__ = ["Usage", "UsageReport", "usage_totals"]

@dataclass(frozen=True)
class Usage:
    replies: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    offline_replies: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True)
class UsageReport:
    """Totals over all replies, per user, and per model. Replies without a user count in `overall` only."""

    overall: Usage = Usage()
    by_user: Mapping[str, Usage] = field(default_factory=dict)
    by_model: Mapping[str, Usage] = field(default_factory=dict)


def usage_totals(replies: Iterable[CharacterReplied]) -> UsageReport:
    """Tokens and money spent on `replies`, overall, per user and per model."""
    overall: list[CharacterReplied] = []
    users: dict[str, list[CharacterReplied]] = {}
    models: dict[str, list[CharacterReplied]] = {}
    for reply in replies:
        overall.append(reply)
        models.setdefault(reply.model, []).append(reply)
        if reply.user_id is not None:
            users.setdefault(reply.user_id, []).append(reply)
    return UsageReport(_sum(overall), {u: _sum(r) for u, r in sorted(users.items())},
                       {m: _sum(r) for m, r in sorted(models.items())})


def _sum(replies: list[CharacterReplied]) -> Usage:
    return Usage(
        replies=len(replies),
        prompt_tokens=sum(r.prompt_tokens for r in replies),
        completion_tokens=sum(r.completion_tokens for r in replies),
        # fsum: thousands of tiny costs add up without drifting.
        cost_usd=round(math.fsum(r.cost_usd for r in replies), 8),
        offline_replies=sum(1 for r in replies if r.offline),
    )
