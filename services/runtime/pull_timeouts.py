"""A pull's deadline always raises `nats.errors.TimeoutError`, the one FastStream's pull loop expects.

Imported by services.runtime.bus, which is what every consumer goes through.
"""

from __future__ import annotations

import functools

import nats.errors
from nats.js import JetStreamContext

__all__: list[str] = []


def _fetch_deadlines_as_nats_timeouts() -> None:
    """Make a pull's deadline always raise `nats.errors.TimeoutError`, the one FastStream's pull loop expects.

    nats-py's `PullSubscription.fetch` raises the builtin `TimeoutError` instead when the deadline ran out
    between its no-wait probe and its lingering request (nats/js/client.py, `raise asyncio.TimeoutError`).
    FastStream's loop only suppresses the nats class, so each such ordinary, empty pull killed the loop: an
    ERROR with a traceback in every service's log, a few times a run, then a restart of the loop.
    """
    fetch = JetStreamContext.PullSubscription.fetch
    if getattr(fetch, "_deadline_is_nats_timeout", False):
        return

    @functools.wraps(fetch)
    async def fetch_with_nats_timeouts(self, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        try:
            return await fetch(self, *args, **kwargs)
        except nats.errors.TimeoutError:
            raise
        except TimeoutError as exc:
            raise nats.errors.TimeoutError from exc

    fetch_with_nats_timeouts._deadline_is_nats_timeout = True  # type: ignore[attr-defined]
    JetStreamContext.PullSubscription.fetch = fetch_with_nats_timeouts  # type: ignore[method-assign]


_fetch_deadlines_as_nats_timeouts()
