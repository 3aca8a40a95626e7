"""What `likeness edit` prints while a render waits, and where it saves the picture."""

from __future__ import annotations

import uuid
from pathlib import Path

from contracts import RenderProgress, RenderWaiting
from services.launcher.chain_commands import output_path
from services.launcher.console import describe_live

CHAIN = uuid.UUID(int=7)


def test_out_names_a_file_by_its_extension_or_a_folder() -> None:
    assert output_path(Path("main.png"), CHAIN, "image/png") == Path("main.png")
    assert output_path(Path("shots/main.JPG"), CHAIN, "image/jpeg") == Path("shots/main.JPG")
    assert output_path(Path("likeness-out"), CHAIN, "image/png") == Path(f"likeness-out/{CHAIN}.png")
    assert output_path(Path("out.d"), CHAIN, "image/jpeg") == Path(f"out.d/{CHAIN}.jpg")


def test_waiting_and_queueing_are_printed() -> None:
    waiting = RenderWaiting(chain_id=CHAIN, step=0, attempt=1, waited_s=12.5, limit_s=30)
    assert describe_live(waiting) == ("  step 1 attempt 1: waiting for a render backend to come back "
                                      "(12 s of at most 30 s)")
    queued = RenderProgress(chain_id=CHAIN, step=1, attempt=2, value=0, max=1, queue_position=2)
    assert describe_live(queued) == "  step 2 attempt 2: in the backend's queue, 2 prompts ahead"
    ticking = RenderProgress(chain_id=CHAIN, step=1, attempt=2, value=250, max=1000)
    assert describe_live(ticking) == "  step 2 attempt 2: 25%"


def test_steps_are_counted_from_one_as_on_the_page() -> None:
    from contracts import ChainFailed
    from services.launcher.console import describe

    assert describe(ChainFailed(chain_id=CHAIN, step=0, reason="render unreachable")).startswith("FAILED at step 1: ")
