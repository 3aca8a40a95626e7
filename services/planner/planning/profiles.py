"""Who a plan is for: the character (look, style, LoRAs, rating bound) and the user's own bound."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from contracts.fields import CharacterId

__all__ = ["RATINGS", "CharacterProfile", "Gender", "Rating", "UserPolicy", "stricter"]

Rating = Literal["sfw", "suggestive", "nsfw"]
# Least to most explicit; a bound allows its own rating and everything before it.
RATINGS: tuple[Rating, ...] = ("sfw", "suggestive", "nsfw")
Gender = Literal["woman", "man", "other"]


class CharacterProfile(BaseModel):
    """What planning needs to know about a character."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: CharacterId
    gender: Gender
    art_style: str = Field(min_length=1)
    max_rating: Rating = "sfw"
    # The character's own LoRAs (purpose "character"), by registry name, applied to every step.
    loras: tuple[str, ...] = ()


class UserPolicy(BaseModel):
    """What a user allows for themselves (account setting, age check, region)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_rating: Rating = "sfw"


def stricter(first: Rating, second: Rating) -> Rating:
    """The lower of two bounds."""
    return min(first, second, key=RATINGS.index)
