"""The renderer's job queue in front of its ComfyUI backends: jobs wait here until `fair_share.plan` grants
them a backend slot, rather than queueing in arrival order inside ComfyUI where nobody can reorder them.

Each backend takes `slots` of our jobs at once (ComfyUI runs one prompt at a time: a second one only
queues there). The process holds more jobs than that (the consumer's handlers); the rest wait here,
their messages kept in progress at JetStream by the bus's heartbeat. Fairness is per process: several
renderer replicas each share their own held jobs fairly and know only the model they last ran.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace

from services.renderer import fair_share
from services.renderer.metrics import SCHEDULED
from services.renderer.pool import BackendPool

__all__ = ["Scheduler"]

log = logging.getLogger(__name__)

# How often a waiting job looks at its place in the queue (to tell the page when it moves up).
PLACE_POLL_S = 1.0


@dataclass
class _Ticket:
    job: fair_share.Job
    granted: asyncio.Future[str] = field(default_factory=lambda: asyncio.get_running_loop().create_future())


class Scheduler:
    """Grants backend slots of `pool` to waiting jobs, fairly between users; `release` gives one back."""

    def __init__(self, pool: BackendPool, *, slots: int = 1, affinity_skips: int = 2) -> None:
        if slots < 1:
            raise ValueError(f"a backend takes at least 1 job at once, not {slots}")
        self.pool = pool
        self.slots = slots
        self.affinity_skips = affinity_skips
        self._waiting: dict[int, _Ticket] = {}
        self._shares = fair_share.Shares()
        self._ids = itertools.count()
        self._places: dict[int, int] = {}
        pool.on_change = self.dispatch

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    def arrival(self) -> float:
        """A number ordering a job's arrival; keep it across a job's retries, so a failover keeps its place."""
        return float(next(self._ids))

    async def acquire(self, user: str, model: str, urls: Sequence[str], arrival: float,
                      on_place: Callable[[int], Awaitable[None]] | None = None) -> str | None:
        """Wait for a slot on one of `urls` and return that backend, reserved in the pool; None if `urls` is empty.

        While it waits, `on_place(n)` hears its estimated place in the queue (0: next) whenever that changes.
        """
        if not urls:
            return None
        ticket = _Ticket(fair_share.Job(next(self._ids), user, model, arrival, frozenset(urls)))
        self._waiting[ticket.job.id] = ticket
        SCHEDULED.inc()
        try:
            self.dispatch()
            told = None
            while on_place is not None and not ticket.granted.done():
                place = self._places.get(ticket.job.id)
                if place is not None and place != told:
                    await on_place(place)
                    told = place
                await asyncio.wait([ticket.granted], timeout=PLACE_POLL_S)
            return await ticket.granted
        except asyncio.CancelledError:
            # Shutting down (or the deadline) while waiting; a slot granted meanwhile goes back.
            if ticket.granted.done() and not ticket.granted.cancelled():
                self.release(ticket.granted.result(), user)
            raise
        finally:
            self._waiting.pop(ticket.job.id, None)
            self._places.pop(ticket.job.id, None)
            SCHEDULED.dec()

    def release(self, url: str, user: str) -> None:
        """The job of `user` on `url` is done: free its slot and grant it to the next job."""
        self.pool.release(url)
        share = self._shares.share(user)
        users = dict(self._shares.users)
        if share.running <= 1 and not any(t.job.user == user for t in self._waiting.values()):
            # Nothing running, nothing waiting: forget the user, so the table stays as small as the queue.
            users.pop(user, None)
        else:
            users[user] = replace(share, running=max(0, share.running - 1))
        self._shares = replace(self._shares, users=users)
        self.dispatch()

    def dispatch(self) -> None:
        """Grant every free slot that a waiting job can use (also called when a backend's health changes)."""
        if not self._waiting:
            return
        backends = [
            fair_share.Backend(b.url, free=max(0, self.slots - b.in_flight), healthy=b.healthy, loaded=b.loaded,
                               load=b.in_flight + b.foreign, last_used=b.last_used)
            for b in self.pool.backends.values()
        ]
        # A ticket whose task was cancelled stays listed until that task runs again: it must not be granted.
        live = [t.job for t in self._waiting.values() if not t.granted.done()]
        grants, self._shares = fair_share.plan(live, backends, self._shares, affinity_skips=self.affinity_skips)
        for grant in grants:
            ticket = self._waiting.pop(grant.job)  # type: ignore[arg-type]
            self.pool.reserve(grant.url, ticket.job.model)
            ticket.granted.set_result(grant.url)
            if grant.affinity:
                log.debug("%s's %s job goes to %s, which has its model loaded", ticket.job.user, ticket.job.model,
                          grant.url)
        self._places = fair_share.places([t.job for t in self._waiting.values() if not t.granted.done()],
                                         self._shares)
