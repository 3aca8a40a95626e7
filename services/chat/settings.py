"""The chat service's settings: the shared runtime settings plus its own (prefix LIKENESS_)."""

from __future__ import annotations

from services.runtime.settings import RuntimeSettings

__all__ = ["ChatSettings"]


class ChatSettings(RuntimeSettings):
    """Settings of the chat service."""

    service_name: str = "chat"
