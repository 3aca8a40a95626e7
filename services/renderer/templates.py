"""Workflow templates: ComfyUI API-format graphs ("Export (API)") whose titled nodes take the job's parameters.

Binding rules are in `services.renderer.bindings`. A template named `*_t2i` makes an image from text;
every other template edits the job's input image and must have a LoadImage titled `input_image`; an edit
template may also take the character's reference picture (a LoadImage titled `reference_image`, e.g. `face_restore`).
Every template needs exactly one node titled `output`. Bad files are refused at load, naming the file.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from contracts.render import RenderStep
from services.renderer.bindings import LORA_CLASSES, SCALAR_RULES, apply_loras, lora_capacity, parse_title
from services.renderer.errors import TemplateError

__all__ = ["BUILTIN_DIR", "BoundWorkflow", "Template", "TemplateLibrary", "load_template", "workflow_hash"]

log = logging.getLogger(__name__)

BUILTIN_DIR = Path(__file__).resolve().parent / "workflows"
# Its executions leave no history output (§3.1), so the result could never be read back.
_NOT_AN_OUTPUT = {"SaveImageWebsocket"}


@dataclass(frozen=True)
class BoundWorkflow:
    """A graph with the job's parameters in place, and its hash."""

    graph: dict[str, Any]
    workflow_hash: str
    input_node: str | None
    output_node: str
    reference_node: str | None = None


@dataclass(frozen=True)
class Template:
    """One loaded template: the graph and which nodes take which parameter."""

    name: str
    source: str
    graph: dict[str, Any]
    bindings: dict[str, tuple[str, ...]]

    @property
    def edit(self) -> bool:
        return not self.name.endswith("_t2i")

    @property
    def input_node(self) -> str | None:
        nodes = self.bindings.get("input_image", ())
        return nodes[0] if nodes else None

    @property
    def reference_node(self) -> str | None:
        nodes = self.bindings.get("reference_image", ())
        return nodes[0] if nodes else None

    @property
    def output_node(self) -> str:
        return self.bindings["output"][0]

    @property
    def lora_capacity(self) -> int | None:
        """How many LoRAs a job may bring (None: no limit, an rgthree Power Lora Loader takes any number)."""
        slots = [*self.bindings.get("lora_switch", ()), *self.bindings.get("lora_stack", ())]
        capacities = [lora_capacity(self.graph[n]["class_type"]) for n in slots]
        return None if None in capacities else sum(capacities)  # type: ignore[arg-type]

    def bind(self, job: RenderStep, *, input_ref: str | None, reference_ref: str | None = None) -> BoundWorkflow:
        """A copy of the graph with the job's values set; raises TemplateError if the job does not fit."""
        graph = copy.deepcopy(self.graph)
        values: dict[str, Any] = {
            "input_image": input_ref, "reference_image": reference_ref, "prompt": job.prompt,
            "negative_prompt": job.negative_prompt,
            "seed": job.seed, "width": job.width, "height": job.height, "steps": job.steps, "cfg": job.cfg,
            "denoise": job.denoise,
        }
        for param, value in values.items():
            if value is None:
                continue  # no input image (text-to-image) or no denoise in the job: the template's own value stays
            for node_id in self.bindings.get(param, ()):
                node = graph[node_id]
                for name in SCALAR_RULES[param][node["class_type"]]:
                    node["inputs"][name] = value
        self._bind_loras(graph, job)
        return BoundWorkflow(graph, workflow_hash(graph), self.input_node, self.output_node, self.reference_node)

    def _bind_loras(self, graph: dict[str, Any], job: RenderStep) -> None:
        slots = [*self.bindings.get("lora_switch", ()), *self.bindings.get("lora_stack", ())]
        capacities = [lora_capacity(graph[n]["class_type"]) for n in slots]
        if None not in capacities and len(job.loras) > sum(capacities):  # type: ignore[arg-type]
            room = sum(capacities)  # type: ignore[arg-type]
            raise TemplateError(f"template {self.name!r} has room for {room} LoRA(s) but the job asks for "
                                f"{len(job.loras)}")
        remaining = list(job.loras)
        for node_id, capacity in zip(slots, capacities, strict=True):
            take = len(remaining) if capacity is None else capacity
            mine, remaining = remaining[:take], remaining[take:]
            node = graph[node_id]
            apply_loras(node["class_type"], node["inputs"], mine)


