"""`likeness edit --api-key`: ask the gateway for a picture as the key's user, follow its event stream, save it.

Nothing goes on the bus from here: the gateway checks the key, finds the user's own reference photo of
the character (a built-in character's face is each user's), sends the chain, and streams its events
(`GET /chains/{id}/events`, Server-Sent Events whose data is the event's envelope). A dropped stream is
resumed with `Last-Event-ID`, so no event is shown twice or missed.
"""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from pydantic import ValidationError

from contracts import CHAIN_ENDS, REGISTRY, ChainCompleted, Envelope, Message, RenderProgress, RenderWaiting
from contracts.errors import ContractError, UnknownMessageType
from services.launcher.chain_commands import CliError, output_path
from services.launcher.progress import ChainProgress, progress_for

__all__ = ["SseFrame", "edit_via_gateway", "sse_frames"]

# The gateway sends a heartbeat every 15 s (LIKENESS_GATEWAY_SSE_HEARTBEAT_S): a minute of silence is a dead line.
_TIMEOUT = httpx.Timeout(30.0, read=60.0)
# Live frames the display understands, as the contracts' models (the gateway sends their fields as JSON).
_LIVE = {"progress": RenderProgress, "waiting": RenderWaiting}
_FIRST_RETRY_S = 0.5


@dataclass(frozen=True)
class SseFrame:
    """One Server-Sent Event."""

    id: str | None
    event: str
    data: str


async def sse_frames(lines: AsyncIterator[str]) -> AsyncIterator[SseFrame]:
    """The events of a text/event-stream, given its lines (the WHATWG rules we need: no `retry`, no BOM)."""
    event_id, event, data = None, "message", []
    async for line in lines:
        if not line:
            if data:
                yield SseFrame(event_id, event, "\n".join(data))
            event_id, event, data = None, "message", []
            continue
        if line.startswith(":"):
            continue  # a heartbeat
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "id":
            event_id = value
        elif name == "event":
            event = value
        elif name == "data":
            data.append(value)


async def edit_via_gateway(gateway_url: str, api_key: str, character: str, request: str, out: Path,
                           timeout_s: float, progress: ChainProgress | None = None,
                           transport: httpx.AsyncBaseTransport | None = None) -> int:
    """Ask for the picture, show the chain as it runs, save the final image; 0 done, 1 failed or refused."""
    if Path(character).is_file():
        raise CliError(f"with an API key, --character is a character id, not a photo ({character}): give the "
                       "character your photo in the page, or upload it with POST /characters/upload-image")
    shown = progress or progress_for()
    try:
        async with httpx.AsyncClient(base_url=gateway_url, timeout=_TIMEOUT, transport=transport,
                                     headers={"Authorization": f"Bearer {api_key}"}) as client:
            return await _edit(client, character, request, out, timeout_s, shown)
    except httpx.TransportError as exc:
        raise CliError(f"cannot reach the gateway at {gateway_url} ({type(exc).__name__}: {exc}); is Likeness "
                       "running (`likeness status`), or is --gateway / LIKENESS_GATEWAY_URL right?") from None
    finally:
        shown.close()


async def _edit(client: httpx.AsyncClient, character: str, request: str, out: Path, timeout_s: float,
                progress: ChainProgress) -> int:
    job = _answer(await client.post("/chat/generate-image", json={"character_id": character, "request": request}))
    chain_id = uuid.UUID(job["chain_id"])
    progress.note(f"chain {chain_id} submitted")
    if job.get("note"):
        progress.note(f"note: {job['note']}")
    try:
        async with asyncio.timeout(timeout_s):
            final = await _follow(client, job["events_url"], progress)
    except TimeoutError:
        raise CliError(f"chain {chain_id} did not finish within {timeout_s:.0f}s "
                       f"(GET /chains/{chain_id} shows where it is)") from None
    if not isinstance(final, ChainCompleted):
        return 1
    image = final.final_image
    response = await client.get(f"/images/{image.sha256}")
    _answer(response, json=False)
    if hashlib.sha256(response.content).hexdigest() != image.sha256:
        raise CliError(f"the gateway sent a picture that is not {image.sha256}; try again")
    target = output_path(out, chain_id, image.media_type, progress)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(response.content)
    progress.note(f"final image: {target}")
    return 0


async def _follow(client: httpx.AsyncClient, events_url: str, progress: ChainProgress) -> Message:
    """Show the chain's events until its end, resuming the stream where it broke off."""
    last_id: str | None = None
    delay = _FIRST_RETRY_S
    while True:
        headers = {"Last-Event-ID": last_id} if last_id is not None else {}
        try:
            async with client.stream("GET", events_url, headers=headers) as response:
                if response.status_code != 200:
                    await response.aread()
                    _answer(response)
                async for frame in sse_frames(response.aiter_lines()):
                    if frame.id is not None:
                        last_id = frame.id
                    message = _message(frame)
                    if message is None:
                        continue
                    if message.kind == "ephemeral":
                        progress.live(message)
                        continue
                    progress.event(message)
                    delay = _FIRST_RETRY_S
                    if message.type in CHAIN_ENDS:
                        return message
        except (httpx.TransportError, httpx.StreamError) as exc:
            if delay == _FIRST_RETRY_S:  # once per outage, not once per try
                progress.note(f"the gateway's event stream broke off ({type(exc).__name__}); resuming...")
        # The stream ended without the chain's end (a gateway restart): resume after the last event seen.
        await asyncio.sleep(delay)
        delay = min(delay * 2, 5.0)


def _message(frame: SseFrame) -> Message | None:
    """The typed message of a frame: an event's envelope, or a live render frame; None for what we do not show."""
    live = _LIVE.get(frame.event)
    try:
        if live is not None:
            return live.model_validate_json(frame.data)
        if frame.id is None:
            return None  # previews, queue places (progress carries them too), anything newer than us
        return Envelope.model_validate_json(frame.data).open(REGISTRY)
    except UnknownMessageType:
        return None  # a type newer than this command: the chain's ends are all known to it
    except (ValidationError, ContractError) as exc:
        if live is not None:
            return None  # a live frame is worth nothing late or malformed
        raise CliError(f"the gateway sent an event this command cannot read ({frame.event}: {exc})") from None


def _answer(response: httpx.Response, *, json: bool = True) -> Any:
    """The JSON body of a successful answer; otherwise the gateway's own `detail`, as a CliError."""
    if response.is_success:
        return response.json() if json else None
    try:
        body = response.json()
        detail = f"{body['detail']} ({body['error']})"
    except (ValueError, KeyError, TypeError):
        detail = response.text.strip()[:300] or response.reason_phrase
    gateway = str(response.request.url.join("/")).rstrip("/")
    raise CliError(f"the gateway at {gateway} answered {response.status_code}: {detail}")
