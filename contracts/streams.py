"""Stream ids of the event log: one function per kind of stream, so every service names them alike.

A stream id is also the last token of its events' NATS subjects (`likeness.evt.<family>.<name>.<stream>`),
so it never holds a dot, a space, `*` or `>`.
"""

from __future__ import annotations

import hashlib
from uuid import UUID

__all__ = [
    "REFERENCE_STREAM_PREFIX",
    "batch_stream",
    "chain_stream",
    "character_stream",
    "conversation_stream",
    "delivery_stream",
    "delivery_user_stream",
    "golden_stream",
    "reference_stream",
    "threshold_stream",
    "user_reference_stream",
]

REFERENCE_STREAM_PREFIX = "reference-"


def chain_stream(chain_id: UUID | str) -> str:
    return f"chain-{chain_id}"


def batch_stream(batch_id: UUID | str) -> str:
    """Where the planner records the end of a `--count N` batch (`BatchCompleted`); its id is the first chain's."""
    return f"batch-{batch_id}"


def character_stream(character_id: str) -> str:
    """Who the character is: created, persona edits, threshold; a custom character's reference too."""
    return f"character-{character_id}"


def conversation_stream(conversation_id: UUID | str) -> str:
    return f"conversation-{conversation_id}"


def delivery_user_stream(user_id: str) -> str:
    """A user's delivery destinations (Telegram chat, Google Chat webhook, webhook endpoints); the delivery
    service writes it. The user id is hashed, as in `user_reference_stream`."""
    return f"delivery-user-{hashlib.sha256(user_id.encode()).hexdigest()[:32]}"


def delivery_stream(delivery_id: UUID | str) -> str:
    """One chain event delivered to one destination: request, claims, attempts, end (the delivery service)."""
    return f"delivery-{delivery_id}"


def golden_stream() -> str:
    """The pinned chains of `likeness golden record`: one stream, so `verify` reads every pin in one go."""
    return "golden"


def user_reference_stream(character_id: str, user_id: str) -> str:
    """One user's own reference photo of a built-in character: every user gives a built-in their own face.

    The user id is hashed: user ids may hold characters a subject token cannot, and a subject should
    not carry who the user is. The prefix differs from `character-`, so no character id can collide.
    """
    digest = hashlib.sha256(user_id.encode()).hexdigest()[:32]
    return f"{REFERENCE_STREAM_PREFIX}{character_id}-{digest}"


def reference_stream(character_id: str, user_id: str, *, builtin: bool) -> str:
    """Where a reference photo `user_id` gives the character is recorded (and the command answered)."""
    return user_reference_stream(character_id, user_id) if builtin else character_stream(character_id)


def threshold_stream(character_id: str, reference_sha256: str) -> str:
    """The scores a character's accepted steps reached against one reference photo, and the threshold learned
    from them (the planner writes it). Its prefix is no character id's: `character-` streams are chat's."""
    return f"threshold-{character_id}-{reference_sha256[:32]}"
