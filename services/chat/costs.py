"""What replies cost: a price table per model (USD per 1M tokens), and usage totals per user and overall.

`usage_totals` is pure: give it `CharacterReplied` events read from anywhere (the gateway reads them
from the log) and it adds them up. Unlisted models cost 0; `PriceTable.price` says which are listed.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from contracts import CharacterReplied
from services.chat.errors import PriceDataError

__all__ = ["Price", "PriceTable", "Usage", "UsageReport", "usage_totals"]

# The suffixes that name a snapshot of one model, not another model: a date, or an Ollama tag.
_SNAPSHOT = re.compile(r"(?:-\d{4}-\d{2}-\d{2}|-\d{4}|-\d{8}|:[\w.-]+)$")

_DATA = Path(__file__).resolve().parent / "data" / "prices.json"


class Price(BaseModel):
    """USD per one million prompt (`input`) and completion (`output`) tokens."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    input: float = Field(ge=0)
    output: float = Field(ge=0)


@dataclass(frozen=True)
class PriceTable:
    prices: Mapping[str, Price]

    @classmethod
    def load(cls, path: Path | None = None, *, extra: Mapping[str, Price] | None = None) -> PriceTable:
        """The table in `path` (the bundled prices.json by default), plus or overridden by `extra`."""
        path = path or _DATA
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
            prices = {name: Price.model_validate(p) for name, p in raw["models"].items()}
        except (OSError, ValueError, KeyError, TypeError, ValidationError) as exc:
            raise PriceDataError(f"{path}: {type(exc).__name__}: {exc}") from None
        return cls({**prices, **(extra or {})})

    def price(self, model: str) -> Price | None:
        """The model's price, by exact id; a dated snapshot ("gpt-4o-mini-2024-07-18") or a tag ("llama3:8b")
        takes its model's. Nothing else matches by prefix: "grok-4-fast-non-reasoning" is not "grok-4"."""
        if model in self.prices:
            return self.prices[model]
        return self.prices.get(_SNAPSHOT.sub("", model))

    def cost(self, model: str, prompt_tokens: int, completion_tokens: int) -> float:
        price = self.price(model)
        if price is None:
            return 0.0
        # Eight decimals: a millionth of a cent is below any bill, and it keeps events free of float noise.
        return round((prompt_tokens * price.input + completion_tokens * price.output) / 1_000_000, 8)


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
