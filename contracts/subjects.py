"""Every NATS subject and JetStream stream name, in one place.

    likeness.evt.<family>.<name>.<stream_id>   domain events (JetStream, kept)
    likeness.cmd.<family>.<name>               commands (JetStream, work queue)
    likeness.live.<family>.<name>.<corr_id>    ephemeral traffic (core NATS only)
    likeness.rpc.<family>.<name>               request/reply (core NATS, queue groups)
    likeness.dlq.<service>                     dead letters (JetStream, kept)

Putting the stream id last lets a reader filter one chain (`likeness.evt.chain.*.chain-<id>`),
one type across chains (`likeness.evt.chain.step_scored.*`) or a whole family (`likeness.evt.chain.>`).
"""

from __future__ import annotations

import re

__all__ = [
    "COMMANDS_STREAM",
    "DEAD_LETTERS_STREAM",
    "EVENTS_STREAM",
    "PREFIX",
    "command_subject",
    "dead_letter_subject",
    "event_filter",
    "event_subject",
    "live_subject",
    "rpc_subject",
    "stream_filter",
    "validate_token",
]

PREFIX = "likeness"
EVENTS_STREAM = "LIKENESS_EVENTS"
COMMANDS_STREAM = "LIKENESS_COMMANDS"
DEAD_LETTERS_STREAM = "LIKENESS_DEAD_LETTERS"

_TOKEN = re.compile(r"^[A-Za-z0-9_\-]+$")


def validate_token(token: str) -> str:
    """A subject token may not hold dots, wildcards or spaces; stream ids become tokens."""
    if not _TOKEN.match(token):
        raise ValueError(f"{token!r} cannot be a NATS subject token (use letters, digits, '-' and '_')")
    return token


def _type_tokens(type_: str) -> str:
    family, _, name = type_.partition(".")
    validate_token(family)
    validate_token(name)
    return f"{family}.{name}"


def event_subject(type_: str, stream_id: str) -> str:
    return f"{PREFIX}.evt.{_type_tokens(type_)}.{validate_token(stream_id)}"


def event_filter(family: str = ">") -> str:
    """All events of a family (`chain`), or every event."""
    return f"{PREFIX}.evt.>" if family == ">" else f"{PREFIX}.evt.{validate_token(family)}.>"


def stream_filter(family: str, stream_id: str) -> str:
    """All events of one stream, e.g. one chain."""
    return f"{PREFIX}.evt.{validate_token(family)}.*.{validate_token(stream_id)}"


def command_subject(type_: str) -> str:
    return f"{PREFIX}.cmd.{_type_tokens(type_)}"


def live_subject(type_: str, correlation_id: str) -> str:
    return f"{PREFIX}.live.{_type_tokens(type_)}.{validate_token(correlation_id)}"


def dead_letter_subject(service: str) -> str:
    return f"{PREFIX}.dlq.{validate_token(service)}"


def rpc_subject(name: str) -> str:
    """A request/reply endpoint, e.g. `face.check_reference`; replicas answer in a queue group."""
    return f"{PREFIX}.rpc.{_type_tokens(name)}"
