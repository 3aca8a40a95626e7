"""Fixtures of the planning tests: the shipped registry, its raw documents, characters and users."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from services.planner.planning import CharacterProfile, Registry, UserPolicy
from services.planner.planning.registry import DATA_DIR


def shipped_documents() -> dict[str, Any]:
    """The four data files as parsed JSON, fresh for each caller to change."""
    return {name: json.loads((DATA_DIR / f"{name}.json").read_text()) for name in
            ("models", "styles", "loras", "content_words")}


@pytest.fixture(scope="session")
def registry() -> Registry:
    return Registry.load()


@pytest.fixture
def documents() -> dict[str, Any]:
    return copy.deepcopy(shipped_documents())


@pytest.fixture
def mira() -> CharacterProfile:
    return CharacterProfile(id="mira", gender="woman", art_style="photoreal", max_rating="suggestive",
                            loras=("mira-v1",))


@pytest.fixture
def plain_character() -> CharacterProfile:
    return CharacterProfile(id="ana", gender="woman", art_style="photoreal", max_rating="nsfw")


@pytest.fixture
def sfw_user() -> UserPolicy:
    return UserPolicy(max_rating="sfw")


@pytest.fixture
def adult_user() -> UserPolicy:
    return UserPolicy(max_rating="nsfw")


def lora_entry(name: str, purpose: str, *, rating: str = "sfw", strength: float = 0.6, keywords=(),
               triggers=(), models=("qwen-image-edit",)) -> dict[str, Any]:
    """A loras.json entry for a test registry."""
    return {"name": name, "file": f"{name}.safetensors", "purpose": purpose, "rating": rating,
            "default_strength": strength, "keywords": list(keywords), "trigger_words": list(triggers),
            "models": list(models)}


def registry_with(*loras: dict[str, Any]) -> Registry:
    """The shipped registry plus these LoRAs."""
    documents = shipped_documents()
    documents["loras"]["loras"].extend(loras)
    return Registry.from_documents(**documents)
