"""Which picture a picture request in a conversation edits, and edit instructions that ask for one. Pure.

Inside a conversation, pictures build on each other: "now make her wave" edits the last picture the
conversation accepted, not the reference photo again. Two phrases change that: "start over" / "from the
original photo" starts from the reference photo, and "go back to the previous picture" picks the picture
before the current one. `picture_basis` reads which of the three a message means; `edit_request` finds an
edit instruction that names no picture ("make her wave", "change the background to a beach"), which is a
picture request only when there is a picture to edit; `basis_only` says whether a message does nothing but
move back ("go back to the previous one"), with no new edit to make.
"""

from __future__ import annotations

import re
from typing import Literal

__all__ = ["PictureBasis", "basis_only", "edit_request", "picture_basis"]

# continue: edit the conversation's current picture; original: the reference photo; previous: the one before.
PictureBasis = Literal["continue", "original", "previous"]

_PICTURE = r"(?:photo|picture|pic|image|one|version|shot|selfie)s?"
_ORIGINAL = re.compile(
    r"\b(?:start(?:ing)?\s+(?:over|again|afresh|from\s+scratch)|from\s+scratch|begin\s+again"
    rf"|(?:the|your|my|that)\s+(?:original|reference|profile|first)\s+{_PICTURE}"
    rf"|original\s+{_PICTURE}|(?:from|with)\s+(?:the|your)\s+(?:original|reference)\b)",
    re.IGNORECASE,
)
_PREVIOUS = re.compile(
    rf"\b(?:(?:the\s+)?(?:previous|prior|earlier|last|other)\s+{_PICTURE}|the\s+one\s+before(?:\s+that)?"
    r"|undo(?:\s+(?:that|it|this|the\s+last\s+(?:change|edit|one)))?|revert(?:\s+(?:that|it|this))?"
    r"|go\s+back\s+(?:one|a\s+step))\b",
    re.IGNORECASE,
)
# A message that only moves back: "go back to the previous picture", "undo that", "start over".
_MOVE_ONLY = re.compile(
    r"^(?:(?:ok(?:ay)?|hmm+|no|nah|actually|please|pls|can\s+you|could\s+you|let'?s|let\s+us|i\s+want\s+to"
    r"|i'?d\s+like\s+to|we\s+should|just)[\s,!.]+)*"
    r"(?:go(?:ing)?\s+back(?:\s+to)?|back\s+to|return\s+to|revert(?:\s+to)?|switch\s+back\s+to|use|show\s+me)?\s*"
    rf"(?:{_PREVIOUS.pattern}|{_ORIGINAL.pattern})?"
    r"(?:\s+(?:please|pls|again|instead|then))*[\s.!?]*$",
    re.IGNORECASE,
)
_OBJECT = r"(?:her|him|them|you|yourself|it|this|that|the\s+\w+|your\s+\w+|my\s+\w+)"
# An edit instruction: a verb that changes a picture, then what it changes. "make me a sandwich" and
# "change the subject" are not edits: the object must be the character, the picture or a part of it.
_EDIT = re.compile(
    rf"(?:^|[,.;!?]\s*|\b(?:and|then|now|also|next|but|so|please|pls)\s+|\b(?:can|could|would|will)\s+you\s+)"
    rf"(?P<edit>(?:make|put|turn|dress|have|move|get)\s+{_OBJECT}\b.+"
    r"|(?:change|switch|swap|replace)\s+(?:the|your|her|his|their|its)\s+(?!subject\b|topic\b)\w+.*"
    r"|(?:add|remove|take\s+off|put\s+on)\s+(?:a|an|some|the|her|his|your|those|these)\s+\w+.*)",
    re.IGNORECASE,
)
_NOT_AN_OBJECT = re.compile(r"^(?:make|put|turn|dress|have|move|get)\s+(?:it|this|that)\s+(?:up|out|over|right|"
                            r"happen|work|clear|quick|short)\b", re.IGNORECASE)


def picture_basis(text: str) -> PictureBasis:
    """Which picture the message's edit starts from; "continue" unless it says otherwise."""
    plain = _plain(text)
    if _ORIGINAL.search(plain):
        return "original"
    if _PREVIOUS.search(plain):
        return "previous"
    return "continue"


def basis_only(text: str) -> bool:
    """Whether the message does nothing but pick a picture to go on from ("go back to the previous one")."""
    plain = _plain(text).rstrip(" .!?")
    return picture_basis(plain) != "continue" and bool(_MOVE_ONLY.match(plain))


def edit_request(text: str) -> str | None:
    """The edit a message asks of the current picture ("make her wave"), or None when it asks none."""
    plain = _plain(text)
    for sentence in re.split(r"(?<=[.!?])\s+", plain):
        match = _EDIT.search(sentence)
        if match and not _NOT_AN_OBJECT.match(match.group("edit")):
            edit = match.group("edit").strip(" ,.!?;:")
            return edit or None
    return None


def _plain(text: str) -> str:
    return " ".join(text.replace("\u2019", "'").split())
