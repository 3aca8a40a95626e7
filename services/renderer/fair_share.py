"""Which waiting render job runs on which free backend: per-user fair share with model affinity.

Pure: jobs, backends and each user's share in, grants and the new shares out; no I/O, no clock (a job's
`arrival` is whatever ordered number the caller gives it). The bounds it keeps, and the tests hold it to:

1. Fewest running first: a backend slot goes to a user with the fewest jobs running among the users that
   have a job able to run there. One user's batch of 50 therefore waits while five users with one job
   each run none: each of them gets a slot before the batch gets a second one.
2. Among users tied on that, the least recently served goes first, with its oldest job (the fair choice).
   A job whose model is already loaded on a free backend may go ahead of it (no model swap), another
   user's or a newer one of the same user's, but the fair choice is passed over like that at most
   `affinity_skips` times; after that it gets the next slot that can run it, loaded or not. So affinity
   delays a job by at most `affinity_skips` grants of slots it could have used, never by its turn.
3. Never idle: while a backend has a free slot and some waiting job can run there, one is granted.

A job's backend, when several are free: healthy first, then the job's model loaded there, then nothing
known loaded (no other model to evict), then the least loaded, least recently used, in listed order.
An unhealthy backend is granted only to a job none of whose backends is healthy: its probe may be stale,
and trying it beats failing outright (a refused connection costs milliseconds).
"""

from __future__ import annotations

import heapq
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field, replace

__all__ = ["Backend", "Grant", "Job", "Shares", "UserShare", "best_backend", "places", "plan"]


@dataclass(frozen=True)
class Job:
    """A job waiting for a backend slot; `backends` are those that serve it (and it has not failed on)."""

    id: Hashable
    user: str
    model: str
    arrival: float
    backends: frozenset[str]


@dataclass(frozen=True)
class Backend:
    """One backend as the scheduler sees it: free slots of ours, the model it last ran for us, its load."""

    url: str
    free: int = 1
    healthy: bool = True
    # The model of the last job we ran there; None: unknown (start-up, freed, restarted).
    loaded: str | None = None
    # Jobs queued or running there now, ours and other clients'.
    load: int = 0
    last_used: float = 0.0


@dataclass(frozen=True)
class UserShare:
    """A user's standing: jobs running now, when last served (a grant number), times passed over in a row."""

    running: int = 0
    served: int = -1
    skips: int = 0


@dataclass(frozen=True)
class Shares:
    """Every user's share, and the number the next grant gets (orders `UserShare.served`)."""

    users: Mapping[str, UserShare] = field(default_factory=dict)
    grants: int = 0

    def share(self, user: str) -> UserShare:
        return self.users.get(user, UserShare())


@dataclass(frozen=True)
class Grant:
    """Run `job` on `url`; `swap`: the backend last ran another model for us (it must load this one);
    `affinity`: the job went ahead of the fair choice because its model is loaded there."""

    job: Hashable
    url: str
    swap: bool
    affinity: bool


def best_backend(job: Job, backends: Sequence[Backend]) -> Backend:
    """The backend `job` should take among `backends` (all able to run it): see the module's rule."""
    order = {b.url: i for i, b in enumerate(backends)}

    def rank(b: Backend) -> tuple:
        model_rank = 0 if b.loaded == job.model else 1 if b.loaded is None else 2
        return (not b.healthy, model_rank, b.load, b.last_used, order[b.url])

    return min(backends, key=rank)


def plan(jobs: Sequence[Job], backends: Sequence[Backend], shares: Shares, *,
         affinity_skips: int = 2) -> tuple[list[Grant], Shares]:
    """Grant free backend slots to waiting jobs until no free slot can run any of them."""
    state = {b.url: b for b in backends}
    users = dict(shares.users)
    count = shares.grants
    waiting = sorted(jobs, key=lambda j: j.arrival)
    grants: list[Grant] = []
    while True:
        runnable = _runnable(waiting, state)
        if not runnable:
            return grants, Shares(users, count)
        by_user: dict[str, list[Job]] = {}
        for job in waiting:
            if job.id in runnable:
                by_user.setdefault(job.user, []).append(job)

        def standing(user: str) -> UserShare:
            return users.get(user, UserShare())

        fewest = min(standing(u).running for u in by_user)
        tied = sorted((u for u in by_user if standing(u).running == fewest),
                      key=lambda u: (standing(u).served, by_user[u][0].arrival))
        head = tied[0]
        job, url, affinity = by_user[head][0], None, False
        if standing(head).skips < affinity_skips:
            hit = _loaded_hit(tied, by_user, runnable, state)
            if hit is not None:
                job, url = hit
                affinity = job is not by_user[head][0]
        if url is None:
            url = best_backend(job, [state[u] for u in runnable[job.id]]).url
        backend = state[url]
        swap = backend.loaded is not None and backend.loaded != job.model
        grants.append(Grant(job.id, url, swap, affinity))
        state[url] = replace(backend, free=backend.free - 1, loaded=job.model, load=backend.load + 1)
        waiting.remove(job)
        fair = by_user[head][0]
        if job is not fair and url in runnable[fair.id]:
            # The fair choice could have had this slot: it was passed over for a loaded model.
            users[head] = replace(standing(head), skips=standing(head).skips + 1)
        # Passes count until the user's oldest job runs (its own newer jobs may be the ones going ahead).
        skips = 0 if job is by_user[job.user][0] else standing(job.user).skips
        users[job.user] = UserShare(running=standing(job.user).running + 1, served=count, skips=skips)
        count += 1


def _runnable(waiting: Sequence[Job], state: Mapping[str, Backend]) -> dict[Hashable, list[str]]:
    """Each job that some free slot can run now, with those slots' backends."""
    runnable: dict[Hashable, list[str]] = {}
    for job in waiting:
        known = [b for b in state.values() if b.url in job.backends]
        any_healthy = any(b.healthy for b in known)
        urls = [b.url for b in known if b.free > 0 and (b.healthy or not any_healthy)]
        if urls:
            runnable[job.id] = urls
    return runnable


def _loaded_hit(tied: Sequence[str], by_user: Mapping[str, Sequence[Job]], runnable: Mapping[Hashable, list[str]],
                state: Mapping[str, Backend]) -> tuple[Job, str] | None:
    """The first job, in fair order, that a free backend with its model loaded can run (no swap)."""
    for user in tied:
        for job in by_user[user]:
            hits = [state[u] for u in runnable[job.id] if state[u].loaded == job.model]
            if hits:
                return job, best_backend(job, hits).url
    return None


def places(jobs: Sequence[Job], shares: Shares) -> dict[Hashable, int]:
    """Each waiting job's estimated place in the queue (0: next), were slots to free one at a time.

    The order `plan` gives them with one slot on one backend that serves everything, affinity left out:
    what the page shows while a job waits, not a promise.
    """
    by_user: dict[str, list[Job]] = {}
    for job in sorted(jobs, key=lambda j: j.arrival):
        by_user.setdefault(job.user, []).append(job)
    served = shares.grants
    turns = [(shares.share(u).running, shares.share(u).served, mine[0].arrival, u) for u, mine in by_user.items()]
    heapq.heapify(turns)
    result: dict[Hashable, int] = {}
    while turns:
        running, _, first, user = heapq.heappop(turns)
        result[by_user[user].pop(0).id] = len(result)
        if by_user[user]:
            heapq.heappush(turns, (running + 1, served, first, user))
        served += 1
    return result
