"""Following one prompt through real captured frame sequences."""

from __future__ import annotations

import json

from services.renderer.comfyui.protocol import parse_binary, parse_text
from services.renderer.comfyui.tracker import PROGRESS_MAX, PromptTracker
from services.renderer.engine import Preview, Tick
from tests.unit.renderer.transcripts import frames


def replay(name: str, prompt_id: str, **kw) -> tuple[PromptTracker, list]:
    tracker, updates = PromptTracker(prompt_id, **kw), []
    for raw in frames(name):
        updates += tracker.feed(parse_binary(raw) if isinstance(raw, bytes) else parse_text(raw))
    return tracker, updates


def test_first_run_ends_on_executing_null_with_both_outputs() -> None:
    tracker, updates = replay("01_success_first_run.jsonl", "42fa6a9f-9e98-4b8e-9474-8ece5271079a")
    assert tracker.done and tracker.succeeded and tracker.failure is None
    assert tracker.outputs["5"] == {"images": [{"filename": "renderer_smoke_00001_.png", "subfolder": "",
                                                "type": "output"}]}
    assert set(tracker.outputs) == {"5", "7"} and [u for u in updates if not isinstance(u, Tick)] == []


def test_a_graph_without_a_sampler_still_moves_and_ends_at_its_max() -> None:
    # Only progress_state 0 -> 1 per node here (no ProgressBar node), §3.1.
    _, updates = replay("01_success_first_run.jsonl", "42fa6a9f-9e98-4b8e-9474-8ece5271079a",
                        nodes=[str(n) for n in range(1, 8)])
    values = [u.value for u in updates if isinstance(u, Tick)]
    assert len(values) >= 5 and values == sorted(set(values)) and values[-1] == PROGRESS_MAX


def test_cached_rerun_replays_outputs_without_executing_nodes() -> None:
    tracker, _ = replay("02_identical_rerun_all_cached.jsonl", "bf37c3c7-e9f4-4552-8ca6-d023a62fbd3d")
    assert tracker.done and tracker.outputs["5"]["images"][0]["filename"] == "renderer_smoke_00001_.png"


def test_save_image_websocket_frames_are_the_output_and_progress_reaches_its_max() -> None:
    tracker, updates = replay("06_progress_SaveImageWebsocket_feature_flags_type4.jsonl",
                              "5e048c87-8d7d-41d9-b02e-679540744391", websocket_output="5", nodes="12345")
    assert tracker.done
    # Counted 0..2 of 3 by the node itself: the bar still ends full, not at 2/3.
    ticks = [u for u in updates if isinstance(u, Tick)]
    assert ticks[-1] == Tick(PROGRESS_MAX, PROGRESS_MAX, "5") and [t.value for t in ticks] == sorted({t.value
                                                                                                  for t in ticks})
    assert [u for u in updates if isinstance(u, Preview)] == []
    assert len(tracker.images) == 3 and {media for media, _ in tracker.images} == {"image/png"}


def test_without_a_websocket_output_those_frames_are_previews() -> None:
    _, updates = replay("06_progress_SaveImageWebsocket_feature_flags_type4.jsonl",
                        "5e048c87-8d7d-41d9-b02e-679540744391")
    previews = [u for u in updates if isinstance(u, Preview)]
    assert len(previews) == 3 and {(p.media_type, p.node) for p in previews} == {("image/png", "5")}


def test_type_1_previews_follow_our_progress_frames() -> None:
    tracker, updates = replay("09_ksampler_tiny_unet_legacy_jpeg_previews.jsonl",
                              "f4907948-99e6-41e5-9c01-69db5c0b8973", nodes="12345")
    assert tracker.done and tracker.succeeded
    values = [u.value for u in updates if isinstance(u, Tick)]
    assert len(values) >= 6 and values == sorted(set(values)) and values[-1] == PROGRESS_MAX
    assert [u.media_type for u in updates if isinstance(u, Preview)] == ["image/jpeg"] * 6


def test_broadcast_progress_of_someone_elses_prompt_is_not_ours() -> None:
    # The watcher socket sees another (client_id-less) prompt's progress and legacy preview (§6.6).
    tracker, updates = replay("12_prompt_without_client_id_seen_by_other_socket.jsonl", "my-own-prompt")
    assert updates == [] and not tracker.done


def test_interrupt_is_a_failure_then_done() -> None:
    tracker, _ = replay("10_ksampler_feature_flags_and_interrupt.jsonl", "8f5924fc-541a-4cf5-bc30-897c38eca1a1")
    assert tracker.done and tracker.failure is not None
    failure = tracker.failure
    assert (failure.kind, failure.node_id, failure.node_type) == ("interrupted", "4", "KSampler")


def test_reconnected_socket_gets_executing_without_prompt_id_then_the_rest() -> None:
    tracker = PromptTracker("0edf2d5b-288a-42d9-bd43-6fca02c761ef", nodes="12345")
    tracker.started = True  # it was seen starting on the first socket
    updates = []
    for raw in frames("14_reconnect_second_socket_same_clientId.jsonl"):
        updates += tracker.feed(parse_binary(raw) if isinstance(raw, bytes) else parse_text(raw))
    assert tracker.done and tracker.succeeded
    values = [u.value for u in updates if isinstance(u, Tick)]
    assert len(values) >= 3 and values == sorted(set(values)) and values[-1] == PROGRESS_MAX


def test_execution_error_names_node_type_and_message() -> None:
    # §6.3: the frame of 07_... as documented (the capture's traceback text was damaged by redaction).
    tracker = PromptTracker("d3d7fbf3")
    for frame in [
        {"type": "execution_start", "data": {"prompt_id": "d3d7fbf3", "timestamp": 1}},
        {"type": "executing", "data": {"node": "1", "display_node": "1", "prompt_id": "d3d7fbf3"}},
        {"type": "execution_error", "data": {
            "prompt_id": "d3d7fbf3", "node_id": "1", "node_type": "LoadImage", "executed": [],
            "exception_message": "cannot identify image file '<comfyui>/input/corrupt.png'\n",
            "exception_type": "PIL.UnidentifiedImageError", "traceback": [],
            "current_inputs": {"image": ["corrupt.png"]},
            "current_outputs": ["5"], "timestamp": 2}},
        {"type": "status", "data": {"status": {"exec_info": {"queue_remaining": 0}}}},
        {"type": "executing", "data": {"node": None, "prompt_id": "d3d7fbf3"}},
    ]:
        tracker.feed(parse_text(json.dumps(frame)))
    assert tracker.done and not tracker.succeeded
    failure = tracker.failure
    assert (failure.kind, failure.node_id, failure.node_type) == ("execution", "1", "LoadImage")
    assert "cannot identify image file" in failure.reason and "PIL.UnidentifiedImageError" in failure.reason


def test_frames_after_done_change_nothing() -> None:
    tracker = PromptTracker("p")
    tracker.feed(parse_text('{"type": "executing", "data": {"node": null, "prompt_id": "p"}}'))
    assert tracker.feed(parse_text('{"type": "progress", "data": {"value": 1, "max": 2, "prompt_id": "p"}}')) == []
