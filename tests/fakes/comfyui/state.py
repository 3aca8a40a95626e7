"""The fake server's memory: files, queue, history, and the sockets by client id (with ComfyUI's quirks)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import struct
from dataclasses import dataclass, field
from typing import Any

from starlette.websockets import WebSocket

from tests.fakes.comfyui.scenario import Scenario

__all__ = ["Conn", "FakeState", "Item"]

_ANNOTATED = re.compile(r"^(.*) \[(input|output|temp)\]$")


@dataclass
class Conn:
    ws: WebSocket
    client_id: str
    feature_flags: bool = False


@dataclass
class Item:
    number: int
    prompt_id: str
    graph: dict[str, Any]
    extra_data: dict[str, Any]
    outputs: list[str]

    def entry(self) -> list[Any]:
        return [self.number, self.prompt_id, self.graph, self.extra_data, self.outputs]


@dataclass
class FakeState:
    scenario: Scenario
    sockets: dict[str, Conn] = field(default_factory=dict)
    files: dict[tuple[str, str, str], bytes] = field(default_factory=dict)
    history: dict[str, dict[str, Any]] = field(default_factory=dict)
    pending: list[Item] = field(default_factory=list)
    running: Item | None = None
    current_node: str | None = None
    number: int = 0
    interrupt_id: str | None = None
    # (graph key, outputs by node, the picture reaching each SaveImageWebsocket node): ComfyUI's node cache.
    cache: tuple[str, dict[str, Any], dict[str, bytes]] | None = None
    counters: dict[tuple[str, str], int] = field(default_factory=dict)
    held: set[str] = field(default_factory=set)
    wakeup: asyncio.Event = field(default_factory=asyncio.Event)
    # What tests look at.
    prompts: list[dict[str, Any]] = field(default_factory=list)
    uploads: list[dict[str, Any]] = field(default_factory=list)
    free_calls: list[dict[str, Any]] = field(default_factory=list)
    connects: list[str] = field(default_factory=list)
    drops: list[str] = field(default_factory=list)

    @property
    def queue_remaining(self) -> int:
        return len(self.pending) + (1 if self.running else 0)

    def status(self, sid: str | None = None) -> dict[str, Any]:
        data: dict[str, Any] = {"status": {"exec_info": {"queue_remaining": self.queue_remaining}}}
        if sid is not None:
            data["sid"] = sid
        return {"type": "status", "data": data}

    async def broadcast(self, frame: dict[str, Any]) -> None:
        for conn in list(self.sockets.values()):
            await _send(conn, json.dumps(frame))

    async def to_client(self, client_id: str, frame: dict[str, Any]) -> None:
        conn = self.sockets.get(client_id)
        if conn is not None:
            await _send(conn, json.dumps(frame))

    async def preview(self, client_id: str | None, image: bytes, meta: dict[str, Any]) -> None:
        """Type 4 to sockets that negotiated feature flags, type 1 to the others (§3.2): format word 1 for
        JPEG (latent previews), 2 for PNG (SaveImageWebsocket)."""
        conns = [self.sockets[client_id]] if client_id in self.sockets else []
        if client_id is None:
            conns = list(self.sockets.values())
        for conn in conns:
            if conn.feature_flags:
                blob = json.dumps(meta).encode()
                await _send(conn, struct.pack(">II", 4, len(blob)) + blob + image)
            else:
                fmt = 2 if meta.get("image_type") == "image/png" else 1
                await _send(conn, struct.pack(">II", 1, fmt) + image)

    async def drop(self, client_id: str) -> None:
        """Close a client's socket from the server side, as a network drop would."""
        conn = self.sockets.pop(client_id, None)
        if conn is not None:
            self.drops.append(client_id)
            with contextlib.suppress(Exception):
                await conn.ws.close(code=1011)

    def input_key(self, ref: str) -> tuple[str, str, str]:
        kind = "input"
        match = _ANNOTATED.match(ref)
        if match:
            ref, kind = match.group(1), match.group(2)
        folder, _, name = ref.rpartition("/")
        return kind, folder, name

    def file_exists(self, ref: str) -> bool:
        return self.input_key(ref) in self.files

    def input_bytes(self, graph: dict[str, Any]) -> bytes | None:
        for node in graph.values():
            if node.get("class_type") == "LoadImage" and isinstance(node["inputs"].get("image"), str):
                return self.files.get(self.input_key(node["inputs"]["image"]))
        return None

    def upload(self, data: bytes, filename: str, subfolder: str, kind: str, overwrite: bool) -> str:
        """Store an upload as ComfyUI does (§2.1): same bytes keep the name, others are renamed unless overwrite."""
        name = filename
        stem, dot, ext = filename.rpartition(".")
        stem, ext = (stem, f".{ext}") if dot else (filename, "")
        counter = 1
        while not overwrite and self.files.get((kind, subfolder, name), data) != data:
            name = f"{stem} ({counter}){ext}"
            counter += 1
        self.files[(kind, subfolder, name)] = data
        return name

    def save_output(self, node: dict[str, Any], data: bytes) -> dict[str, str]:
        """Write an output file the way SaveImage / PreviewImage name them."""
        if node["class_type"] == "PreviewImage":
            kind, folder, base = "temp", "", "ComfyUI_temp_fake"
        else:
            kind = "output"
            folder, _, base = str(node["inputs"].get("filename_prefix", "ComfyUI")).rpartition("/")
        count = self.counters.get((folder, base), 0) + 1
        self.counters[(folder, base)] = count
        filename = f"{base}_{count:05d}_.png"
        self.files[(kind, folder, filename)] = data
        return {"filename": filename, "subfolder": folder, "type": kind}


async def _send(conn: Conn, payload: str | bytes) -> None:
    # A socket that went away loses the frame, as on the real server (no replay).
    with contextlib.suppress(Exception):
        if isinstance(payload, bytes):
            await conn.ws.send_bytes(payload)
        else:
            await conn.ws.send_text(payload)
