"""How `likeness edit` shows a chain as it runs: a rich progress bar in a terminal, plain lines elsewhere.

In a terminal: a bar for the step being rendered (step i of N, its kind, the attempt, the latest face
score against the threshold, the renderer's progress within the attempt) and one summary line per step
outcome (accepted with its score, retried, failed). Anywhere else (a pipe, CI, a test): one plain line per
chain event and never one per progress tick, so logs stay short and greppable.

Both take the same calls: `event` for each chain event, `live` for each render tick or wait, `note` for
anything else worth a line, `close` at the end. Steps are counted from 1, as the page counts them.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Protocol, TextIO

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TaskProgressColumn, TextColumn
from rich.text import Text

from contracts import (
    ChainCancelled,
    ChainCompleted,
    ChainFailed,
    ChainPlanned,
    ChainRefused,
    Message,
    RenderProgress,
    RenderWaiting,
    StepAccepted,
    StepFailed,
    StepRendered,
    StepRequested,
    StepRetried,
    StepScored,
)
from services.launcher.console import describe, describe_live, step_label

__all__ = ["ChainProgress", "ChainView", "PlainProgress", "RichProgress", "progress_for"]


class ChainProgress(Protocol):
    """What follows a chain on the user's screen."""

    def note(self, text: str) -> None: ...

    def event(self, message: Message) -> None: ...

    def live(self, message: Message) -> None: ...

    def close(self) -> None: ...


@dataclass
class ChainView:
    """What the displays need to know of the chain so far: the plan's kinds and the threshold."""

    plan: tuple[str, ...] = ()
    threshold: float | None = None

    def apply(self, message: Message) -> None:
        match message:
            case ChainPlanned():
                self.plan = tuple(s.kind for s in message.steps)
                self.threshold = message.threshold
            case StepScored():
                self.threshold = message.threshold

    def label(self, step: int) -> str:
        return step_label(step, self.plan)

    def against_threshold(self, score: float) -> str:
        """`score 38.1 < 40`: the score and which side of the threshold it fell."""
        if self.threshold is None:
            return f"score {score:.1f}"
        return f"score {score:.1f} {'≥' if score >= self.threshold else '<'} {self.threshold:g}"


class PlainProgress:
    """One line per chain event; of the live traffic only the first wait and queue place of each attempt."""

    def __init__(self, file: TextIO | None = None) -> None:
        self._file = file
        self.view = ChainView()
        self._told: set[tuple[str, int, int]] = set()

    def _print(self, line: str) -> None:
        print(line, file=self._file or sys.stdout, flush=True)

    def note(self, text: str) -> None:
        self._print(text)

    def event(self, message: Message) -> None:
        self.view.apply(message)
        self._print(describe(message, self.view.plan))

    def live(self, message: Message) -> None:
        # A wait or a queue place is worth one line per attempt; ticks are worth none (they come many a second).
        match message:
            case RenderWaiting() | RenderProgress(queue_position=int()):
                key = (message.type, message.step, message.attempt)
                if key not in self._told:
                    self._told.add(key)
                    self._print(describe_live(message) or message.type)

    def close(self) -> None:
        return None


