"""Errors of the chat service.

    ChatError
    ├── PersonaDataError    the personas file is missing, malformed or inconsistent (a start-up error)
    └── LlmUnavailable      the LLM timed out, could not be reached, answered an HTTP error or nothing

(A stream that keeps moving under the writer is services.runtime.writer.StillConflicting.)
"""

from __future__ import annotations

__all__ = ["ChatError", "LlmUnavailable", "PersonaDataError"]


class ChatError(Exception):
    """Base of every chat service error."""


class PersonaDataError(ChatError):
    """The built-in personas cannot be loaded; the message names the file and the problem."""


class LlmUnavailable(ChatError):
    """No usable answer from the LLM; the offline persona answers instead."""
