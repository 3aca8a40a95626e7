"""`likeness edit` and `likeness audit`: submit a chain and follow it live; print a chain's record."""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

import nats

from contracts import CHAIN_ENDS, REGISTRY, ChainCompleted, ChainRequested, Envelope, ImageRef, Message, RequestChain
from contracts.audit import ChainAudit, build_audit
from contracts.streams import chain_stream, character_stream
from contracts.subjects import command_subject, live_subject, stream_filter
from services.launcher.progress import ChainProgress, PlainProgress, progress_for
from services.runtime.blobs import BlobError, BlobStore
from services.runtime.database import create_engine
from services.runtime.eventstore import EventStore
from services.runtime.faults import is_infrastructure_failure
from services.runtime.settings import RuntimeSettings

__all__ = ["audit", "edit"]

T = TypeVar("T")



class CliError(Exception):
    """A problem the user can fix; printed without a traceback."""


async def _reference(store: EventStore, blobs: BlobStore, character: str) -> tuple[str, ImageRef]:
    """A character id with its reference image, or a photo path turned into an ad-hoc character."""
    path = Path(character)
    if path.is_file():
        try:
            ref = await blobs.put_image(path.read_bytes())
        except BlobError as exc:
            raise CliError(f"{path}: {exc}") from None
        return f"photo-{ref.sha256[:12]}", ref
    # Only a custom character's own reference serves: a built-in's face is each user's, never the CLI's.
    recorded = [r.envelope for r in await store.read_stream(character_stream(character))]
    builtin = bool(recorded) and bool(recorded[0].data.get("builtin"))
    references = [e.data["image"] for e in recorded
                  if e.type == "character.reference_set" and e.data.get("image") and not e.data.get("for_user")]
    if references and not builtin:
        return character, ImageRef.model_validate(references[-1])
    raise CliError(f"character {character!r} has no reference image of its own (a built-in character's face is "
                   f"each user's: pass a photo file instead)")


def output_path(out: Path, chain_id: uuid.UUID, media_type: str, progress: ChainProgress | None = None) -> Path:
    """Where the picture goes: `out` itself when it names a picture file (by its extension), else a file named
    after the chain in the folder `out`."""
    extension = media_type.split("/")[1].replace("jpeg", "jpg")
    if out.suffix.lower() in (".png", ".jpg", ".jpeg", ".webp"):
        if out.suffix.lower().lstrip(".").replace("jpeg", "jpg") != extension:
            (progress or PlainProgress()).note(f"note: the picture is {media_type}; saved as {out.name} anyway")
        return out
    return out / f"{chain_id}.{extension}"


async def edit(settings: RuntimeSettings, character: str, request: str, out: Path, timeout_s: float,
               progress: ChainProgress | None = None) -> int:
    """Submit a chain, show its events as they happen, save the final image; 0 done, 1 failed."""
    shown = progress or progress_for()
    try:
        return await _edit(settings, character, request, out, timeout_s, shown)
    finally:
        shown.close()


async def _edit(settings: RuntimeSettings, character: str, request: str, out: Path, timeout_s: float,
                progress: ChainProgress) -> int:
    outcome: asyncio.Queue[Message] = asyncio.Queue()
    catch_up = asyncio.Event()

    async def on_disconnected() -> None:
        progress.note("NATS connection lost; waiting for it to come back...")

    async def on_reconnected() -> None:
        progress.note("NATS is back; following the chain again")
        catch_up.set()  # events published meanwhile were not seen live: read them from the log

    async def on_error(exc: Exception) -> None:
        # Reconnect attempts fail while the server is down: the disconnect line above says so once.
        return None

    # Never gives up reconnecting by itself: the chain's own timeout bounds the wait.
    nc = await nats.connect(settings.nats_servers, connect_timeout=settings.nats_timeout_s, max_reconnect_attempts=-1,
                            reconnect_time_wait=1, disconnected_cb=on_disconnected,
                            reconnected_cb=on_reconnected, error_cb=on_error)
    engine = create_engine(settings)
    deadline = time.monotonic() + timeout_s
    blobs: BlobStore | None = None
    try:
        blobs = await _outlasting(lambda: BlobStore.open(nc.jetstream(), settings=settings), deadline)
        store = EventStore(engine)
        character_id, reference = await _outlasting(lambda: _reference(store, blobs, character), deadline)
        chain_id = uuid.uuid4()
        stream = chain_stream(chain_id)

        async def on_event(msg: nats.aio.msg.Msg) -> None:
            message = Envelope.from_bytes(msg.data).open(REGISTRY)
            progress.event(message)
            if message.type in CHAIN_ENDS:
                await outcome.put(message)

        async def on_live(msg: nats.aio.msg.Msg) -> None:
            progress.live(Envelope.from_bytes(msg.data).open(REGISTRY))

        # Subscribe before submitting: nothing of this chain can have happened yet.
        await nc.subscribe(stream_filter("chain", stream), cb=on_event)
        await nc.subscribe(live_subject("render.progress", stream), cb=on_live)
        await nc.subscribe(live_subject("render.waiting", stream), cb=on_live)
        command = RequestChain(chain_id=chain_id, character_id=character_id, user_id="cli", request_text=request,
                               reference_image=reference)
        envelope = Envelope.wrap(command, event_id=uuid.uuid4(), stream=stream, occurred_at=datetime.now(UTC),
                                 correlation_id=stream, actor="cli")
        # Sent again after an outage with the same id: JetStream keeps one.
        await _outlasting(lambda: nc.jetstream().publish(command_subject(command.type), envelope.to_bytes(),
                                                         headers={"Nats-Msg-Id": str(envelope.event_id)},
                                                         timeout=settings.nats_timeout_s), deadline)
        progress.note(f"chain {chain_id} submitted")
        follower = asyncio.ensure_future(_catch_up_after_reconnects(store, stream, catch_up, outcome, progress))
        try:
            final = await asyncio.wait_for(outcome.get(), max(1.0, deadline - time.monotonic()))
        except asyncio.TimeoutError:
            raise CliError(f"chain {chain_id} did not finish within {timeout_s:.0f}s (see `likeness audit {chain_id}`)")
        finally:
            follower.cancel()
        if final.type == "chain.completed":
            target = output_path(out, chain_id, final.final_image.media_type, progress)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(await _outlasting(lambda: blobs.get(final.final_image.sha256), deadline + 60))
            progress.note(f"final image: {target}")
        return 0 if isinstance(final, ChainCompleted) else 1
    finally:
        if blobs is not None:
            await blobs.close()
        with contextlib.suppress(Exception):
            await nc.drain()
        await engine.dispose()


