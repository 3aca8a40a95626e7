"""Errors of the planning domain; user-facing ones carry the `rule` a ChainRefused would record.

    PlanningError                 root: anything planning refuses to do, with a message for people
    ├── InvalidModifier           a prompt modifier is unknown, malformed, repeated or out of bounds
    ├── UnknownName               a model, style or LoRA name that the registry does not hold
    ├── LoraStackTooLarge         a step would stack more LoRAs than a workflow can take
    ├── RegistryError             a registry data file is missing, not JSON, or has an invalid entry
    └── LlmError                  the LLM adapter could not produce an answer (never reaches callers
        ├── LlmUnavailable        of `LlmPlanner`: it falls back to the rules); timeout, connection,
        └── InvalidLlmAnswer      HTTP error; or an answer that is not a valid plan
"""

from __future__ import annotations

__all__ = [
    "InvalidLlmAnswer",
    "InvalidModifier",
    "LlmError",
    "LlmUnavailable",
    "LoraStackTooLarge",
    "PlanningError",
    "RegistryError",
    "UnknownName",
]


class PlanningError(Exception):
    """Planning cannot go on; `str(exc)` says why in words a user or operator can act on."""

    rule: str = "planner"


class InvalidModifier(PlanningError):
    """A `--flag` in the request is wrong; the message names the flag and what it accepts."""

    def __init__(self, flag: str, message: str) -> None:
        super().__init__(message)
        self.flag = flag
        self.rule = f"modifier.{flag.lstrip('-')}"


class UnknownName(PlanningError):
    """The registry holds no model, style or LoRA by that name."""

    def __init__(self, what: str, name: str, known: list[str]) -> None:
        super().__init__(f"unknown {what} {name!r}; known: {', '.join(sorted(known)) or 'none'}")
        self.what = what
        self.name = name
        self.rule = f"registry.{what}"


class LoraStackTooLarge(PlanningError):
    """More LoRAs on one step than the limit."""

    rule = "lora.stack_limit"


class RegistryError(PlanningError):
    """A registry file or entry is invalid; the message names the file and the entry."""

    rule = "registry.data"


class LlmError(PlanningError):
    """The LLM produced no usable plan."""


class LlmUnavailable(LlmError):
    """The LLM endpoint timed out, refused the connection or answered an HTTP error."""


class InvalidLlmAnswer(LlmError):
    """The LLM answered, but not a plan that validates; `answer` is what it said."""

    def __init__(self, reason: str, *, answer: str = "") -> None:
        super().__init__(reason)
        self.answer = answer
