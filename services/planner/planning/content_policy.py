"""The content policy: the stricter of the character's and the user's bound limits every plan.

A request whose words, or whose chosen LoRAs, go beyond the bound is refused with a reason and the
rule that refused it; it is never quietly toned down, since the user would get a picture they did
not ask for and no word about why. Negated words ("no lingerie") and `--no` text do not count.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

from services.planner.planning.decision import Refusal
from services.planner.planning.profiles import RATINGS, CharacterProfile, Rating, UserPolicy
from services.planner.planning.registry import ContentWords, LoraSpec

__all__ = ["ContentLimit", "check_loras", "check_words", "content_limit", "rating_of"]


@dataclass(frozen=True)
class ContentLimit:
    """The effective bound, and whose bound it is (said in the refusal)."""

    rating: Rating
    set_by: Literal["user", "character"]

    def allows(self, rating: Rating) -> bool:
        return RATINGS.index(rating) <= RATINGS.index(self.rating)

    def owner(self) -> str:
        return "your content settings" if self.set_by == "user" else "this character"


def content_limit(character: CharacterProfile, user: UserPolicy) -> ContentLimit:
    """The stricter bound; on a tie the user's, since it is the one they can see and change."""
    if RATINGS.index(user.max_rating) <= RATINGS.index(character.max_rating):
        return ContentLimit(user.max_rating, "user")
    return ContentLimit(character.max_rating, "character")


def rating_of(texts: Iterable[str], words: ContentWords) -> tuple[Rating, str | None]:
    """The most explicit rating the texts' words reach, and the first word that reached it."""
    for rating, pattern in _patterns(words):
        for text in texts:
            if found := pattern.search(text):
                return rating, found.group().lower()
    return "sfw", None


def check_words(texts: Sequence[str], limit: ContentLimit, words: ContentWords) -> Refusal | None:
    """Refuse when the words ask for more than the limit allows."""
    rating, word = rating_of(texts, words)
    if limit.allows(rating):
        return None
    return Refusal(
        reason=f"the request asks for {rating} content ({word!r}), above the {limit.rating} limit of {limit.owner()}",
        rule=f"content_policy.words.{limit.set_by}_limit",
    )


def check_loras(loras: Sequence[LoraSpec], limit: ContentLimit) -> Refusal | None:
    """Refuse when a chosen LoRA is rated beyond the limit."""
    for lora in loras:
        if not limit.allows(lora.rating):
            return Refusal(
                reason=f"LoRA {lora.name!r} ({lora.purpose}) is rated {lora.rating}, "
                f"above the {limit.rating} limit of {limit.owner()}",
                rule=f"content_policy.lora.{limit.set_by}_limit",
            )
    return None


@lru_cache(maxsize=8)
def _patterns(words: ContentWords) -> tuple[tuple[Rating, re.Pattern[str]], ...]:
    pairs: tuple[tuple[Rating, tuple[str, ...]], ...] = (("nsfw", words.nsfw), ("suggestive", words.suggestive))
    return tuple(
        (rating, re.compile(r"(?<![\w-])(?:" + "|".join(map(re.escape, terms)) + r")(?:e?s)?(?![\w-])", re.I))
        for rating, terms in pairs
        if terms
    )