async def _outlasting(step: Callable[[], Awaitable[T]], deadline: float) -> T:
    """`step()`, tried again while NATS or Postgres is away (a restart), until `deadline`."""
    delay = 0.5
    while True:
        try:
            return await step()
        except Exception as exc:
            if not is_infrastructure_failure(exc) or time.monotonic() + delay > deadline:
                raise
        await asyncio.sleep(delay)
        delay = min(delay * 2, 5.0)


async def _catch_up_after_reconnects(store: EventStore, stream: str, reconnected: asyncio.Event,
                                     outcome: asyncio.Queue[Message], progress: ChainProgress) -> None:
    """After each reconnect, look in the log for the chain's end, which may have passed while NATS was away."""
    while True:
        await reconnected.wait()
        reconnected.clear()
        with contextlib.suppress(Exception):  # the database may be catching up too: the next reconnect retries
            for recorded in await store.read_stream(stream):
                message = recorded.envelope.open(REGISTRY)
                if message.type in CHAIN_ENDS:
                    progress.event(message)
                    await outcome.put(message)


async def audit(settings: RuntimeSettings, chain_id: uuid.UUID) -> int:
    """Print the chain's full record from the events table."""
    engine = create_engine(settings)
    try:
        recorded = await EventStore(engine).read_stream(chain_stream(chain_id))
    finally:
        await engine.dispose()
    if not recorded:
        raise CliError(f"no chain {chain_id} in the log")
    report = build_audit(str(chain_id), [(r.envelope.open(REGISTRY), r.envelope.occurred_at) for r in recorded])
    print(render_audit(report))
    return 0


def render_audit(report: ChainAudit) -> str:
    lines = [f"chain {report.chain_id}: {report.status}"]
    if isinstance(report.request, ChainRequested):
        request = report.request
        drawn = "text-to-image, no character" if request.character_id is None else f"character {request.character_id}"
        lines.append(f"  request: {request.request_text!r} ({drawn})")
    lines.append(f"  planner: {report.planner} {report.planner_note or ''}".rstrip())
    source = f" ({report.threshold_source})" if report.threshold_source else ""
    lines.append(f"  threshold: {report.threshold}{source}")
    if report.drift_budget is not None:
        lines.append(f"  drift budget: {report.drift_budget:g}, inherited drift {report.inherited_drift or 0:g}")
    for step in report.steps:
        loras = ", ".join(f"{l.name}@{l.strength:g}" for l in step.loras) or "none"
        lines.append(f"  step {step.index + 1} [{step.kind}] {step.prompt!r}")
        lines.append(f"    model {step.model}, template {step.template}, loras: {loras}")
        if step.negative_prompt:
            lines.append(f"    negative: {step.negative_prompt!r}")
        if step.reanchored:
            lines.append(f"    re-anchored: {step.reanchored}")
        for a in step.attempts:
            timing = " ".join(f"{k}={v:.0f}ms" for k, v in a.timings.items())
            score = "-" if a.score is None else f"{a.score:.1f}"
            lines.append(f"    attempt {a.attempt}: seed {a.seed} score {score} -> {a.decision}"
                         f"{f' ({a.reason})' if a.reason and a.decision != 'accepted' else ''}"
                         f"{f' [rung {a.rung}]' if a.rung else ''}")
            if a.workflow_hash:
                lines.append(f"      workflow {a.workflow_hash[:16]} backend {a.backend} engine {a.engine} {timing}")
            if a.previous_score is not None:
                lines.append(f"      {a.previous_score:.1f} against the picture it edited")
        if step.cumulative_drift is not None:
            lines.append(f"    drift {step.drift if step.drift is not None else '-'}, "
                         f"cumulative {step.cumulative_drift:g}")
    if report.final_image:
        lines.append(f"  final image: sha256 {report.final_image.sha256}")
    if report.outcome:
        lines.append(f"  outcome: {report.outcome}")
    return "\n".join(lines)


def run(coro) -> int:
    try:
        return asyncio.run(coro)
    except CliError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (OSError, nats.errors.Error) as exc:
        print(f"error: cannot reach NATS or Postgres ({type(exc).__name__}: {exc}); is Likeness running "
              "(`likeness status`)?", file=sys.stderr)
        return 2
