"""Deterministic ids, so that a redelivered message produces the very same events."""

from __future__ import annotations

import uuid

__all__ = ["derived_id"]

_NAMESPACE = uuid.UUID("5b0f5c3e-2f6a-4d55-9a8e-6c1b1f0e7a42")


def derived_id(cause: uuid.UUID | str, purpose: str) -> uuid.UUID:
    """The id of the event that `purpose` derives from message `cause`; the same every time."""
    return uuid.uuid5(_NAMESPACE, f"{cause}:{purpose}")
