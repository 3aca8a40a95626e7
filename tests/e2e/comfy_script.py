"""An image policy for the fake ComfyUI process, driven by a queue file the test writes.

The fake runs as its own process (`python -m tests.fakes.comfyui --image-for
tests.e2e.comfy_script:next_image`), so a test cannot hand it a function: it writes the outcomes of
the next renders, in order, to the JSON file named by $E2E_COMFY_SCRIPT, and each render pops one:

    "same"    the input picture re-encoded as PNG: the character's face, unchanged
    "other"   another person's face (tests.faces person OTHER_PERSON)
    "noface"  a scene with no face in it
    "error"   the policy raises, which the fake reports as an `execution_error` at the SaveImage node
    "restored" the character's own face (person 0, whose photo the e2e chains use), as a face restore from the
              reference gives; only for a graph that loads a reference picture (else the policy raises)

An empty queue means "same". Every render served is appended to `<script>.served` (JSON lines:
the outcome and the sampler seed the renderer sent, with its denoise and LoadImage titles in `served_jobs`),
so a test can check which seeds and parameters reached ComfyUI.
The fake renders one prompt at a time and calls the policy synchronously, so nothing races here.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from tests.faces import face_of, no_face_image
from tests.fakes.comfyui import same_as_input

__all__ = ["ENV", "ERROR_MESSAGE", "OTHER_PERSON", "OUTCOMES", "ComfyScript", "next_image"]

ENV = "E2E_COMFY_SCRIPT"
OUTCOMES = ("same", "other", "noface", "error", "restored")
# The person whose photo the e2e chains use (tests/e2e/fixtures.py `photo`).
CHARACTER_PERSON = 0
OTHER_PERSON = 3
ERROR_MESSAGE = "scripted failure: CUDA error: an illegal memory access was encountered"


class ScriptedRenderError(RuntimeError):
    """Raised for an "error" outcome; its type and message end up in the renderer's RenderFailed."""


def next_image(graph: dict[str, Any], input_bytes: bytes | None) -> bytes:
    """The fake's `image_for`: the next scripted outcome, as image bytes (or an exception)."""
    script = ComfyScript(Path(os.environ[ENV]))
    queue = script.pending()
    outcome = queue.pop(0) if queue else "same"
    script.write(queue)
    loads = [node.get("_meta", {}).get("title") for node in graph.values() if node.get("class_type") == "LoadImage"]
    with script.served_path.open("a", encoding="utf-8") as served:
        served.write(json.dumps({"outcome": outcome, "seed": _seed_of(graph), "denoise": _denoise_of(graph),
                                 "loads": loads}) + "\n")
    if outcome == "same":
        return same_as_input(graph, input_bytes)
    if outcome == "other":
        return face_of(OTHER_PERSON)
    if outcome == "noface":
        return no_face_image()
    if outcome == "error":
        raise ScriptedRenderError(ERROR_MESSAGE)
    if outcome == "restored":
        if "reference_image" not in loads:
            raise ValueError("a \"restored\" outcome needs a graph that loads the reference picture")
        return face_of(CHARACTER_PERSON)
    raise ValueError(f"unknown scripted outcome {outcome!r}; expected one of {OUTCOMES}")


def _denoise_of(graph: dict[str, Any]) -> float | None:
    for node in graph.values():
        if isinstance(node, dict) and "seed" in node.get("inputs", {}):
            return node["inputs"].get("denoise")
    return None


def _seed_of(graph: dict[str, Any]) -> int | None:
    for node in graph.values():
        if isinstance(node, dict) and "seed" in node.get("inputs", {}):
            return node["inputs"]["seed"]
    return None


class ComfyScript:
    """The test's side: queue outcomes, read what was served."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.served_path = path.with_name(path.name + ".served")

    def reset(self, *outcomes: str) -> None:
        """Forget what was served and queue `outcomes` for the next renders."""
        unknown = set(outcomes) - set(OUTCOMES)
        if unknown:
            raise ValueError(f"unknown outcomes {sorted(unknown)}; expected some of {OUTCOMES}")
        self.served_path.write_text("", encoding="utf-8")
        self.write(list(outcomes))

    def pending(self) -> list[str]:
        """Outcomes queued and not rendered yet."""
        try:
            return json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return []

    def served(self) -> list[dict[str, Any]]:
        """{"outcome", "seed"} of each render since the last reset, in order."""
        return [{"outcome": job["outcome"], "seed": job["seed"]} for job in self.served_jobs()]

    def served_jobs(self) -> list[dict[str, Any]]:
        """{"outcome", "seed", "denoise", "loads"} of each render since the last reset, in order."""
        try:
            lines = self.served_path.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            return []
        return [json.loads(line) for line in lines if line.strip()]

    def write(self, outcomes: list[str]) -> None:
        # Replaced atomically: the fake never reads half a file.
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(json.dumps(outcomes), encoding="utf-8")
        os.replace(tmp, self.path)
