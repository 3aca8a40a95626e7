"""What model calls cost: a price table per model id, USD per one million prompt and completion tokens.

Shared by chat (replies) and planner (plans): both bill the same models. The table is
`data/prices.json`; a deployment adds or overrides entries (`extra`). Unlisted models cost 0 and
`PriceTable.price` says which are listed, so a service can warn at start-up.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

__all__ = ["Price", "PriceDataError", "PriceTable"]


class PriceDataError(Exception):
    """The price table cannot be loaded; the message names the file and the problem."""


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

    @classmethod
    def for_model(cls, model: str | None, price_input: float | None, price_output: float | None) -> PriceTable:
        """The bundled table, with `model` at the price a deployment's settings give it (an unlisted model)."""
        if not model or price_input is None:
            return cls.load()
        return cls.load(extra={model: Price(input=price_input, output=price_output or 0.0)})

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
