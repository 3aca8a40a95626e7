"""Prompt validation and execution order as ComfyUI does them (§5): 400 bodies, node_errors, outputs."""

from __future__ import annotations

from typing import Any

__all__ = ["KNOWN_CLASSES", "OUTPUT_CLASSES", "SAMPLER_CLASSES", "execution_order", "validate"]

OUTPUT_CLASSES = {"SaveImage", "PreviewImage", "SaveImageWebsocket"}
SAMPLER_CLASSES = {"KSampler", "KSamplerAdvanced", "SamplerCustom", "SamplerCustomAdvanced"}
KNOWN_CLASSES = OUTPUT_CLASSES | SAMPLER_CLASSES | {
    "LoadImage", "ImageScale", "ImageScaleBy", "ImageInvert", "ImageBlur", "ImageScaleToTotalPixels",
    "CheckpointLoaderSimple", "UNETLoader", "DualCLIPLoader", "CLIPLoader", "VAELoader",
    "CLIPTextEncode", "TextEncodeQwenImageEdit", "TextEncodeQwenImageEditPlus", "FluxGuidance",
    "ConditioningZeroOut", "VAEEncode", "VAEDecode", "EmptyLatentImage", "EmptySD3LatentImage",
    "FluxKontextImageScale", "ReferenceLatent",
    "LoraLoader", "LoraLoaderModelOnly", "RandomNoise", "BasicScheduler", "CFGGuider",
    "PrimitiveInt", "PrimitiveFloat", "PrimitiveString", "PrimitiveStringMultiline",
    "CR Load LoRA", "CR LoRA Stack", "CR Apply LoRA Stack", "Power Lora Loader (rgthree)",
}


def _error(kind: str, message: str, details: str) -> dict[str, Any]:
    return {"type": kind, "message": message, "details": details, "extra_info": {}}


def _links(node: dict[str, Any]) -> list[str]:
    return [str(v[0]) for v in node.get("inputs", {}).values() if isinstance(v, list) and len(v) == 2]


def ancestors(graph: dict[str, Any], node_id: str) -> set[str]:
    seen, stack = set(), [node_id]
    while stack:
        current = stack.pop()
        if current in seen or current not in graph:
            continue
        seen.add(current)
        stack.extend(_links(graph[current]))
    return seen


def validate(graph: Any, known: set[str], file_exists) -> tuple[int, dict[str, Any], list[str]]:
    """(status, body, outputs to execute): 400 if nothing can run, else 200 with node_errors of what cannot."""
    if not isinstance(graph, dict):
        return 400, {"error": _error("no_prompt", "No prompt provided", "No prompt provided"), "node_errors": {}}, []
    for node_id, node in graph.items():
        if not isinstance(node, dict) or "class_type" not in node:
            return 400, {"error": _error("invalid_prompt", "Cannot execute because a node is missing the class_type "
                                         "property.", f"Node ID '#{node_id}'"), "node_errors": {}}, []
        if node["class_type"] not in known:
            return 400, {"error": _error("invalid_prompt", f"Cannot execute because node {node['class_type']} does "
                                         "not exist.", f"Node ID '#{node_id}'"), "node_errors": {}}, []
    outputs = [n for n, node in graph.items() if node["class_type"] in OUTPUT_CLASSES]
    if not outputs:
        return 400, {"error": _error("prompt_no_outputs", "Prompt has no outputs", ""), "node_errors": {}}, []
    bad = {n: errs for n, node in graph.items() if (errs := _node_errors(graph, node, file_exists))}
    node_errors, valid = {}, []
    for output in outputs:
        failing = sorted(ancestors(graph, output) & set(bad))
        if not failing:
            valid.append(output)
        for n in failing:
            entry = node_errors.setdefault(n, {"errors": bad[n], "dependent_outputs": [],
                                               "class_type": graph[n]["class_type"]})
            entry["dependent_outputs"].append(output)
    if not valid:
        error = _error("prompt_outputs_failed_validation", "Prompt outputs failed validation", "")
        return 400, {"error": error, "node_errors": node_errors}, []
    return 200, {"node_errors": node_errors}, valid


def _node_errors(graph: dict[str, Any], node: dict[str, Any], file_exists) -> list[dict[str, Any]]:
    errors = []
    inputs = node.get("inputs", {})
    for name, value in inputs.items():
        if isinstance(value, list) and len(value) == 2 and str(value[0]) not in graph:
            errors.append({"type": "exception_during_inner_validation", "message": "Exception when validating "
                           "inner node", "details": f"'{value[0]}'", "extra_info": {"input_name": name}})
    if node["class_type"] == "LoadImage":
        image = inputs.get("image")
        if not isinstance(image, str) or not file_exists(image):
            errors.append({"type": "custom_validation_failed", "message": "Custom validation failed for node",
                           "details": f"image - Invalid image file: {image}", "extra_info": {"input_name": "image"}})
    return errors


def execution_order(graph: dict[str, Any], outputs: list[str]) -> list[str]:
    """Dependencies first, each output branch finished before the next (like ComfyUI's)."""
    order: list[str] = []

    def visit(node_id: str) -> None:
        if node_id in order or node_id not in graph:
            return
        for dep in _links(graph[node_id]):
            visit(dep)
        order.append(node_id)

    for output in outputs:
        visit(output)
    return order