def workflow_hash(graph: dict[str, Any]) -> str:
    """sha256 of the canonical JSON (sorted keys, no spaces, UTF-8) of a bound graph."""
    canonical = json.dumps(graph, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def load_template(path: Path) -> Template:
    """Read and check one template file; a problem raises TemplateError naming the file."""
    name = path.stem
    try:
        graph = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise TemplateError(f"template {path}: cannot read it as JSON: {exc}") from None
    if isinstance(graph, dict) and "nodes" in graph and "links" in graph:
        raise TemplateError(f"template {path}: this is a UI workflow; save it with 'Export (API)'")
    if not isinstance(graph, dict) or not graph:
        raise TemplateError(f"template {path}: expected an API-format object {{node_id: {{class_type, inputs}}}}")
    bindings: dict[str, list[str]] = {}
    for node_id, node in graph.items():
        if not isinstance(node, dict) or not isinstance(node.get("class_type"), str) \
                or not isinstance(node.get("inputs"), dict):
            raise TemplateError(f"template {path}: node {node_id} lacks class_type or inputs")
        title = (node.get("_meta") or {}).get("title")
        for param in parse_title(title):
            _check_class(path, node_id, node["class_type"], param)
            bindings.setdefault(param, []).append(node_id)
    _check_required(path, name, bindings)
    ordered = {param: tuple(sorted(nodes, key=_node_order)) for param, nodes in bindings.items()}
    return Template(name, str(path), graph, ordered)


def _check_class(path: Path, node_id: str, class_type: str, param: str) -> None:
    if param == "output":
        if class_type in _NOT_AN_OUTPUT:
            raise TemplateError(f"template {path}: node {node_id} ({class_type}) titled 'output' keeps no "
                                "history output; use SaveImage", node_id=node_id, node_type=class_type)
        return
    allowed = SCALAR_RULES.get(param) or LORA_CLASSES[param]
    if class_type not in allowed:
        raise TemplateError(f"template {path}: node {node_id} ({class_type}) is titled {param!r}, which binds only "
                            f"to {', '.join(sorted(allowed))}", node_id=node_id, node_type=class_type)


def _check_required(path: Path, name: str, bindings: dict[str, list[str]]) -> None:
    outputs = bindings.get("output", [])
    if len(outputs) != 1:
        raise TemplateError(f"template {path}: needs exactly one node titled 'output', found {len(outputs)}")
    inputs = bindings.get("input_image", [])
    if len(inputs) > 1:
        raise TemplateError(f"template {path}: more than one node is titled 'input_image' ({', '.join(inputs)})")
    references = bindings.get("reference_image", [])
    if len(references) > 1 or references and not inputs:
        raise TemplateError(f"template {path}: at most one node may be titled 'reference_image', and only in an "
                            "edit template (one with a LoadImage titled 'input_image')")
    if not name.endswith("_t2i") and not inputs:
        raise TemplateError(f"template {path}: an edit template needs a LoadImage titled 'input_image' "
                            "(name it '*_t2i' if it makes images from text)")


def _check_replacement(new: Template, old: Template) -> None:
    """A template that replaces another serves the same jobs: the planner sends it as many LoRAs as it sent
    the one replaced (the built-ins' capacities are what the planner's registry is checked against)."""
    room, needed = new.lora_capacity, old.lora_capacity
    if needed is None and room is not None or room is not None and needed is not None and room < needed:
        raise TemplateError(f"template {new.source}: has room for {room} LoRA(s), but {old.source}, which it "
                            f"replaces, has room for {'any number' if needed is None else needed} and jobs of its "
                            "models bring that many; add nodes titled 'lora_switch' or 'lora_stack'")


def _node_order(node_id: str) -> tuple[int, str]:
    return (int(node_id), "") if node_id.isdigit() else (1 << 62, node_id)


class TemplateLibrary:
    """Templates by name; a later folder's file overrides a built-in one of the same name."""

    def __init__(self, templates: dict[str, Template]) -> None:
        self._templates = templates

    @classmethod
    def load(cls, folders: Iterable[Path | None] = (BUILTIN_DIR,)) -> TemplateLibrary:
        templates: dict[str, Template] = {}
        for folder in folders:
            if folder is None:
                continue
            if not folder.is_dir():
                raise TemplateError(f"templates folder {folder} does not exist")
            for path in sorted(folder.glob("*.json")):
                template = load_template(path)
                if path.stem in templates:
                    _check_replacement(template, templates[path.stem])
                    log.info("template %s from %s overrides %s", path.stem, path, templates[path.stem].source)
                templates[path.stem] = template
        return cls(templates)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(sorted(self._templates))

    def get(self, name: str) -> Template:
        try:
            return self._templates[name]
        except KeyError:
            raise TemplateError(f"unknown template {name!r}; known: {', '.join(self.names) or 'none'}") from None
