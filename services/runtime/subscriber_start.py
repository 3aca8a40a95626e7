"""Starting FastStream's subscribers when JetStream is slow to answer.

Each subscriber's start asks JetStream for its consumer's info (nats-py's `pull_subscribe`). While a
NATS cluster elects leaders, or when it is busy starting, that request can time out; FastStream's
`broker.start()` would then raise and the service would exit at start-up, to be restarted into the
same state (seen on a 3-node cluster with six replicas starting at once). Here each subscriber is
started on its own and a start the infrastructure refused is tried again with back-off, for as long
as it takes; the process reports itself not ready meanwhile (it has not finished starting).
"""

from __future__ import annotations

import asyncio
import logging

from faststream.nats import NatsBroker

from services.runtime.faults import Outage, is_infrastructure_failure

log = logging.getLogger(__name__)


async def start_subscribers(broker: NatsBroker) -> None:
    """Start every subscriber of a connected broker, each once, waiting out JetStream's timeouts."""
    for subscriber in broker.subscribers:
        durable = getattr(subscriber, "extra_options", {}).get("durable", "?")
        outage = Outage(f"starting consumer {durable}", log)
        while True:
            try:
                await subscriber.start()
                break
            except Exception as exc:
                if not is_infrastructure_failure(exc):
                    raise
                _forget_half_start(subscriber)
                await asyncio.sleep(outage.failed(exc))
        outage.over()
    # What `broker.start()` would set last; nothing else of it applies (streams are ours, declare=False).
    broker.running = True


def _forget_half_start(subscriber: object) -> None:
    """Undo what a failed start left behind: the consume task it spawned before the subscribe call,
    so the next try does not run a second one on the same in-memory queue."""
    tasks = getattr(subscriber, "tasks", None)
    if not tasks:
        return
    for task in tasks:
        task.cancel()
    tasks.clear()
