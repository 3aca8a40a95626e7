"""Real ComfyUI websocket captures (shared/reference/comfyui/transcripts), turned back into wire frames."""

from __future__ import annotations

import io
import json
import struct
from pathlib import Path

import pytest
from PIL import Image

REFERENCE = Path(__file__).resolve().parents[3].parent / "shared" / "reference" / "comfyui"


def image_bytes(fmt: str = "PNG", size: tuple[int, int] = (96, 32)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, (40, 80, 120)).save(out, format=fmt)
    return out.getvalue()


def frames(name: str) -> list[str | bytes]:
    """The server->client frames of one transcript; binary ones rebuilt from their recorded header fields."""
    path = REFERENCE / "transcripts" / name
    if not path.exists():
        pytest.skip(f"reference transcripts not found at {path.parent}")
    out: list[str | bytes] = []
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            # A few captures were damaged by path redaction; keep the frame as the broken text it now is.
            out.append(line.split('"text": "', 1)[-1].removesuffix('"}'))
            continue
        if record.get("dir") == "client->server":
            continue
        if "text" in record:
            out.append(record["text"])
        else:
            out.append(rebuild(record["binary"]))
    return out


def rebuild(binary: dict) -> bytes:
    """The frame's bytes: its recorded header (checked against head_hex) plus a stand-in image."""
    event = binary["event_type_u32be"]
    if event == 1:
        fmt = "JPEG" if binary["image_type_u32be"] == 1 else "PNG"
        raw = struct.pack(">II", 1, binary["image_type_u32be"]) + image_bytes(fmt)
    elif event == 4:
        meta = json.dumps(binary["metadata"]).encode()
        fmt = "JPEG" if binary["metadata"]["image_type"] == "image/jpeg" else "PNG"
        raw = struct.pack(">II", 4, len(meta)) + meta + image_bytes(fmt)
    else:
        node = binary["node_id"].encode()
        raw = struct.pack(">II", 3, len(node)) + node + binary["text"].encode()
    head = bytes.fromhex(binary["head_hex"].replace(" ", ""))
    if event != 1 or binary.get("image_magic", "").startswith("89 50"):
        assert raw[: len(head)] == head, "rebuilt frame differs from the captured header"
    return raw
