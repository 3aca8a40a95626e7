"""What `likeness edit` shows while a chain runs: plain lines off a terminal, a rich progress bar on one."""

from __future__ import annotations

import io
import re
import uuid

import pytest
from rich.console import Console

from contracts import (
    ChainCompleted,
    ChainFailed,
    ChainPlanned,
    ImageRef,
    Message,
    PlannedStep,
    RenderProgress,
    RenderWaiting,
    StepAccepted,
    StepFailed,
    StepRendered,
    StepRequested,
    StepRetried,
    StepScored,
)
from services.launcher.progress import PlainProgress, RichProgress, progress_for

CHAIN = uuid.UUID(int=7)
IMAGE = ImageRef(sha256="a" * 64, media_type="image/png", width=8, height=8, bytes=10)
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def planned(*kinds: str) -> ChainPlanned:
    steps = tuple(PlannedStep(index=i, kind=kind, prompt=f"step {i}", width=512, height=512, seed=100 + i,
                              model="qwen", template="qwen_edit", steps=8, cfg=1.0) for i, kind in enumerate(kinds))
    return ChainPlanned(chain_id=CHAIN, steps=steps, planner="rules", threshold=40.0)


def ticks(step: int, attempt: int, count: int = 20) -> list[RenderProgress]:
    return [RenderProgress(chain_id=CHAIN, step=step, attempt=attempt, value=v, max=count) for v in range(1, count + 1)]


def attempt(step: int, number: int, seed: int, score: float) -> list[Message]:
    return [StepRequested(chain_id=CHAIN, step=step, attempt=number, seed=seed, input_image=IMAGE),
            *ticks(step, number),
            StepRendered(chain_id=CHAIN, step=step, attempt=number, image=IMAGE, workflow_hash="f" * 16,
                         backend="comfy-1", engine="comfyui"),
            StepScored(chain_id=CHAIN, step=step, attempt=number, score=score, faces_found=1, threshold=40.0)]


# A two-step chain: the first step's first attempt drifts (31.0) and is retried; then both pass.
CHAIN_RUN: list[Message] = [
    planned("background", "outfit"),
    *attempt(0, 1, 100, 31.0),
    StepRetried(chain_id=CHAIN, step=0, next_attempt=2, new_seed=555, previous_score=31.0,
                reason="face score 31.0 below threshold 40"),
    *attempt(0, 2, 555, 72.3),
    StepAccepted(chain_id=CHAIN, step=0, attempt=2, image=IMAGE, score=72.3),
    *attempt(1, 1, 101, 64.0),
    StepAccepted(chain_id=CHAIN, step=1, attempt=1, image=IMAGE, score=64.0),
    ChainCompleted(chain_id=CHAIN, final_image=IMAGE, step_images=(IMAGE, IMAGE)),
]


def feed(progress: PlainProgress | RichProgress, messages: list[Message]) -> None:
    for message in messages:
        (progress.live if message.kind == "ephemeral" else progress.event)(message)


def test_plain_lines_are_one_per_chain_event_and_none_per_progress_tick() -> None:
    out = io.StringIO()
    feed(PlainProgress(out), CHAIN_RUN)
    lines = out.getvalue().splitlines()
    events = [m for m in CHAIN_RUN if m.kind != "ephemeral"]
    assert len(lines) == len(events)
    assert lines == [
        "planned by rules: background -> outfit; threshold 40",
        "step 1/2 background attempt 1: rendering (seed 100)",
        "step 1/2 background attempt 1: rendered by comfyui on comfy-1",
        "step 1/2 background attempt 1: face score 31.0 (threshold 40)",
        "step 1/2 background: retry as attempt 2 with seed 555: face score 31.0 below threshold 40",
        "step 1/2 background attempt 2: rendering (seed 555)",
        "step 1/2 background attempt 2: rendered by comfyui on comfy-1",
        "step 1/2 background attempt 2: face score 72.3 (threshold 40)",
        "step 1/2 background: accepted attempt 2 (score 72.3)",
        "step 2/2 outfit attempt 1: rendering (seed 101)",
        "step 2/2 outfit attempt 1: rendered by comfyui on comfy-1",
        "step 2/2 outfit attempt 1: face score 64.0 (threshold 40)",
        "step 2/2 outfit: accepted attempt 1 (score 64.0)",
        "completed: 2 steps",
    ]


def test_plain_lines_say_once_per_attempt_that_it_waits_or_queues() -> None:
    out = io.StringIO()
    waits = [RenderWaiting(chain_id=CHAIN, step=0, attempt=1, waited_s=w, limit_s=30) for w in (0.0, 5.0, 10.0)]
    queued = [RenderProgress(chain_id=CHAIN, step=0, attempt=1, value=0, max=1, queue_position=p) for p in (3, 2, 1)]
    feed(PlainProgress(out), [planned("pose"), *waits, *queued, *ticks(0, 1)])
    assert out.getvalue().splitlines()[1:] == [
        "  step 1 attempt 1: waiting for a render backend to come back (0 s of at most 30 s)",
        "  step 1 attempt 1: in the backend's queue, 3 prompts ahead",
    ]


