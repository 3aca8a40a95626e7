"""Errors raised while reading messages off the wire or out of the log.

    ContractError
    ├── MalformedMessage      bytes that are not a valid envelope, or a body that fails its schema
    ├── UnknownMessageType    a `type` no contract declares
    └── UnsupportedVersion    a `version` newer than this code knows, or with no upcaster path
"""

__all__ = ["ContractError", "MalformedMessage", "UnknownMessageType", "UnsupportedVersion"]


class ContractError(Exception):
    """A message does not fit the contracts; the text says why, for a dead-letter entry."""


class MalformedMessage(ContractError):
    """The bytes are not JSON, not an envelope, or the body fails validation."""


class UnknownMessageType(ContractError):
    """No contract declares this `type`."""


class UnsupportedVersion(ContractError):
    """The `version` cannot be brought to the current one."""
