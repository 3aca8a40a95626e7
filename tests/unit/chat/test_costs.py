"""Prices per model (the shared table) and usage totals per user and overall, from CharacterReplied events alone."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from contracts import CharacterReplied
from services.chat.costs import Usage, usage_totals
from services.runtime.prices import Price, PriceDataError, PriceTable

TABLE = PriceTable.load()


def test_prices_per_million_tokens() -> None:
    assert TABLE.cost("gpt-4o-mini", 1_000_000, 0) == 0.15
    assert TABLE.cost("gpt-4o-mini", 1000, 500) == pytest.approx((1000 * 0.15 + 500 * 0.6) / 1e6)
    assert TABLE.cost("gpt-4o-mini-2024-07-18", 1_000_000, 0) == 0.15
    assert TABLE.cost("offline-persona", 500, 500) == 0.0
    # Exact ids: a faster sibling is not billed as its big brother.
    assert TABLE.price("grok-4-fast-non-reasoning") == Price(input=0.2, output=0.5)
    assert TABLE.price("grok-4-fast-reasoning") == Price(input=0.2, output=0.5)
    assert TABLE.price("grok-4") == Price(input=3.0, output=15.0) and TABLE.price("grok-4-turbo-x") is None
    assert TABLE.price("gpt-4o-2024-08-06") == TABLE.price("gpt-4o") and TABLE.price("gpt-4o-mini:latest")
    assert TABLE.price("my-local-llama") is None and TABLE.cost("my-local-llama", 10_000, 10_000) == 0.0
    custom = PriceTable.load(extra={"my-local-llama": Price(input=1.0, output=2.0)})
    assert custom.cost("my-local-llama", 1_000_000, 1_000_000) == 3.0


def test_a_broken_price_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "prices.json").write_text('{"models": {"x": {"input": -1, "output": 0}}}')
    with pytest.raises(PriceDataError, match="prices.json"):
        PriceTable.load(tmp_path / "prices.json")


def reply(user: str | None, model: str, prompt: int, completion: int, *, offline: bool = False) -> CharacterReplied:
    return CharacterReplied(conversation_id=uuid.uuid4(), message_id=uuid.uuid4(), text="hi", model=model,
                            offline=offline, prompt_tokens=prompt, completion_tokens=completion,
                            cost_usd=TABLE.cost(model, prompt, completion), user_id=user)


def test_totals_per_user_per_model_and_overall() -> None:
    replies = [reply("u1", "grok-3-mini", 1000, 100), reply("u1", "grok-3-mini", 2000, 200),
               reply("u2", "gpt-4o", 500, 50), reply("u2", "offline-persona", 0, 0, offline=True),
               reply(None, "gpt-4o", 100, 10)]
    report = usage_totals(replies)
    assert report.by_user["u1"] == Usage(replies=2, prompt_tokens=3000, completion_tokens=300,
                                         cost_usd=round((3000 * 0.3 + 300 * 0.5) / 1e6, 8))
    assert report.by_user["u2"].offline_replies == 1 and report.by_user["u2"].replies == 2
    assert set(report.by_user) == {"u1", "u2"}
    assert report.overall.replies == 5 and report.overall.total_tokens == 3000 + 300 + 550 + 110
    assert report.overall.cost_usd == pytest.approx(sum(r.cost_usd for r in replies))
    assert report.by_model["gpt-4o"].replies == 2
    assert usage_totals([]).overall == Usage()
