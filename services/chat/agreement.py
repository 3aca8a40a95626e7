"""Do a reply's words agree with what the app did? Pure phrase checks on the reply text.

The app decides pictures; the model only puts that decision in words, and small models do not always
listen: one said "I cannot assist with that" while its picture was being made, another promised a
selfie that nobody was making. `disagreement` names such a contradiction so the reply can be asked
for again (and, failing that, written from the persona's lines, which always agree). `refuses` also
keeps refusals out of the history later turns are written from, where they would be repeated.
"""

from __future__ import annotations

import re
from typing import Literal

__all__ = ["Disagreement", "PictureOutcome", "disagreement", "refuses"]

# What the app did about a picture for this message: started one, declined one, or none was asked for.
PictureOutcome = Literal["started", "declined", "none"]
Disagreement = Literal["refused_a_picture_being_made", "promised_a_picture_not_being_made"]

_REFUSAL = re.compile(
    r"\b(?:i\s*(?:'m| am)\s+(?:sorry,?\s+(?:but\s+)?)?(?:not able|unable)\s+to"
    r"|i\s+(?:can\s*not|cannot|can't|won't|will not)\s+(?:assist|help|comply|fulfil+|do that|provide|create|generate"
    r"|send|share|make|take)"
    r"|as an ai\b|as a (?:large )?language model|i\s+(?:don't|do not)\s+have the (?:ability|capability)"
    r"|i'm not allowed to|against my (?:guidelines|policy|programming))",
    re.IGNORECASE,
)
_PICTURE = r"(?:pic|pics|picture|pictures|photo|photos|selfie|selfies|snap|snapshot|image|shot)"
_PROMISE = re.compile(
    rf"(?:\bhere(?:'s| is| are)\s+(?:a|an|my|the|your|that|some|one)?\s*(?:\w+\s+)?{_PICTURE}"
    rf"|\b(?:i'll|i will|i'm going to|let me|gonna|i'm)\s+(?:send|sending|snap|snapping|take|taking|share|sharing)"
    rf"\s+(?:you\s+)?(?:a|an|my|one|some|that|this)?\s*(?:\w+\s+)?{_PICTURE}"
    rf"|\bsending\s+(?:you\s+)?(?:a|an|my|one|this|that)?\s*(?:\w+\s+)?{_PICTURE}"
    rf"|\*\s*(?:sends|snaps|takes|shares|attaches)\b[^*]*\*"
    rf"|\[(?:image|photo|picture|selfie|attached)[^\]]*\]"
    rf"|\b(?:the|your|my|a)\s+{_PICTURE}\s+is\s+on (?:its|it's) way)",
    re.IGNORECASE,
)


def refuses(text: str) -> bool:
    """Whether the reply is a refusal ("I cannot assist with that", "As an AI ...")."""
    return bool(_REFUSAL.search(_plain(text)))


def disagreement(text: str, picture: PictureOutcome) -> Disagreement | None:
    """How the reply contradicts the app, if it does: a refusal while a picture is being made, or a picture
    promised ("here's a selfie", "*sends a photo*") when none was asked for. A picture the app declined
    (no reference photo, log in first) is explained by the reply; a "then I'll send one" there is fair."""
    plain = _plain(text)
    if picture == "started" and refuses(plain):
        return "refused_a_picture_being_made"
    if picture == "none" and _PROMISE.search(plain):
        return "promised_a_picture_not_being_made"
    return None


def _plain(text: str) -> str:
    return text.replace("\u2019", "'")
