"""Reading ComfyUI's answers (pure): /prompt rejections, execution errors, /history entries, output files."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from services.renderer.errors import RenderError

__all__ = [
    "ImageFile",
    "Outcome",
    "error_of",
    "images_of",
    "interruption_of",
    "outcome_of",
    "partial_rejection",
    "rejection",
]

_NODE_IN_DETAILS = re.compile(r"Node ID '#?([^']+)'")


@dataclass(frozen=True)
class ImageFile:
    """One file a node wrote, as history and `executed` name it; read back with GET /view."""

    filename: str
    subfolder: str
    type: str


@dataclass(frozen=True)
class Outcome:
    """What a history entry says: finished or not, and the failure if it failed."""

    finished: bool
    failure: RenderError | None
    outputs: dict[str, Any]


def error_of(data: dict[str, Any]) -> RenderError:
    """`execution_error` data -> an execution failure naming the node, its class and the message."""
    node_id, node_type = _s(data.get("node_id")), _s(data.get("node_type"))
    message = (_s(data.get("exception_message")) or "no message").strip()
    exc_type = _s(data.get("exception_type"))
    what = f"{exc_type}: {message}" if exc_type else message
    return RenderError("execution", f"{_node(node_id, node_type)} failed: {what}", node_id=node_id,
                       node_type=node_type)


def interruption_of(data: dict[str, Any]) -> RenderError:
    """`execution_interrupted` data -> an interrupted failure."""
    node_id, node_type = _s(data.get("node_id")), _s(data.get("node_type"))
    return RenderError("interrupted", f"interrupted at {_node(node_id, node_type)}", node_id=node_id,
                       node_type=node_type)


def rejection(status: int, body: Any) -> RenderError:
    """A 400 from POST /prompt -> a validation failure naming the failing node(s) and why."""
    if not isinstance(body, dict):
        return RenderError("validation", f"ComfyUI refused the prompt (HTTP {status}) without a JSON body")
    problems = _node_problems(body.get("node_errors"))
    if problems:
        node_id, node_type, _ = problems[0]
        text = "; ".join(p[2] for p in problems)
        return RenderError("validation", f"ComfyUI refused the workflow: {text}", node_id=node_id, node_type=node_type)
    error = body.get("error")
    if isinstance(error, dict):
        # invalid_prompt names the node only in `details`: "Node ID '#3'".
        details = _s(error.get("details")) or ""
        match = _NODE_IN_DETAILS.search(details)
        message = (_s(error.get("message")) or "invalid prompt") + (f" ({details})" if details else "")
        return RenderError("validation", f"ComfyUI refused the workflow: {message}",
                           node_id=match.group(1) if match else None)
    return RenderError("validation", f"ComfyUI refused the prompt (HTTP {status}): {str(body)[:300]}")


def partial_rejection(node_errors: Any, output_node: str) -> RenderError | None:
    """A 200 whose `node_errors` disable our output node (the rest of the graph would run without it)."""
    if not isinstance(node_errors, dict):
        return None
    hits = [p for p in _node_problems(node_errors)
            if output_node in (node_errors.get(p[0], {}).get("dependent_outputs") or [output_node])]
    if not hits:
        return None
    return RenderError("validation", "ComfyUI dropped the output node: " + "; ".join(p[2] for p in hits),
                       node_id=hits[0][0], node_type=hits[0][1])


def outcome_of(entry: Any) -> Outcome:
    """Read one `/history/{id}` entry: finished?, failure?, outputs."""
    if not isinstance(entry, dict):
        return Outcome(False, None, {})
    outputs = entry.get("outputs") if isinstance(entry.get("outputs"), dict) else {}
    status = entry.get("status") if isinstance(entry.get("status"), dict) else {}
    for message in reversed(status.get("messages") or []):
        if isinstance(message, list) and len(message) == 2 and isinstance(message[1], dict):
            if message[0] == "execution_error":
                return Outcome(True, error_of(message[1]), outputs)
            if message[0] == "execution_interrupted":
                return Outcome(True, interruption_of(message[1]), outputs)
    status_str = status.get("status_str")
    if status_str == "error":
        return Outcome(True, RenderError("execution", "ComfyUI reports the prompt failed (no details)"), outputs)
    # An entry is only written when the prompt is done (§6.8), even without a status.
    return Outcome(True, None, outputs)


def images_of(outputs: dict[str, Any], node_id: str) -> list[ImageFile]:
    """The image files node `node_id` wrote, in order."""
    node = outputs.get(node_id)
    images = node.get("images") if isinstance(node, dict) else None
    files = []
    for item in images or []:
        if isinstance(item, dict) and isinstance(item.get("filename"), str):
            files.append(ImageFile(item["filename"], _s(item.get("subfolder")) or "", _s(item.get("type")) or "output"))
    return files


def _node_problems(node_errors: Any) -> list[tuple[str, str | None, str]]:
    problems = []
    for node_id, entry in (node_errors or {}).items() if isinstance(node_errors, dict) else ():
        if not isinstance(entry, dict):
            continue
        node_type = _s(entry.get("class_type"))
        for err in entry.get("errors") or []:
            if isinstance(err, dict):
                message = _s(err.get("message")) or "invalid"
                details = _s(err.get("details"))
                text = f"{_node(str(node_id), node_type)}: {message}" + (f": {details}" if details else "")
                problems.append((str(node_id), node_type, text))
    return problems


def _node(node_id: str | None, node_type: str | None) -> str:
    # "(None)" tells an operator nothing; the client fills in the type from the graph it sent.
    return f"node {node_id} ({node_type})" if node_type else f"node {node_id}"


def _s(value: object) -> str | None:
    return value if isinstance(value, str) else None
