"""Whose fault a failure is: the infrastructure's (wait and try again, however long it takes) or the
message's own (its data can never be stored: give up on it at once).

A database or bus that is away (refused, reset or closed connection, a server shutting down or
starting up, a timeout) says nothing about the message being handled: such failures must never count
toward a message's deliveries nor send it to the dead letters. The exception chain is walked
(`__cause__`, `__context__`, SQLAlchemy's `.orig`), since drivers wrap what the socket said.
"""

from __future__ import annotations

import errno
import logging
import time
from collections.abc import Iterator

import asyncpg
import nats.errors
import nats.js.errors
import sqlalchemy.exc

__all__ = ["Outage", "is_bad_data", "is_infrastructure_failure"]

log = logging.getLogger(__name__)

_NETWORK_ERRNOS = frozenset({errno.ECONNREFUSED, errno.ECONNRESET, errno.ECONNABORTED, errno.EPIPE, errno.ETIMEDOUT,
                             errno.EHOSTUNREACH, errno.ENETUNREACH, errno.ENETDOWN, errno.EHOSTDOWN})

_INFRASTRUCTURE: tuple[type[BaseException], ...] = (
    ConnectionError,  # refused, reset, aborted, broken pipe
    TimeoutError,  # asyncio's and the socket's; nats.errors.TimeoutError is one too
    # Postgres: the connection is gone or never was (class 08), the server is shutting down or
    # starting (57P01-57P03), or has no connection slot left (53300).
    asyncpg.exceptions.PostgresConnectionError,
    asyncpg.exceptions.AdminShutdownError,
    asyncpg.exceptions.CrashShutdownError,
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions.TooManyConnectionsError,
    sqlalchemy.exc.TimeoutError,  # no pooled connection within the pool timeout
    sqlalchemy.exc.DisconnectionError,
    # NATS and JetStream away or restarting.
    nats.errors.ConnectionClosedError,
    nats.errors.NoServersError,
    nats.errors.StaleConnectionError,
    nats.errors.ConnectionDrainingError,
    nats.errors.ConnectionReconnectingError,
    nats.errors.OutboundBufferLimitError,
    nats.errors.NoRespondersError,
    nats.js.errors.ServiceUnavailableError,
    # A JetStream publish nobody answered: the stream has no leader for a moment (a cluster node died and
    # its streams elect another), the server is starting, or no stream is provisioned for the subject: the
    # bus's fault in every case, never the message's. Not a NoRespondersError subclass in nats-py.
    nats.js.errors.NoStreamResponseError,
)

# "duplicate message id is in process" (409): the same Nats-Msg-Id is being stored right now (a republish
# racing the first publish through a leader change); trying again gets the de-duplicated ack.
_DUPLICATE_IN_PROCESS = 10158


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    todo = [exc]
    while todo:
        current = todo.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        todo.extend(e for e in (current.__cause__, current.__context__, getattr(current, "orig", None))
                    if isinstance(e, BaseException))


def is_infrastructure_failure(exc: BaseException) -> bool:
    """True when the database or the bus was unavailable: the same message may well succeed later."""
    for link in _chain(exc):
        if isinstance(link, _INFRASTRUCTURE):
            return True
        if isinstance(link, nats.js.errors.APIError) and link.err_code == _DUPLICATE_IN_PROCESS:
            return True
        if isinstance(link, sqlalchemy.exc.DBAPIError) and link.connection_invalidated:
            return True
        if isinstance(link, OSError) and link.errno in _NETWORK_ERRNOS:
            return True
        # "connection is closed", "pool is closing" (not the client-misuse InterfaceErrors).
        if isinstance(link, asyncpg.exceptions.InterfaceError) and "clos" in str(link):
            return True
    return False


def is_bad_data(exc: BaseException) -> bool:
    """True when Postgres refused the message's own data (class 22: e.g. a NUL byte in text, a number
    out of range): retrying the same message can only fail the same way."""
    return any(isinstance(link, asyncpg.exceptions.DataError) for link in _chain(exc))


class Outage:
    """Back-off and log lines of a loop that reconnects: one warning when it breaks, one line when it heals."""

    _FIRST_S, _MAX_S = 0.5, 5.0

    def __init__(self, what: str, logger: logging.Logger | None = None) -> None:
        self.what = what
        self.log = logger or log
        self.since: float | None = None
        self.delay = self._FIRST_S

    def failed(self, exc: BaseException) -> float:
        """Note a failure; returns how long to wait before the next try."""
        if self.since is None:
            self.since = time.monotonic()
            self.log.warning("%s interrupted (%s: %s); reconnecting", self.what, type(exc).__name__, exc)
        else:
            self.log.debug("%s still interrupted: %r", self.what, exc)
        delay, self.delay = self.delay, min(self.delay * 2, self._MAX_S)
        return delay

    def over(self) -> None:
        if self.since is not None:
            self.log.info("%s reconnected after %.1fs", self.what, time.monotonic() - self.since)
        self.since, self.delay = None, self._FIRST_S
