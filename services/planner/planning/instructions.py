"""Instruction prompts for an instruction-edit model, one per kind of edit, in the character's pronouns."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from services.planner.planning.profiles import Gender

__all__ = [
    "PRONOUNS", "Pronouns", "background_prompt", "fallback_prompt", "normalise_pronouns", "outfit_prompt",
    "pose_prompt",
]


@dataclass(frozen=True)
class Pronouns:
    """How the instruction refers to the character."""

    subject: str
    object: str
    possessive: str
    reflexive: str


PRONOUNS: dict[Gender, Pronouns] = {
    "woman": Pronouns("she", "her", "her", "herself"),
    "man": Pronouns("he", "him", "his", "himself"),
    "other": Pronouns("they", "them", "their", "themselves"),
}

_WORD_PRONOUNS = re.compile(r"\b(?:her|his|their|him|them|herself|himself|themselves|she|he|they)\b", re.I)


def normalise_pronouns(text: str, pronouns: Pronouns) -> str:
    """Refer to the character with their pronouns, whatever the user typed ("over her shoulder" for him)."""

    def swap(match: re.Match[str]) -> str:
        word = match.group().lower()
        if word in ("her", "his", "their"):
            # In descriptions of clothes and poses "her" is nearly always possessive ("her hips").
            return pronouns.possessive
        if word in ("him", "them"):
            return pronouns.object
        if word.endswith(("self", "selves")):
            return pronouns.reflexive
        return pronouns.subject

    return _WORD_PRONOUNS.sub(swap, text)


def _keep(items: Sequence[str], preserved: Sequence[str], possessive: str) -> str:
    """"keep her face, hair and pose unchanged", with what the user asked to keep added in."""
    extra = [f"{possessive} {item}" for item in preserved if not any(have.endswith(item) for have in items)]
    words = [*items[:-1], *extra, items[-1]]
    listed = ", ".join(words[:-1]) + " and " + words[-1] if len(words) > 1 else words[0]
    return f"keep {listed} unchanged"


def background_prompt(scene: str, times: str, p: Pronouns, preserved: Sequence[str] = ()) -> str:
    """Replace the scene (or only its light and weather), leaving the person alone."""
    keep = "keep the person unchanged" if not preserved else (
        f"keep the person unchanged, including {p.possessive} {', '.join(preserved)}")
    if scene:
        where = f"{scene} {times}".strip()
        return f"Change the background to {where}, {keep}"
    return f"Change the light and weather of the scene to {times}, {keep}"


def outfit_prompt(replace: str, costume: str, adds: str, p: Pronouns, preserved: Sequence[str] = ()) -> str:
    """Dress the character: replace the outfit, dress as a costume, and/or add items."""
    keep = _keep([f"{p.possessive} face", "hair", "pose", "the background"], preserved, p.possessive)
    if costume:
        action = f"Dress {p.object} as {costume}"
        if replace:
            action += f", wearing {replace}"
    elif replace:
        action = f"Change {p.possessive} outfit to {replace}"
    else:
        return f"Put {adds} on {p.object}, {keep}"
    if adds:
        action += f", and add {adds}"
    return f"{action}, {keep}"


def pose_prompt(pose: str, p: Pronouns, preserved: Sequence[str] = ()) -> str:
    """Change the pose (and what the body does), leaving face, clothes and place alone."""
    keep = _keep([f"{p.possessive} face", "hair", "outfit", "the background"], preserved, p.possessive)
    return f"Change {p.possessive} pose: {pose}, {keep}"


def fallback_prompt(text: str, p: Pronouns, preserved: Sequence[str] = ()) -> str:
    """A request the rules cannot split: pass it on whole, still guarding the face."""
    keep = _keep([f"{p.possessive} face", "identity"], preserved, p.possessive)
    return f"Edit the picture: {text}, {keep}"
