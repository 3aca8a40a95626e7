"""A stand-in for the gateway, for page-level browser tests: the web page plus fakes of its endpoints.

It serves `services/gateway/static` exactly as the gateway does (`/` is index.html, `/static/*` the
assets) and answers the calls the page makes, from memory, with the gateway's shapes: characters
(one built-in without a reference photo), chat replies streamed as `delta` / `reply` events in
offline persona mode, picture jobs, and chains whose events are scripted on a timer and streamed
as Server-Sent Events with `id: <stream version>`, resumable with `Last-Event-ID`, plus ephemeral
`progress` and `preview` events. Each step's first attempt is retried once when the request says
"drift", to show a retry. While `renderer_away` is set, a chain's first render streams `waiting`
events instead, as the gateway does while no render backend answers. An image limit per session is
enforced with a 403, like the gateway's.

    with MockGateway(tick_s=0.05) as mock:
        page.goto(mock.url)
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import io
import json
import threading
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.parser import BytesParser
from email.policy import HTTP
from pathlib import Path
from typing import Any, Self

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from PIL import Image, ImageDraw

from services.launcher.embedded import free_port

__all__ = ["MockGateway", "create_app"]

STATIC = Path(__file__).resolve().parents[2] / "services" / "gateway" / "static"
SESSION_COOKIE = "likeness_session"
THRESHOLD = 40.0
KINDS = ("background", "outfit", "pose")
TERMINAL = {"chain.completed", "chain.failed", "chain.refused", "chain.cancelled"}
SAMPLER_STEPS = 4
RENDER_WAIT_LIMIT_S = 60.0  # the renderer's `limit_s`: how long it waits for a backend at most


def error(status: int, code: str, detail: str) -> JSONResponse:
    return JSONResponse({"error": code, "detail": detail}, status_code=status)


def png(colour: tuple[int, int, int], label: str, size: int = 256) -> bytes:
    image = Image.new("RGB", (size, size), colour)
    draw = ImageDraw.Draw(image)
    draw.ellipse((size * 0.3, size * 0.15, size * 0.7, size * 0.6), fill=(236, 200, 170))
    draw.text((8, size - 20), label, fill=(255, 255, 255))
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


@dataclass
class Chain:
    id: str
    character_id: str
    owner: str
    request: str
    parent_chain_id: str | None = None
    branch_from_step: int | None = None
    events: list[tuple[int, str, dict[str, Any]]] = field(default_factory=list)
    live: list[asyncio.Queue] = field(default_factory=list)
    status: str = "running"
    kinds: tuple[str, ...] = KINDS
    scores: dict[int, float] = field(default_factory=dict)
    images: dict[int, str] = field(default_factory=dict)


class State:
    def __init__(self, tick_s: float, image_limit: int, chat_record_delay_s: float) -> None:
        self.tick_s = tick_s
        self.image_limit = image_limit
        self.chat_record_delay_s = chat_record_delay_s
        self.characters: dict[str, dict[str, Any]] = {
            "ayla": {"id": "ayla", "name": "Ayla", "gender": "woman", "personality": "warm, curious",
                     "occupation": "marine biologist", "art_style": "photoreal", "builtin": True,
                     "has_reference": False, "persona": "Ayla loves the sea."},
        }
        self.photos: dict[str, bytes] = {}
        self.images: dict[str, bytes] = {}
        self.chains: dict[str, Chain] = {}
        self.jobs: dict[str, dict[str, Any]] = {}
        self.requests_by_session: dict[str, int] = {}
        self.hidden_pictures: set[str] = set()  # chain ids deleted from /me/pictures
        # Conversations as the gateway keeps them: id -> session, character and messages (oldest first).
        self.conversations: dict[str, dict[str, Any]] = {}
        self.registered: set[str] = set()
        self.keys: dict[str, str] = {}
        self.stream_opens: list[tuple[str, str | None]] = []  # (chain id, Last-Event-ID) per SSE request
        # Set and cleared by a test (from its own thread): no render backend answers while it is set.
        # A flag held until the test clears it, not a count of events, so the test sees the waiting
        # line for as long as it needs to, whatever the tick.
        self.renderer_away = False
        self.tasks: set[asyncio.Task] = set()
        self.loop: asyncio.AbstractEventLoop | None = None

    def public(self, character: dict[str, Any]) -> dict[str, Any]:
        out = {k: v for k, v in character.items() if k != "persona"}
        photo = self.photos.get(character["id"])
        version = f"?v={hashlib.sha256(photo).hexdigest()[:12]}" if photo else ""
        out["avatar_url"] = f"/avatar/{character['id']}{version}" if character["has_reference"] else None
        return out

    def store(self, data: bytes) -> str:
        sha = hashlib.sha256(data).hexdigest()
        self.images[sha] = data
        return sha

    # -- chains ---------------------------------------------------------------------------------

    def start_chain(self, session: str, character_id: str, request: str, *, parent: Chain | None = None,
                    from_step: int | None = None, record_after_s: float = 0.0) -> Chain:
        """A chain that runs on its own; it is known (listed, streamed) only `record_after_s` from now."""
        chain = Chain(str(uuid.uuid4()), character_id, session, request,
                      parent_chain_id=parent.id if parent else None, branch_from_step=from_step)
        if parent is not None and from_step is not None:
            chain.kinds = parent.kinds[from_step + 1:] or (parent.kinds[-1],)
        if not record_after_s:
            self.chains[chain.id] = chain
        self.loop = asyncio.get_running_loop()
        task = self.loop.create_task(self.run_chain(chain, record_after_s))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return chain

    def append(self, chain: Chain, type_: str, **data: Any) -> None:
        seq = len(chain.events) + 1
        envelope = {"event_id": str(uuid.uuid4()), "stream": f"chain-{chain.id}", "seq": seq, "type": type_,
                    "version": 1, "occurred_at": datetime.now(UTC).isoformat(), "correlation_id": chain.id,
                    "causation_id": None, "actor": chain.owner, "data": {"chain_id": chain.id, **data}}
        chain.events.append((seq, type_, envelope))
        self.broadcast(chain, ("persisted", seq, type_, envelope))
        if type_ in TERMINAL:
            chain.status = type_.removeprefix("chain.")

    def broadcast(self, chain: Chain, item: tuple) -> None:
        for queue in chain.live:
            queue.put_nowait(item)

    async def run_chain(self, chain: Chain, record_after_s: float = 0.0) -> None:
        if record_after_s:
            await asyncio.sleep(record_after_s)
            self.chains[chain.id] = chain
        tick = self.tick_s
        reference = self.photos.get(chain.character_id)
        self.append(chain, "chain.requested", character_id=chain.character_id, user_id=chain.owner,
                    request_text=chain.request, parent_chain_id=chain.parent_chain_id,
                    branch_from_step=chain.branch_from_step,
                    reference_image={"sha256": self.store(reference) if reference else "0" * 64})
        await asyncio.sleep(tick)
        if "forbidden" in chain.request:
            self.append(chain, "chain.refused", reason="the request is over the content bound", rule="content")
            return
        steps = [{"index": i, "kind": kind, "prompt": f"{kind}: {chain.request}", "seed": 1000 + i}
                 for i, kind in enumerate(chain.kinds)]
        self.append(chain, "chain.planned", steps=steps, planner="rules", threshold=THRESHOLD, max_retries=3)
        drift = "drift" in chain.request
        for step in steps:
            index = step["index"]
            attempts = 2 if drift and index == 0 else 1
            for attempt in range(1, attempts + 1):
                seed = step["seed"] + 7919 * (attempt - 1)
                self.append(chain, "chain.step_requested", step=index, attempt=attempt, seed=seed,
                            input_image={"sha256": "0" * 64})
                # The first render waits for a renderer to come back if none answers, or else behind
                # other users' renders.
                if index == 0 and attempt == 1 and not await self.wait_for_renderer(chain, index, attempt):
                    for position in (2, 2, 2, 2, 1, 1, 1, 1):
                        await asyncio.sleep(tick)
                        self.broadcast(chain, ("progress", {"step": 0, "attempt": 1, "value": 0,
                                                            "max": SAMPLER_STEPS, "queue_position": position}))
                        self.broadcast(chain, ("queue", {"position": position, "step": 0, "attempt": 1}))
                for value in range(SAMPLER_STEPS + 1):
                    await asyncio.sleep(tick)
                    progress = {"step": index, "attempt": attempt, "value": value, "max": SAMPLER_STEPS}
                    self.broadcast(chain, ("progress", progress))
                    if value:
                        preview = png((40 * value, 90, 160), f"preview {value}", 64)
                        self.broadcast(chain, ("preview", {
                            "step": index, "attempt": attempt,
                            "data_url": "data:image/png;base64," + base64.b64encode(preview).decode()}))
                sha = self.store(png((60 + 60 * index, 120, 200 - 40 * attempt), f"step {index} #{attempt}"))
                self.append(chain, "chain.step_rendered", step=index, attempt=attempt, image={"sha256": sha},
                            workflow_hash="f" * 16, backend="mock", engine="draft")
                await asyncio.sleep(tick)
                score = 22.5 if attempt < attempts else 61.0 + index
                self.append(chain, "chain.step_scored", step=index, attempt=attempt, score=score, faces_found=1,
                            threshold=THRESHOLD)
                await asyncio.sleep(tick)
                if score < THRESHOLD:
                    self.append(chain, "chain.step_retried", step=index, next_attempt=attempt + 1,
                                new_seed=seed + 7919, previous_score=score, reason="the face drifted")
                    continue
                self.append(chain, "chain.step_accepted", step=index, attempt=attempt, image={"sha256": sha},
                            score=score)
                chain.scores[index] = score
                chain.images[index] = sha
        final = chain.images[len(steps) - 1]
        self.append(chain, "chain.completed", final_image={"sha256": final},
                    step_images=[{"sha256": chain.images[i]} for i in range(len(steps))])


    async def wait_for_renderer(self, chain: Chain, step: int, attempt: int) -> bool:
        """While the renderer is away, send `waiting` every tick; whether there was any wait.

        A render that waited is taken as soon as a backend is back, so its first `progress` carries
        no queue position: that is what clears the waiting line on the page."""
        started = time.monotonic()
        waited = False
        while self.renderer_away:
            waited = True
            self.broadcast(chain, ("waiting", {"chain_id": chain.id, "step": step, "attempt": attempt,
                                               "waited_s": round(time.monotonic() - started, 1),
                                               "limit_s": RENDER_WAIT_LIMIT_S}))
            await asyncio.sleep(self.tick_s)
        return waited


def create_app(*, tick_s: float = 0.05, image_limit: int = 100, chat_record_delay_s: float = 0.5) -> FastAPI:
    """`chat_record_delay_s`: as in the real system, a chain asked for in chat is named (the `image`
    event) before it is recorded: until then its stream is a 404 and /me/tree does not list it."""
    app = FastAPI(title="Likeness gateway mock")
    state = State(tick_s, image_limit, chat_record_delay_s)
    app.state.mock = state

    @app.middleware("http")
    async def session(request: Request, call_next):
        sid = request.cookies.get(SESSION_COOKIE)
        fresh = sid is None
        request.state.session = sid or uuid.uuid4().hex
        response = await call_next(request)
        if fresh:
            response.set_cookie(SESSION_COOKIE, request.state.session, httponly=True, samesite="lax")
        return response

    @app.get("/me")
    async def me(request: Request) -> Response:
        sid = request.state.session
        used = state.requests_by_session.get(sid, 0)
        if sid in state.registered:
            return JSONResponse({"user_id": sid, "kind": "registered", "images_used": used, "image_limit": None,
                                 "images_left": None})
        return JSONResponse({"user_id": sid, "kind": "anonymous", "images_used": used,
                             "image_limit": state.image_limit, "images_left": max(0, state.image_limit - used)})

    @app.post("/auth/signup", status_code=201)
    async def signup(request: Request) -> Response:
        # As the gateway does: the guest's session becomes the registered user, pictures and all.
        key = f"lk_{uuid.uuid4().hex}"
        state.registered.add(request.state.session)
        state.keys[key] = request.state.session
        return JSONResponse({"user_id": request.state.session, "api_key": key, "kind": "registered"}, 201)

    @app.post("/auth/login")
    async def login(request: Request) -> Response:
        user = state.keys.get((await request.json()).get("api_key", ""))
        if user is None:
            return error(401, "invalid_api_key", "that API key is not valid (or was revoked)")
        response = JSONResponse({"user_id": user, "kind": "registered"})
        response.set_cookie(SESSION_COOKIE, user, httponly=True, samesite="lax")
        return response

    @app.post("/auth/logout")
    async def logout() -> Response:
        response = Response(status_code=204)
        response.delete_cookie(SESSION_COOKIE)
        return response

    @app.get("/")
    async def index() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/styles")
    async def styles() -> list[dict[str, Any]]:
        return [{"name": "photoreal", "description": "Photographs", "default": True},
                {"name": "anime", "description": "Clean anime line art", "default": False}]

    @app.get("/characters")
    async def characters() -> list[dict[str, Any]]:
        return [state.public(c) for c in state.characters.values()]

    @app.get("/characters/{character_id}/persona")
    async def persona(character_id: str) -> Response:
        character = state.characters.get(character_id)
        if character is None:
            return error(404, "not_found", f"no character {character_id!r}")
        return JSONResponse({"character_id": character_id, "persona": character["persona"]})

    @app.put("/characters/{character_id}/persona")
    async def set_persona(character_id: str, request: Request) -> Response:
        character = state.characters.get(character_id)
        if character is None:
            return error(404, "not_found", f"no character {character_id!r}")
        character["persona"] = (await request.json())["persona"]
        return JSONResponse({"character_id": character_id, "persona": character["persona"]})

    @app.post("/characters/upload-image")
    async def upload(request: Request) -> Response:
        fields, image = _multipart(request.headers.get("content-type", ""), await request.body())
        if not image:
            return error(422, "invalid_request", "send the photo as the `image` file field")
        if not image.startswith((b"\x89PNG", b"\xff\xd8", b"RIFF")):
            # As the gateway judges it: by the content, whatever the file is called.
            return error(415, "unsupported_media_type", "the file is not a JPEG, PNG or WebP image")
        if "character_id" in fields:
            character = state.characters.get(fields["character_id"])
            if character is None:
                return error(404, "not_found", f"no character {fields['character_id']!r}")
        else:
            name = fields.get("name", "").strip()
            if not name:
                return error(422, "invalid_request", "a new character needs a name")
            cid = "".join(ch if ch.isalnum() else "-" for ch in name.lower())[:40] + "-" + uuid.uuid4().hex[:6]
            character = {"id": cid, "name": name, "gender": fields.get("gender", "other"),
                         "personality": fields.get("personality", ""), "occupation": fields.get("occupation", ""),
                         "art_style": fields.get("art_style", "photoreal"), "builtin": False,
                         "has_reference": False, "persona": fields.get("persona", "")}
            state.characters[cid] = character
        state.photos[character["id"]] = image
        character["has_reference"] = True
        return JSONResponse(state.public(character), status_code=201 if "character_id" not in fields else 200)

    @app.get("/avatar/{character_id}")
    async def avatar(character_id: str) -> Response:
        photo = state.photos.get(character_id)
        if photo is None:
            return error(404, "not_found", "this character has no photo")
        return Response(photo, media_type="image/png")

    def allowed(request: Request) -> JSONResponse | None:
        used = state.requests_by_session.get(request.state.session, 0)
        if used >= state.image_limit and request.state.session not in state.registered:
            return error(403, "image_limit", f"You have used all {state.image_limit} pictures of this session.")
        state.requests_by_session[request.state.session] = used + 1
        return None

    def needs_photo(character_id: str) -> JSONResponse | None:
        character = state.characters.get(character_id)
        if character is None:
            return error(404, "not_found", f"no character {character_id!r}")
        if not character["has_reference"]:
            return error(409, "no_reference", "add a photo of this character before asking for pictures")
        return None

    @app.post("/chat/stream")
    async def chat(request: Request) -> Response:
        body = await request.json()
        character = state.characters.get(body.get("character_id"))
        if character is None:
            return error(404, "not_found", "no such character")
        text: str = body["text"]
        chain_id = None
        # Like the real gateway: past the limit the message is still answered, with no picture.
        login_required = False
        if "picture" in text.lower():
            if (refusal := needs_photo(character["id"])) is not None:
                return refusal
            login_required = allowed(request) is not None
            if not login_required:
                chain_id = state.start_chain(request.state.session, character["id"], text,
                                             record_after_s=state.chat_record_delay_s).id
        conversation = body.get("conversation_id") or str(uuid.uuid4())
        kept = state.conversations.setdefault(conversation, {"session": request.state.session,
                                                             "character_id": character["id"], "messages": []})
        message_id = str(uuid.uuid4())
        kept["messages"].append({"message_id": message_id, "role": "user", "text": text, "chain_id": chain_id,
                                 "refused": False, "created_at": "2026-12-06T00:00:00+00:00"})
        reply = ("Here is a picture coming, just for you." if chain_id
                 else "Log in and I will send you more pictures." if login_required
                 else f"Hello! I am {character['name']}, and you said: {text}")

        async def stream() -> AsyncIterator[bytes]:
            accepted = {"conversation_id": conversation, "message_id": str(uuid.uuid4())}
            yield f"event: accepted\ndata: {json.dumps(accepted)}\n\n".encode()
            if chain_id:
                yield f"event: image\ndata: {json.dumps({'chain_id': chain_id, 'job_id': chain_id})}\n\n".encode()
            words = reply.split(" ")
            for i, word in enumerate(words):
                await asyncio.sleep(state.tick_s / 2)
                delta = word if i == 0 else " " + word
                yield f"event: delta\ndata: {json.dumps({'delta': delta})}\n\n".encode()
            data = {"text": reply, "offline": True, "conversation_id": conversation, "login_required": login_required}
            kept["messages"].append({"message_id": str(uuid.uuid4()), "role": "character", "text": reply,
                                     "offline": True, "chain_id": chain_id, "in_reply_to": message_id,
                                     "created_at": "2026-12-06T00:00:00+00:00"})
            if chain_id:
                data["chain_id"] = chain_id
            yield f"event: reply\ndata: {json.dumps(data)}\n\n".encode()

        return StreamingResponse(stream(), media_type="text/event-stream")

    @app.get("/conversations")
    async def conversations(request: Request, character_id: str | None = None, limit: int = 50) -> Response:
        mine = [{"conversation_id": cid, "character_id": c["character_id"], "message_count": len(c["messages"])}
                for cid, c in reversed(state.conversations.items())
                if c["session"] == request.state.session and character_id in (None, c["character_id"])]
        return JSONResponse(mine[:limit])

    @app.get("/conversations/{conversation_id}/messages")
    async def conversation_messages(conversation_id: str, request: Request, limit: int = 30) -> Response:
        kept = state.conversations.get(conversation_id)
        if kept is None or kept["session"] != request.state.session:
            return error(404, "conversation_not_found", f"no conversation {conversation_id} of yours")
        return JSONResponse({"conversation_id": conversation_id, "messages": kept["messages"][-limit:],
                             "before": None, "next": None})

    @app.delete("/conversations/{conversation_id}", status_code=204)
    async def delete_conversation(conversation_id: str, request: Request) -> Response:
        kept = state.conversations.get(conversation_id)
        if kept is None or kept["session"] != request.state.session:
            return error(404, "conversation_not_found", f"no conversation {conversation_id} of yours")
        del state.conversations[conversation_id]
        return Response(status_code=204)

    @app.post("/chat/generate-image")
    async def generate(request: Request) -> Response:
        body = await request.json()
        if (refusal := needs_photo(body.get("character_id", "")) or allowed(request)) is not None:
            return refusal
        chain = state.start_chain(request.state.session, body["character_id"], body["request"])
        state.jobs[chain.id] = {"job_id": chain.id, "chain_id": chain.id, "status": "running"}
        return JSONResponse({"job_id": chain.id, "chain_id": chain.id, "status": "queued",
                             "status_url": f"/chat/job/{chain.id}", "events_url": f"/chains/{chain.id}/events"},
                            status_code=202)

    @app.get("/chat/job/{job_id}")
    async def job(job_id: str) -> Response:
        found = state.jobs.get(job_id)
        if found is None:
            return error(404, "not_found", "no such job")
        found["status"] = state.chains[found["chain_id"]].status
        return JSONResponse(found)

    @app.get("/chains/{chain_id}/events")
    async def events(chain_id: str, request: Request) -> Response:
        chain = state.chains.get(chain_id)
        if chain is None or chain.owner != request.state.session:
            return error(404, "not_found", "no such chain")
        last = request.headers.get("last-event-id")
        state.stream_opens.append((chain_id, last))
        after = int(last) if last and last.isdigit() else 0

        async def stream() -> AsyncIterator[bytes]:
            queue: asyncio.Queue = asyncio.Queue()
            chain.live.append(queue)
            try:
                yield b"retry: 500\n\n"
                sent = after
                for seq, type_, envelope in list(chain.events):
                    if seq > sent:
                        sent = seq
                        yield _sse(type_, envelope, seq)
                        if type_ in TERMINAL:
                            return
                while True:
                    try:
                        item = await asyncio.wait_for(queue.get(), timeout=10)
                    except TimeoutError:
                        yield b": keep-alive\n\n"
                        continue
                    if item[0] == "drop":
                        return
                    if item[0] == "persisted":
                        _, seq, type_, envelope = item
                        if seq <= sent:
                            continue
                        sent = seq
                        yield _sse(type_, envelope, seq)
                        if type_ in TERMINAL:
                            return
                    else:
                        yield _sse(item[0], item[1])
            finally:
                chain.live.remove(queue)

        return StreamingResponse(stream(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    @app.get("/images/{sha256}")
    async def image(sha256: str, thumb: int = 0) -> Response:
        data = state.images.get(sha256)
        if data is None:
            return error(404, "not_found", "no such image")
        if thumb:
            with Image.open(io.BytesIO(data)) as opened:
                opened.thumbnail((128, 128))
                out = io.BytesIO()
                opened.save(out, format="PNG")
                data = out.getvalue()
        return Response(data, media_type="image/png")

    @app.get("/me/images")
    async def my_images(request: Request) -> list[dict[str, Any]]:
        out = []
        for chain in state.chains.values():
            if chain.owner != request.state.session:
                continue
            for step, sha in sorted(chain.images.items()):
                out.append({"sha256": sha, "chain_id": chain.id, "step": step, "kind": chain.kinds[step],
                            "role": "step", "score": chain.scores[step],
                            "url": f"/images/{sha}", "thumb_url": f"/images/{sha}?thumb=1"})
            if chain.status == "completed":  # the finished picture is listed as step -1
                sha = chain.images[len(chain.kinds) - 1]
                out.append({"sha256": sha, "chain_id": chain.id, "step": -1, "kind": None, "role": "final",
                            "score": chain.scores[len(chain.kinds) - 1],
                            "url": f"/images/{sha}", "thumb_url": f"/images/{sha}?thumb=1"})
        return out

    @app.get("/me/pictures")
    async def my_pictures(request: Request, character_id: str | None = None) -> list[dict[str, Any]]:
        """One entry per finished picture, newest first, with its steps (as the gateway lists them)."""
        out = []
        for chain in reversed(list(state.chains.values())):
            if (chain.owner != request.state.session or chain.status != "completed" or chain.id in state.hidden_pictures
                    or (character_id and chain.character_id != character_id)):
                continue
            last = len(chain.kinds) - 1
            sha = chain.images[last]
            out.append({"chain_id": chain.id, "character_id": chain.character_id, "request_text": chain.request,
                        "created_at": datetime.now(UTC).isoformat(), "score": chain.scores[last],
                        "threshold": THRESHOLD, "sha256": sha, "url": f"/images/{sha}",
                        "thumb_url": f"/images/{sha}?thumb=1", "download_url": f"/images/{sha}?download=1",
                        "steps": [{"index": i, "kind": kind, "seed": 1000 + i, "score": chain.scores.get(i),
                                   "sha256": chain.images.get(i)} for i, kind in enumerate(chain.kinds)]})
        return out

    @app.delete("/me/pictures/{chain_id}")
    async def hide_picture(chain_id: str, request: Request) -> Response:
        chain = state.chains.get(chain_id)
        if chain is None or chain.owner != request.state.session:
            return error(404, "chain_not_found", "no such chain of yours")
        state.hidden_pictures.add(chain_id)
        return Response(status_code=204)

    @app.get("/me/tree")
    async def my_tree(request: Request) -> list[dict[str, Any]]:
        """Roots oldest first, each branch nested under the chain it was branched from."""
        nodes = {}
        for chain in state.chains.values():
            if chain.owner != request.state.session:
                continue
            nodes[chain.id] = {
                "chain_id": chain.id, "request_text": chain.request, "status": chain.status,
                "character_id": chain.character_id, "parent_chain_id": chain.parent_chain_id,
                "branch_from_step": chain.branch_from_step, "threshold": THRESHOLD,
                "steps": [{"index": i, "kind": kind, "score": chain.scores.get(i), "sha256": chain.images.get(i),
                           "state": "accepted" if i in chain.images else "waiting", "threshold": THRESHOLD}
                          for i, kind in enumerate(chain.kinds)],
                "branches": []}
        roots = []
        for node in nodes.values():
            parent = nodes.get(node["parent_chain_id"]) if node["parent_chain_id"] else None
            (parent["branches"] if parent else roots).append(node)
        return roots

    @app.post("/chains/{chain_id}/branch")
    async def branch(chain_id: str, request: Request) -> Response:
        parent = state.chains.get(chain_id)
        if parent is None or parent.owner != request.state.session:
            return error(404, "not_found", "no such chain")
        body = await request.json()
        step = body.get("from_step")
        if not isinstance(step, int) or not 0 <= step < len(parent.kinds):
            return error(422, "invalid_request", f"from_step must be 0..{len(parent.kinds) - 1}")
        if (refusal := allowed(request)) is not None:
            return refusal
        chain = state.start_chain(request.state.session, parent.character_id, body["request"], parent=parent,
                                  from_step=step)
        return JSONResponse({"chain_id": chain.id}, status_code=202)

    return app


def _sse(type_: str, data: dict[str, Any], seq: int | None = None) -> bytes:
    head = f"id: {seq}\n" if seq is not None else ""
    return f"{head}event: {type_}\ndata: {json.dumps(data)}\n\n".encode()


def _multipart(content_type: str, body: bytes) -> tuple[dict[str, str], bytes | None]:
    """The text fields and the `image` file of a multipart/form-data body (no python-multipart needed)."""
    message = BytesParser(policy=HTTP).parsebytes(f"Content-Type: {content_type}\r\n\r\n".encode() + body)
    fields: dict[str, str] = {}
    image = None
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True) or b""
        if name == "image":
            image = payload or None
        elif name:
            fields[name] = payload.decode()
    return fields, image


class MockGateway:
    """The mock served by uvicorn on a free port, in a thread of this process."""

    def __init__(self, **options: Any) -> None:
        self.app = create_app(**options)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_level="warning",
                                                    lifespan="off"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def state(self) -> State:
        return self.app.state.mock

    def drop_streams(self, chain_id: str) -> None:
        """End every open event stream of a chain, as a proxy or a network blip would."""
        state = self.state
        assert state.loop is not None
        state.loop.call_soon_threadsafe(state.broadcast, state.chains[chain_id], ("drop",))

    def __enter__(self) -> Self:
        self.thread.start()
        deadline = time.monotonic() + 15
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the mock gateway did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        with contextlib.suppress(Exception):
            self.server.force_exit = True
        self.thread.join(timeout=10)


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description="Serve the web page against the mock gateway.")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--tick", type=float, default=0.4, help="seconds between scripted chain events")
    args = parser.parse_args()
    uvicorn.run(create_app(tick_s=args.tick), host="127.0.0.1", port=args.port)
