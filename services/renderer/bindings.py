"""Which input of which node class each plan parameter sets (pure); the rules the templates follow.

A node takes part by its title (`_meta.title`): one parameter name, or several separated by commas
("seed, steps, cfg, denoise" on a KSampler; "width, height" on EmptyLatentImage). Other titles are ignored.

    title             class_type                                   input(s) set
    input_image       LoadImage                                    image (the uploaded "<subfolder>/<name>")
    reference_image   LoadImage                                    image: the character's reference picture, for
                                                                   a template that compares with it (face_restore)
    prompt,           CLIPTextEncode                               text
    negative_prompt   TextEncodeQwenImageEdit(Plus)                prompt
                      CLIPTextEncodeFlux                           clip_l, t5xxl
                      CLIPTextEncodeSDXL                           text_g, text_l
                      PrimitiveString(Multiline)                   value
    seed              KSampler                                     seed
                      KSamplerAdvanced, RandomNoise                noise_seed
                      PrimitiveInt                                 value
    width, height     EmptyLatentImage, EmptySD3LatentImage,       width / height
                      ImageScale
                      PrimitiveInt                                 value
    steps             KSampler, KSamplerAdvanced, BasicScheduler   steps;  PrimitiveInt: value
    cfg               KSampler, KSamplerAdvanced, CFGGuider        cfg;    PrimitiveFloat: value
    denoise           KSampler, BasicScheduler                     denoise; PrimitiveFloat: value (job unset: kept)
    lora_switch       CR Load LoRA (Comfyroll)                     switch On/Off, lora_name, strength_model/_clip
                      LoraLoader                                   lora_name, strength_model/_clip (off: 0, 0)
                      LoraLoaderModelOnly                          lora_name, strength_model (off: 0)
    lora_stack        CR LoRA Stack (Comfyroll)                    switch_i, lora_name_i, model_/clip_weight_i, i=1..3
                      Power Lora Loader (rgthree)                  lora_i = {"on", "lora", "strength"}, unbounded
    output            any node whose history output has `images`   (read, never set); not SaveImageWebsocket

Core class inputs are as in ComfyUI 0.3.64's /object_info; the Comfyroll and rgthree names follow
those packs' INPUT_TYPES. LoRAs fill the slots in order: every `lora_switch` node (one LoRA each,
by node id), then every `lora_stack` node; a job with more LoRAs than slots is refused.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from contracts.chain import LoraUse

__all__ = ["PARAMETERS", "SCALAR_RULES", "LORA_CLASSES", "apply_loras", "lora_capacity", "lora_file", "parse_title"]

_TEXT = {
    "CLIPTextEncode": ("text",),
    "TextEncodeQwenImageEdit": ("prompt",),
    "TextEncodeQwenImageEditPlus": ("prompt",),
    "CLIPTextEncodeFlux": ("clip_l", "t5xxl"),
    "CLIPTextEncodeSDXL": ("text_g", "text_l"),
    "PrimitiveString": ("value",),
    "PrimitiveStringMultiline": ("value",),
}

SCALAR_RULES: dict[str, dict[str, tuple[str, ...]]] = {
    "input_image": {"LoadImage": ("image",)},
    "reference_image": {"LoadImage": ("image",)},
    "prompt": _TEXT,
    "negative_prompt": _TEXT,
    "seed": {"KSampler": ("seed",), "KSamplerAdvanced": ("noise_seed",), "RandomNoise": ("noise_seed",),
             "PrimitiveInt": ("value",)},
    "width": {"EmptyLatentImage": ("width",), "EmptySD3LatentImage": ("width",), "ImageScale": ("width",),
              "PrimitiveInt": ("value",)},
    "height": {"EmptyLatentImage": ("height",), "EmptySD3LatentImage": ("height",), "ImageScale": ("height",),
               "PrimitiveInt": ("value",)},
    "steps": {"KSampler": ("steps",), "KSamplerAdvanced": ("steps",), "BasicScheduler": ("steps",),
              "PrimitiveInt": ("value",)},
    "cfg": {"KSampler": ("cfg",), "KSamplerAdvanced": ("cfg",), "CFGGuider": ("cfg",), "PrimitiveFloat": ("value",)},
    "denoise": {"KSampler": ("denoise",), "BasicScheduler": ("denoise",), "PrimitiveFloat": ("value",)},
}

# None: no fixed number of slots.
LORA_CLASSES: dict[str, dict[str, int | None]] = {
    "lora_switch": {"CR Load LoRA": 1, "LoraLoader": 1, "LoraLoaderModelOnly": 1},
    "lora_stack": {"CR LoRA Stack": 3, "Power Lora Loader (rgthree)": None},
}

PARAMETERS = (*SCALAR_RULES, *LORA_CLASSES, "output")

_LORA_EXTENSIONS = (".safetensors", ".ckpt", ".pt", ".pth", ".bin")
_RGTHREE_SLOT = re.compile(r"^lora_\d+$")


def parse_title(title: object) -> tuple[str, ...]:
    """The parameters a node title names, in order; unknown words are ignored."""
    if not isinstance(title, str):
        return ()
    words = [word.strip() for word in title.split(",")]
    return tuple(word for word in words if word in PARAMETERS)


def lora_file(name: str) -> str:
    """The file ComfyUI lists under models/loras; a bare registry name gets `.safetensors`."""
    return name if name.lower().endswith(_LORA_EXTENSIONS) else f"{name}.safetensors"


def lora_capacity(class_type: str) -> int | None:
    for classes in LORA_CLASSES.values():
        if class_type in classes:
            return classes[class_type]
    raise KeyError(class_type)


def apply_loras(class_type: str, inputs: dict[str, Any], loras: Sequence[LoraUse]) -> None:
    """Set a LoRA node's inputs for `loras` (possibly none: the node is switched off)."""
    if class_type == "CR Load LoRA":
        _cr_load(inputs, loras[0] if loras else None)
    elif class_type in ("LoraLoader", "LoraLoaderModelOnly"):
        if loras:
            inputs["lora_name"] = lora_file(loras[0].name)
        inputs["strength_model"] = loras[0].strength if loras else 0.0
        if class_type == "LoraLoader":
            inputs["strength_clip"] = loras[0].strength if loras else 0.0
    elif class_type == "CR LoRA Stack":
        for slot in range(1, 4):
            lora = loras[slot - 1] if slot <= len(loras) else None
            inputs[f"switch_{slot}"] = "On" if lora else "Off"
            inputs[f"lora_name_{slot}"] = lora_file(lora.name) if lora else "None"
            inputs[f"model_weight_{slot}"] = lora.strength if lora else 1.0
            inputs[f"clip_weight_{slot}"] = lora.strength if lora else 1.0
    elif class_type == "Power Lora Loader (rgthree)":
        for key in [k for k in inputs if _RGTHREE_SLOT.match(k)]:
            del inputs[key]
        for slot, lora in enumerate(loras, start=1):
            inputs[f"lora_{slot}"] = {"on": True, "lora": lora_file(lora.name), "strength": lora.strength}
    else:
        raise KeyError(class_type)


def _cr_load(inputs: dict[str, Any], lora: LoraUse | None) -> None:
    inputs["switch"] = "On" if lora else "Off"
    if lora:
        inputs["lora_name"] = lora_file(lora.name)
        inputs["strength_model"] = inputs["strength_clip"] = lora.strength
