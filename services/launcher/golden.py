"""`likeness golden record` and `likeness golden verify`: pinned chains as a release gate for model upgrades.

record: each completed chain's accepted steps (parameters, seed, input, image, score, workflow hash) become a
`GoldenChainRecorded` event in the log's `golden` stream (see contracts/golden.py for why the log).

verify: every step of every pin is rendered again through the running system, under a fresh chain id: a
`RenderStep` with the pinned parameters and input (each step on its own, so a regression is named where it
happens, not inherited by the steps after it), then a `ScoreFace` against the chain's reference. The planner
does not know the fresh chain, so it decides nothing on these results (its saga ignores results of a chain it
never planned). Each step is compared with its pin (services.launcher.golden_compare) and a table printed;
the exit code is 0 (passed), 1 (a step regressed) or 2 (a step could not be checked).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime

import nats

from contracts import (
    REGISTRY,
    ContractError,
    Envelope,
    FaceCheckFailed,
    GoldenChainRecorded,
    GoldenStep,
    Message,
    RenderFailed,
    RenderStep,
    ScoreFace,
)
from contracts.streams import chain_stream, golden_stream
from contracts.subjects import command_subject, stream_filter
from services.launcher.chain_commands import CliError
from services.launcher.golden_compare import StepCheck, Tolerance, exit_code, image_distance, render_table
from services.launcher.golden_pins import GoldenError, latest_pins, parse_swaps, pin_chain, pin_event_id, swapped
from services.runtime.blobs import BlobError, BlobStore
from services.runtime.database import create_engine
from services.runtime.eventstore import ANY_VERSION, EventStore
from services.runtime.settings import RuntimeSettings

__all__ = ["list_pins", "record", "verify"]

_STAGE = {"render.completed": "render", "render.failed": "render", "face.scored": "face", "face.check_failed": "face"}


async def record(settings: RuntimeSettings, chain_ids: Sequence[uuid.UUID], *, note: str | None = None,
                 out: Callable[[str], None] = print) -> int:
    """Pin each chain (all or none: every chain is checked before any pin is written); 0 when done."""
    engine = create_engine(settings)
    try:
        store = EventStore(engine)
        pins = []
        for chain_id in chain_ids:
            recorded = await store.read_stream(chain_stream(chain_id))
            try:
                pins.append(pin_chain(chain_id, [r.envelope.open(REGISTRY) for r in recorded], note=note))
            except GoldenError as exc:
                raise CliError(str(exc)) from None
        pinned = await store.read_stream(golden_stream())
        latest = latest_pins(r.envelope.open(REGISTRY) for r in pinned)
        for pin in pins:
            steps = ", ".join(f"{s.params.template} seed {s.params.seed} score {_score(s.score)}" for s in pin.steps)
            if latest.get(pin.chain_id) == pin:
                out(f"chain {pin.chain_id}: already pinned as is, {len(pin.steps)} step(s): {steps}")
                continue
            envelope = Envelope.wrap(pin, event_id=pin_event_id(pin, len(pinned)), stream=golden_stream(),
                                     occurred_at=datetime.now(UTC), correlation_id=golden_stream(), actor="cli")
            await store.append(golden_stream(), ANY_VERSION, [envelope])
            out(f"chain {pin.chain_id}: pinned, {len(pin.steps)} step(s): {steps}")
    finally:
        await engine.dispose()
    return 0


async def verify(settings: RuntimeSettings, tolerance: Tolerance, *, only: Sequence[uuid.UUID] = (),
                 swaps: Sequence[str] = (), timeout_s: float = 300.0, out: Callable[[str], None] = print) -> int:
    """Render every pinned step again (with `swaps`: KIND:OLD=NEW), compare, print the table; see `exit_code`."""
    try:
        renames = parse_swaps(swaps)
    except GoldenError as exc:
        raise CliError(str(exc)) from None
    pins = await _pins(settings, only)
    nc = await nats.connect(settings.nats_servers, connect_timeout=settings.nats_timeout_s, max_reconnect_attempts=3)
    blobs: BlobStore | None = None
    try:
        blobs = await BlobStore.open(nc.jetstream(), settings=settings)
        session = _Session(nc, blobs, settings, timeout_s, renames)
        jobs = []
        for pin in pins:
            fresh = uuid.uuid4()
            await session.listen(fresh)
            out(f"chain {pin.chain_id}: re-rendering {len(pin.steps)} step(s) as chain {fresh}")
            jobs += [session.check(pin, step, fresh) for step in pin.steps]
        checks = await asyncio.gather(*jobs)
    finally:
        if blobs is not None:
            await blobs.close()
        with contextlib.suppress(Exception):
            await nc.drain()
    out(render_table(checks, tolerance))
    code = exit_code(checks, tolerance)
    out({0: f"PASS: {len(checks)} step(s) of {len(pins)} chain(s) within tolerance (score drop <= "
            f"{tolerance.max_score_drop:g}, distance <= {tolerance.max_distance:g})",
         1: "FAIL: a pinned step regressed (above)",
         2: "NOT CHECKED: a pinned step could not be rendered or scored (above)"}[code])
    return code


async def list_pins(settings: RuntimeSettings, *, out: Callable[[str], None] = print) -> int:
    """One line per pinned chain (its latest pin): when, how many steps, which templates and models, the note."""
    engine = create_engine(settings)
    try:
        recorded = await EventStore(engine).read_stream(golden_stream())
    finally:
        await engine.dispose()
    when = {r.envelope.data["chain_id"]: r.recorded_at for r in recorded}
    pins = latest_pins(r.envelope.open(REGISTRY) for r in recorded)
    if not pins:
        out("no pinned chains: pin some with `likeness golden record CHAIN_ID...`")
    for pin in pins.values():
        used = sorted({f"{s.params.template}/{s.params.model}" for s in pin.steps})
        out(f"{pin.chain_id}  {when[str(pin.chain_id)]:%Y-%m-%d %H:%M}  {len(pin.steps)} step(s)  {', '.join(used)}"
            f"{f'  ({pin.note})' if pin.note else ''}")
    return 0


async def _pins(settings: RuntimeSettings, only: Sequence[uuid.UUID]) -> list[GoldenChainRecorded]:
    engine = create_engine(settings)
    try:
        recorded = await EventStore(engine).read_stream(golden_stream())
    finally:
        await engine.dispose()
    pins = latest_pins(r.envelope.open(REGISTRY) for r in recorded)
    missing = [str(chain_id) for chain_id in only if chain_id not in pins]
    if missing:
        raise CliError(f"never pinned: {', '.join(missing)} (pin with `likeness golden record CHAIN_ID...`)")
    if not pins:
        raise CliError("no pinned chains in the log: pin some with `likeness golden record CHAIN_ID...`")
    return [pins[chain_id] for chain_id in only] if only else list(pins.values())


class _Session:
    """One verify run's connection: sends commands, and hands each result to the step waiting for it."""

    def __init__(self, nc: nats.NATS, blobs: BlobStore, settings: RuntimeSettings, timeout_s: float,
                 swaps: dict[str, dict[str, str]]) -> None:
        self._nc, self._blobs, self._settings, self._swaps = nc, blobs, settings, swaps
        self._timeout_s, self._deadline = timeout_s, time.monotonic() + timeout_s
        self._waiting: dict[tuple[uuid.UUID, int, int, str], asyncio.Future[Message]] = {}

    async def listen(self, fresh: uuid.UUID) -> None:
        """Subscribe to the fresh chain's results before any command for it is sent: none can be missed."""
        for family in ("render", "face"):
            await self._nc.subscribe(stream_filter(family, chain_stream(fresh)), cb=self._on_result)

    async def _on_result(self, msg: nats.aio.msg.Msg) -> None:
        try:
            message = Envelope.from_bytes(msg.data).open(REGISTRY)
        except ContractError:
            return  # not ours to judge: the planner's dead-letter path deals with malformed results
        stage = _STAGE.get(message.type)
        waiting = self._waiting.get((message.chain_id, message.step, message.attempt, stage)) if stage else None
        if waiting is not None and not waiting.done():
            waiting.set_result(message)

    async def check(self, pin: GoldenChainRecorded, pinned: GoldenStep, fresh: uuid.UUID) -> StepCheck:
        params = swapped(pinned.params, self._swaps)
        base = StepCheck(chain_id=pin.chain_id, step=params.index, template=params.template,
                         threshold=pin.threshold, pinned_score=pinned.score, pinned_hash=pinned.workflow_hash)
        rendered = await self._ask(RenderStep(
            chain_id=fresh, step=params.index, attempt=1, seed=params.seed, input_image=pinned.input_image,
            prompt=params.prompt, negative_prompt=params.negative_prompt, loras=params.loras, width=params.width,
            height=params.height, steps=params.steps, cfg=params.cfg, denoise=params.denoise, model=params.model,
            template=params.template, style=pin.style, deadline_s=max(1.0, self._left()),
            reference_image=pin.reference_image if pinned.with_reference else None), "render")
        if rendered is None:
            return replace(base, unchecked=f"no answer from the renderer within {self._waited()}: is it running "
                                           "(`likeness status`)?")
        if isinstance(rendered, RenderFailed):
            return replace(base, failure=f"render failed ({rendered.error_kind}): {rendered.reason}")
        base = replace(base, new_hash=rendered.workflow_hash)
        try:
            before, after = await asyncio.gather(self._blobs.get(pinned.image.sha256),
                                                 self._blobs.get(rendered.image.sha256))
        except BlobError as exc:
            return replace(base, unchecked=f"a picture is not in the blob store: {exc}")
        base = replace(base, distance=await asyncio.to_thread(image_distance, before, after))
        if pin.reference_image is None or pin.character_id is None or pinned.score is None:
            return base  # a text-to-image step: nothing to hold its face to
        # The pinned picture is scored again beside the new one (as "attempt 2"): the face check may have changed
        # since the pin (a new calibration), and only the same scorer on both says whether the render moved.
        scored, rescored = await asyncio.gather(*(
            self._ask(ScoreFace(chain_id=fresh, step=params.index, attempt=attempt, image=image,
                                reference_image=pin.reference_image, character_id=pin.character_id), "face")
            for attempt, image in ((1, rendered.image), (2, pinned.image))))
        if scored is None or rescored is None:
            return replace(base, unchecked=f"no answer from facecheck within {self._waited()}: is it running "
                                           "(`likeness status`)?")
        if isinstance(scored, FaceCheckFailed):
            return replace(base, failure=f"face check failed: {scored.reason}")
        if isinstance(rescored, FaceCheckFailed):
            return replace(base, unchecked=f"the pinned picture cannot be face-checked now: {rescored.reason}")
        return replace(base, new_score=scored.score, face_note=scored.reason, pinned_now=rescored.score)

    async def _ask(self, command: RenderStep | ScoreFace, stage: str) -> Message | None:
        """Send `command` and wait for its result until the run's deadline; None when none came."""
        key = (command.chain_id, command.step, command.attempt, stage)
        self._waiting[key] = asyncio.get_running_loop().create_future()
        stream = chain_stream(command.chain_id)
        envelope = Envelope.wrap(command, event_id=uuid.uuid4(), stream=stream, occurred_at=datetime.now(UTC),
                                 correlation_id=stream, actor="cli")
        await self._nc.jetstream().publish(command_subject(command.type), envelope.to_bytes(),
                                           headers={"Nats-Msg-Id": str(envelope.event_id)},
                                           timeout=self._settings.nats_timeout_s)
        try:
            return await asyncio.wait_for(self._waiting[key], max(0.1, self._left()))
        except TimeoutError:
            return None

    def _left(self) -> float:
        return self._deadline - time.monotonic()

    def _waited(self) -> str:
        return f"{self._timeout_s:g}s (--timeout)"


def _score(score: float | None) -> str:
    return "-" if score is None else f"{score:.1f}"
