"""Content policy: the stricter bound wins; words or LoRAs beyond it refuse the request with its rule."""

from __future__ import annotations

import random

import pytest

from services.planner.planning import CharacterProfile, Modifiers, Refusal, UserPolicy, content_limit, plan_request
from services.planner.planning.content_policy import check_words, rating_of
from tests.unit.planner.conftest import lora_entry, registry_with


def character(max_rating="suggestive", loras=()):
    return CharacterProfile(id="ana", gender="woman", art_style="photoreal", max_rating=max_rating, loras=loras)


def plan(text, registry, *, char_rating="suggestive", user_rating="sfw", loras=(), negative=""):
    return plan_request(text, Modifiers(negative_prompt=negative), character(char_rating, loras),
                        UserPolicy(max_rating=user_rating), registry, seed_source=random.Random(0))


@pytest.mark.parametrize(
    ("char", "user", "limit", "set_by"),
    [("suggestive", "sfw", "sfw", "user"), ("sfw", "nsfw", "sfw", "character"), ("nsfw", "nsfw", "nsfw", "user"),
     ("suggestive", "nsfw", "suggestive", "character")],
)
def test_the_stricter_bound_is_the_limit(char, user, limit, set_by):
    got = content_limit(character(char), UserPolicy(max_rating=user))
    assert (got.rating, got.set_by) == (limit, set_by)


def test_words_rate_a_text(registry):
    words = registry.content_words
    assert rating_of(["on a beach"], words) == ("sfw", None)
    assert rating_of(["in Lingerie on a bed"], words) == ("suggestive", "lingerie")
    assert rating_of(["sexy", "topless"], words) == ("nsfw", "topless")
    assert rating_of(["essex county"], words) == ("sfw", None)


def test_suggestive_words_are_refused_for_an_sfw_user(registry):
    decision = plan("in lingerie on a bed", registry)
    assert decision == Refusal(
        reason="the request asks for suggestive content ('lingerie'), above the sfw limit of your content settings",
        rule="content_policy.words.user_limit",
    )


def test_the_character_bound_refuses_even_when_the_user_allows(registry):
    decision = plan("naked on a beach", registry, char_rating="suggestive", user_rating="nsfw")
    assert isinstance(decision, Refusal)
    assert decision.rule == "content_policy.words.character_limit"
    assert "above the suggestive limit of this character" in decision.reason


def test_allowed_when_both_bounds_allow(registry):
    decision = plan("in lingerie on a bed", registry, char_rating="suggestive", user_rating="nsfw")
    assert not isinstance(decision, Refusal)
    outfit = next(step for step in decision.steps if step.kind == "outfit")
    assert [lora.name for lora in outfit.loras] == ["lingerie_set_qwen.safetensors"]


def test_negated_words_and_no_flag_words_do_not_refuse(registry):
    assert not isinstance(plan("on a beach, no lingerie, not naked", registry), Refusal)
    assert not isinstance(plan("on a beach", registry, negative="nude, lingerie"), Refusal)


def test_a_lora_rated_beyond_the_limit_refuses_never_downgrades():
    registry = registry_with(lora_entry("beach-glam", "concept", rating="suggestive", keywords=["beach"]))
    decision = plan("on a beach", registry)
    assert decision == Refusal(
        reason="LoRA 'beach-glam' (concept) is rated suggestive, above the sfw limit of your content settings",
        rule="content_policy.lora.user_limit",
    )


def test_a_character_lora_beyond_the_limit_refuses():
    registry = registry_with(lora_entry("ana-glam", "character", rating="nsfw"))
    decision = plan("on a beach", registry, char_rating="nsfw", user_rating="suggestive", loras=("ana-glam",))
    assert isinstance(decision, Refusal) and decision.rule == "content_policy.lora.user_limit"


def test_check_words_reads_every_text(registry):
    limit = content_limit(character("sfw"), UserPolicy(max_rating="sfw"))
    assert check_words(["fine", "also fine"], limit, registry.content_words) is None
    assert check_words(["fine", "sexy"], limit, registry.content_words).rule == "content_policy.words.user_limit"