def test_before_the_plan_steps_are_numbered_without_a_total() -> None:
    out = io.StringIO()
    feed(PlainProgress(out), [StepFailed(chain_id=CHAIN, step=0, attempt=1, reason="render timeout", stage="render"),
                              ChainFailed(chain_id=CHAIN, step=0, reason="render timeout")])
    assert out.getvalue().splitlines() == ["step 1 attempt 1: render failed: render timeout",
                                           "FAILED at step 1: render timeout"]


def terminal() -> tuple[Console, io.StringIO]:
    out = io.StringIO()
    return Console(file=out, force_terminal=True, color_system=None, width=120), out


def screen(out: io.StringIO) -> str:
    return ANSI.sub("", out.getvalue())


def test_the_bar_shows_step_of_total_kind_attempt_score_and_render_progress() -> None:
    console, out = terminal()
    progress = RichProgress(console, auto_refresh=False)
    feed(progress, [planned("background", "outfit", "pose"), *attempt(0, 1, 100, 72.3)[:1]])
    feed(progress, [StepAccepted(chain_id=CHAIN, step=0, attempt=1, image=IMAGE, score=72.3),
                    *attempt(1, 2, 7, 38.1)[:1], *ticks(1, 2, count=4)[:2]])
    progress.progress.refresh()
    bar = screen(out).split("\r")[-1]
    assert bar.startswith("step 2/3 outfit ")
    assert "50%" in bar and "attempt 2: rendering" in bar

    progress.event(StepScored(chain_id=CHAIN, step=1, attempt=2, score=38.1, faces_found=1, threshold=40.0))
    progress.progress.refresh()
    assert screen(out).split("\r")[-1].rstrip().endswith("attempt 2: face checked · score 38.1 < 40")

    # The retry's bar starts empty, and still shows what the step scored last.
    feed(progress, [StepRetried(chain_id=CHAIN, step=1, next_attempt=3, new_seed=8, previous_score=38.1,
                                reason="face score 38.1 below threshold 40"), *attempt(1, 3, 8, 0.0)[:1]])
    progress.progress.refresh()
    bar = screen(out).split("\r")[-1]
    assert bar.startswith("step 2/3 outfit ") and "%" not in bar
    assert bar.rstrip().endswith("attempt 3: rendering (seed 8) · score 38.1 < 40")
    progress.close()


def test_each_step_ends_in_one_summary_line() -> None:
    console, out = terminal()
    progress = RichProgress(console, auto_refresh=False)
    feed(progress, CHAIN_RUN)
    progress.close()
    # What stays on the screen once the bar is gone: the plan, one line per step outcome, the chain's end.
    lines = [line.strip() for line in screen(out).replace("\r", "\n").splitlines()]
    summaries = [line for line in lines if line.startswith(("✓", "↻", "✗", "planned", "completed"))]
    assert summaries == [
        "planned by rules: background -> outfit; threshold 40",
        "↻ step 1/2 background: retried: face score 31.0 below threshold 40; attempt 2 with seed 555",
        "✓ step 1/2 background: accepted, score 72.3 ≥ 40 (attempt 2)",
        "✓ step 2/2 outfit: accepted, score 64.0 ≥ 40 (attempt 1)",
        "completed: 2 steps",
    ]


def test_a_failed_step_and_chain_say_so() -> None:
    console, out = terminal()
    progress = RichProgress(console, auto_refresh=False)
    feed(progress, [planned("pose"), *attempt(0, 1, 100, 0.0)[:1],
                    StepFailed(chain_id=CHAIN, step=0, attempt=1, reason="render unreachable: no backend",
                               stage="render"),
                    ChainFailed(chain_id=CHAIN, step=0, reason="render unreachable: no backend")])
    progress.close()
    text = screen(out)
    assert "✗ step 1/1 pose attempt 1: render failed: render unreachable: no backend" in text
    assert "FAILED at step 1: render unreachable: no backend" in text


def test_markup_in_a_reason_is_printed_as_written() -> None:
    console, out = terminal()
    progress = RichProgress(console, auto_refresh=False)
    progress.event(ChainFailed(chain_id=CHAIN, step=0, reason="[bold]node 12[/bold] failed"))
    progress.close()
    assert "FAILED at step 1: [bold]node 12[/bold] failed" in screen(out)


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize(("stream", "env", "rich"), [
    (io.StringIO(), {}, False),                       # a pipe or a file
    (io.StringIO(), {"FORCE_COLOR": "1"}, False),     # colour forced in CI is still not a screen
    (Tty(), {"TERM": "xterm-256color"}, True),
    (Tty(), {"TERM": "dumb"}, False),
    (Tty(), {"TERM": "xterm", "TTY_INTERACTIVE": "0"}, False),
])
def test_a_bar_only_on_an_interactive_terminal(stream: io.StringIO, env: dict[str, str], rich: bool,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("FORCE_COLOR", "TTY_INTERACTIVE", "TTY_COMPATIBLE", "TERM"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    chosen = progress_for(stream)
    try:
        assert isinstance(chosen, RichProgress) is rich
        assert isinstance(chosen, PlainProgress) is not rich
    finally:
        chosen.close()
