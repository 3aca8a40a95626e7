"""How many picture jobs wait ahead of a new one: read from JetStream when the job is accepted.

The commands stream is a work queue: a command stays in it until a worker has finished it. So its count of
`render.step` commands is every render waiting for a renderer or being rendered, and of `chain.request`
every picture request the planner has not planned yet. All of them were queued before the new request
and JetStream hands them out in order, so each is ahead of its first render: the sum is the new job's
position, 0 when nothing is ahead. It is a lower bound: chains already running queue their next steps
when their current step is accepted, and those may land ahead of it too. Renders run in parallel (each
renderer takes `LIKENESS_WORKERS` at once), so the position counts jobs ahead, not a wait in turns.
"""

from __future__ import annotations

import logging

import nats
from nats.errors import Error as NatsError

from contracts import RenderStep, RequestChain
from contracts.subjects import COMMANDS_STREAM, PREFIX, command_subject

__all__ = ["WAITING_COMMANDS", "jobs_ahead"]

log = logging.getLogger(__name__)

WAITING_COMMANDS = tuple(command_subject(m.model_fields["type"].default) for m in (RenderStep, RequestChain))


async def jobs_ahead(nc: nats.NATS, *, timeout_s: float) -> int | None:
    """Render steps and picture requests queued now and not finished; None when JetStream does not say."""
    try:
        info = await nc.jetstream(timeout=timeout_s).stream_info(COMMANDS_STREAM, subjects_filter=f"{PREFIX}.cmd.>")
    except (NatsError, TimeoutError) as exc:
        # A position is a courtesy: the job is accepted all the same, with a position of null.
        log.warning("the commands stream could not be read for a queue position: %s", exc)
        return None
    counts = info.state.subjects or {}
    return sum(counts.get(subject, 0) for subject in WAITING_COMMANDS)