class RichProgress:
    """A live progress bar for the attempt in flight, with a summary line printed above it as each step ends."""

    def __init__(self, console: Console, *, auto_refresh: bool = True) -> None:
        self.console = console
        self.view = ChainView()
        self.progress = Progress(TextColumn("{task.description}", markup=False), BarColumn(), TaskProgressColumn(),
                                 TextColumn("{task.fields[detail]}", markup=False),
                                 TextColumn("{task.fields[score]}", markup=False), console=console,
                                 auto_refresh=auto_refresh, transient=True)
        self._task: TaskID | None = None
        self._attempt: tuple[int, int] | None = None
        # Each step's latest face score: a retry's bar still shows what the last attempt scored.
        self._scores: dict[int, float] = {}
        self.progress.start()

    def note(self, text: str) -> None:
        self.console.print(text, markup=False, highlight=False)

    def event(self, message: Message) -> None:
        view = self.view
        view.apply(message)
        match message:
            case StepRequested(step=step, attempt=attempt):
                self._start(step, attempt, f"attempt {attempt}: rendering (seed {message.seed})")
            case StepRendered(step=step, attempt=attempt):
                self._detail(step, attempt, f"attempt {attempt}: checking the face")
            case StepScored(step=step, attempt=attempt):
                self._scores[step] = message.score
                self._detail(step, attempt, f"attempt {attempt}: face checked")
            case StepAccepted(step=step, attempt=attempt):
                best = ", the best of its attempts" if message.decision == "best_attempt" else ""
                scored = "not face-checked" if message.score is None else view.against_threshold(message.score)
                self._finish()
                self._summary("✓ ", "green", f"{view.label(step)}: accepted, {scored} (attempt {attempt}{best})")
            case StepRetried(step=step):
                # The reason already says why (the score against the threshold, or the render's failure).
                self._summary("↻ ", "yellow", f"{view.label(step)}: retried: {message.reason}; "
                                              f"attempt {message.next_attempt} with seed {message.new_seed}")
            case StepFailed(step=step, attempt=attempt):
                self._summary("✗ ", "red", f"{view.label(step)} attempt {attempt}: {message.stage} failed: "
                                           f"{message.reason}")
            case ChainCompleted():
                self._finish()
                self._summary("", "bold green", describe(message))
            case ChainFailed() | ChainRefused() | ChainCancelled():
                self._finish()
                self._summary("", "bold red", describe(message))
            case _:
                self.console.print(Text(describe(message, view.plan), style="dim"))

    def live(self, message: Message) -> None:
        match message:
            case RenderWaiting(step=step, attempt=attempt):
                self._detail(step, attempt, f"attempt {attempt}: waiting for a render backend "
                                            f"({message.waited_s:.0f} s of at most {message.limit_s:.0f} s)")
            case RenderProgress(step=step, attempt=attempt, queue_position=int(ahead)):
                self._detail(step, attempt, f"attempt {attempt}: in the backend's queue, {ahead} ahead")
            case RenderProgress(step=step, attempt=attempt) if self._task is not None:
                if self._attempt == (step, attempt):
                    self.progress.update(self._task, total=message.max, completed=message.value,
                                         detail=f"attempt {attempt}: rendering")

    def close(self) -> None:
        self._finish()
        self.progress.stop()

    def _start(self, step: int, attempt: int, detail: str) -> None:
        """A fresh bar for a new attempt: its length is unknown until the renderer's first tick."""
        self._finish()
        self._attempt = (step, attempt)
        self._task = self.progress.add_task(self.view.label(step), total=None, detail=detail,
                                            score=self._score_text(step))

    def _detail(self, step: int, attempt: int, detail: str) -> None:
        # A late message of an attempt that has ended changes nothing.
        if self._task is not None and self._attempt == (step, attempt):
            self.progress.update(self._task, detail=detail, score=self._score_text(step))

    def _score_text(self, step: int) -> str:
        score = self._scores.get(step)
        return "" if score is None else f"· {self.view.against_threshold(score)}"

    def _finish(self) -> None:
        if self._task is not None:
            self.progress.remove_task(self._task)
            # Now, not at the next tick: a line printed meanwhile would show the ended bar under it again.
            self.progress.refresh()
        self._task, self._attempt = None, None

    def _summary(self, mark: str, style: str, text: str) -> None:
        self.console.print(Text.assemble((mark, style), text))


def progress_for(stream: TextIO | None = None) -> ChainProgress:
    """A progress bar when `stream` (stdout) is an interactive terminal, else plain lines."""
    stream = stream or sys.stdout
    isatty = getattr(stream, "isatty", None)
    # Rich's own test also honours TERM=dumb and TTY_INTERACTIVE=0; FORCE_COLOR alone does not make a pipe a screen.
    console = Console(file=stream)
    if isatty is not None and isatty() and console.is_interactive:
        return RichProgress(console)
    return PlainProgress(stream)
