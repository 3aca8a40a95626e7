"""Frame parsing: binary previews built byte for byte as PROTOCOL.md §3.2 shows, and real captured frames."""

from __future__ import annotations

import json
import struct

from services.renderer.comfyui.protocol import FEATURE_FLAGS, BinaryPreview, BinaryText, parse_binary, parse_text
from tests.unit.renderer.transcripts import REFERENCE, frames, image_bytes

JPEG_HEAD = bytes.fromhex("ffd8ffe000104a464946")
PNG_HEAD = bytes.fromhex("89504e470d0a1a0a")


def test_type_1_legacy_jpeg_preview() -> None:
    raw = bytes.fromhex("00000001" "00000001") + JPEG_HEAD + b"rest"
    frame = parse_binary(raw)
    assert frame == BinaryPreview(1, "image/jpeg", JPEG_HEAD + b"rest")
    assert frame.prompt_id is None and frame.node_id is None


def test_type_1_legacy_png_preview() -> None:
    raw = bytes.fromhex("00000001" "00000002") + PNG_HEAD
    assert parse_binary(raw) == BinaryPreview(1, "image/png", PNG_HEAD)


def test_type_4_preview_with_metadata_has_no_format_word() -> None:
    meta = {"node_id": "4", "prompt_id": "763bcf76-6309-49c2-8555-58f4f7305344", "display_node_id": "4",
            "parent_node_id": None, "real_node_id": "4", "image_type": "image/jpeg"}
    blob = json.dumps(meta).encode()
    raw = b"\x00\x00\x00\x04" + struct.pack(">I", len(blob)) + blob + JPEG_HEAD
    assert raw[:12] == bytes.fromhex("00000004" f"{len(blob):08x}" "7b226e6f")
    frame = parse_binary(raw)
    assert frame == BinaryPreview(4, "image/jpeg", JPEG_HEAD, prompt_id=meta["prompt_id"], node_id="4")


def test_type_3_text_is_node_id_then_text() -> None:
    raw = bytes.fromhex("00000003 00000001 33".replace(" ", "")) + b"width: 96, height: 64\n batch size: 3"
    assert parse_binary(raw) == BinaryText("3", "width: 96, height: 64\n batch size: 3")


def test_malformed_binary_frames_are_dropped_not_raised() -> None:
    meta = b'{"image_type": "image/png"}'
    cases = [
        b"",
        b"\x00\x00\x00\x01",  # shorter than two words
        bytes.fromhex("00000002 00000001".replace(" ", "")) + PNG_HEAD,  # type 2 is internal only
        bytes.fromhex("00000001 00000009".replace(" ", "")) + PNG_HEAD,  # unknown legacy format
        bytes.fromhex("00000001 00000002".replace(" ", "")),  # no image bytes
        struct.pack(">II", 4, 500) + meta + PNG_HEAD,  # metadata length past the end
        struct.pack(">II", 4, 5) + b"{nope" + PNG_HEAD,  # metadata not JSON
        struct.pack(">II", 4, len(meta)) + meta,  # no image after the metadata
        struct.pack(">II", 3, 9) + b"3",  # node id length past the end
    ]
    assert [parse_binary(raw) for raw in cases] == [None] * len(cases)


def test_text_frames_need_a_type() -> None:
    assert parse_text('{"type": "status", "data": {"sid": "x"}}').data == {"sid": "x"}
    assert parse_text('{"type": "executing"}').data == {}
    for bad in ("not json", "[1, 2]", '{"data": {}}', '{"type": 7}'):
        assert parse_text(bad) is None


def test_feature_flags_message_is_the_documented_one() -> None:
    assert json.loads(FEATURE_FLAGS) == {"type": "feature_flags", "data": {"supports_preview_metadata": True}}


def test_every_captured_frame_parses_or_is_dropped_without_error() -> None:
    names = sorted(p.name for p in (REFERENCE / "transcripts").glob("*.jsonl"))
    seen: dict[str, int] = {}
    for name in names:
        for raw in frames(name):
            frame = parse_binary(raw) if isinstance(raw, bytes) else parse_text(raw)
            kind = type(frame).__name__ if not hasattr(frame, "type") else frame.type
            seen[kind] = seen.get(kind, 0) + 1
    assert {"status", "executing", "progress", "progress_state", "executed", "execution_success",
            "execution_interrupted", "feature_flags", "BinaryPreview", "BinaryText"} <= set(seen)


def test_captured_type_4_frame_carries_its_prompt_and_node() -> None:
    raw = next(f for f in frames("06_progress_SaveImageWebsocket_feature_flags_type4.jsonl") if isinstance(f, bytes))
    frame = parse_binary(raw)
    assert isinstance(frame, BinaryPreview) and frame.event == 4
    assert (frame.prompt_id, frame.node_id, frame.media_type) == ("5e048c87-8d7d-41d9-b02e-679540744391", "5",
                                                                 "image/png")
    assert frame.image == image_bytes("PNG")
