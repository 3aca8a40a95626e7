"""The registries (models, art styles, LoRAs, content words) loaded from data files and checked at load.

Files live in `services/planner/data/`: `models.json`, `styles.json`, `loras.json`,
`content_words.json`. Every problem is reported as a `RegistryError` that names the file and the
entry, at start-up, so a bad edit to a data file never reaches a user's request.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from contracts.fields import Cfg, LoraStrength, SamplerSteps
from services.planner.planning.errors import RegistryError, UnknownName
from services.planner.planning.modifiers import MAX_SIZE, MIN_SIZE
from services.planner.planning.profiles import RATINGS, Rating

__all__ = ["DATA_DIR", "ContentWords", "LoraSpec", "ModelSpec", "Registry", "StyleSpec"]

DATA_DIR = Path(__file__).resolve().parent.parent / "data"
Name = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_.-]{0,63}$")]
LoraPurpose = Literal["style", "character", "concept", "pose", "clothing"]


class _Entry(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ModelSpec(_Entry):
    """A diffusion model and how to run it."""

    name: Name
    kind: Literal["edit", "t2i"]
    checkpoint: str = Field(min_length=1)
    template: str = Field(min_length=1)
    steps: SamplerSteps
    cfg: Cfg
    width: int = Field(ge=MIN_SIZE, le=MAX_SIZE, multiple_of=8)
    height: int = Field(ge=MIN_SIZE, le=MAX_SIZE, multiple_of=8)
    positive_prompt: str = ""
    negative_prompt: str = ""
    description: str = ""
    # How many LoRAs its workflow template has slots for: a step never stacks more (the renderer
    # refuses a job that brings more, and the test suite checks this against the shipped templates).
    max_loras: int = Field(default=3, ge=0, le=10)


class StyleSpec(_Entry):
    """An art style: which model draws it, which backends serve it, and its optional style LoRA."""

    name: Name
    model: str
    backend: str = Field(min_length=1)
    lora: str | None = None
    description: str = ""


class LoraSpec(_Entry):
    """A LoRA file with what it is for, how strongly, how to trigger it, and how explicit it is."""

    name: Name
    file: str = Field(pattern=r"^[\w./-]+\.safetensors$")
    purpose: LoraPurpose
    trigger_words: tuple[str, ...] = ()
    default_strength: LoraStrength = 1.0
    rating: Rating
    # Words in a step's description that select this LoRA (concept, pose and clothing LoRAs).
    keywords: tuple[str, ...] = ()
    # Models the LoRA was trained for; a LoRA only works on its own base model. Empty: any.
    models: tuple[str, ...] = ()

    @field_validator("trigger_words", "keywords")
    @classmethod
    def _no_blank_words(cls, words: tuple[str, ...]) -> tuple[str, ...]:
        if any(not word.strip() for word in words):
            raise ValueError("must not contain blank words")
        return tuple(word.strip() for word in words)


class ContentWords(_Entry):
    """Words that make a request at least a given rating."""

    suggestive: tuple[str, ...] = ()
    nsfw: tuple[str, ...] = ()


@dataclass(frozen=True)
class Registry:
    """Everything planning may choose from, by name."""

    models: Mapping[str, ModelSpec]
    styles: Mapping[str, StyleSpec]
    loras: Mapping[str, LoraSpec]
    default_style: str
    content_words: ContentWords

    @classmethod
    def load(cls, directory: Path = DATA_DIR) -> Registry:
        """Read and check the four data files in `directory`."""
        docs = {name: _read(directory / f"{name}.json") for name in ("models", "styles", "loras", "content_words")}
        return cls.from_documents(**docs)

    @classmethod
    def from_documents(cls, models: Any, styles: Any, loras: Any, content_words: Any) -> Registry:
        """Build from already-parsed JSON documents (what the files hold), checking every entry."""
        model_map = _entries("models.json", models, "models", ModelSpec)
        lora_map = _entries("loras.json", loras, "loras", LoraSpec)
        style_map = _entries("styles.json", styles, "styles", StyleSpec)
        default_style = styles.get("default") if isinstance(styles, dict) else None
        if default_style not in style_map:
            raise RegistryError(f"styles.json: 'default' must name one of the styles, got {default_style!r}")
        for lora in lora_map.values():
            if unknown := [m for m in lora.models if m not in model_map]:
                raise RegistryError(f"loras.json: LoRA {lora.name!r}: models {unknown} are not in models.json")
        for style in style_map.values():
            _check_style(style, model_map, lora_map)
        words = _content_words(content_words)
        return cls(model_map, style_map, lora_map, default_style, words)

    def model(self, name: str) -> ModelSpec:
        return _lookup("model", self.models, name)

    def style(self, name: str) -> StyleSpec:
        return _lookup("style", self.styles, name)

    def lora(self, name: str) -> LoraSpec:
        return _lookup("LoRA", self.loras, name)


_T = TypeVar("_T", bound=_Entry)


def _read(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RegistryError(f"{path.name}: file not found at {path}") from None
    except json.JSONDecodeError as exc:
        raise RegistryError(f"{path.name}: not valid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from None


def _entries(file: str, document: Any, key: str, model: type[_T]) -> dict[str, _T]:
    if not isinstance(document, dict) or not isinstance(document.get(key), list):
        raise RegistryError(f"{file}: expected an object with a list under {key!r}")
    found: dict[str, _T] = {}
    for index, raw in enumerate(document[key]):
        label = f"entry {index}" + (f" ({raw['name']!r})" if isinstance(raw, dict) and "name" in raw else "")
        try:
            entry = model.model_validate(raw)
        except ValidationError as exc:
            raise RegistryError(f"{file}: {label}: {_summary(exc)}") from None
        if entry.name in found:
            raise RegistryError(f"{file}: {label}: duplicate name {entry.name!r}")
        found[entry.name] = entry
    return found


def _check_style(style: StyleSpec, models: Mapping[str, ModelSpec], loras: Mapping[str, LoraSpec]) -> None:
    where = f"styles.json: style {style.name!r}"
    if style.model not in models:
        raise RegistryError(f"{where}: model {style.model!r} is not in models.json")
    if models[style.model].kind != "edit":
        kind = models[style.model].kind
        raise RegistryError(f"{where}: model {style.model!r} is {kind}, a chain needs an edit model")
    if style.lora is None:
        return
    if style.lora not in loras:
        raise RegistryError(f"{where}: LoRA {style.lora!r} is not in loras.json")
    lora = loras[style.lora]
    if lora.purpose != "style":
        raise RegistryError(f"{where}: LoRA {style.lora!r} has purpose {lora.purpose!r}, expected 'style'")
    if lora.models and style.model not in lora.models:
        raise RegistryError(f"{where}: LoRA {style.lora!r} is not made for model {style.model!r}")


def _content_words(document: Any) -> ContentWords:
    if not isinstance(document, dict):
        raise RegistryError("content_words.json: expected an object of rating -> list of words")
    body = {key: value for key, value in document.items() if not key.startswith("_")}
    if unknown := [key for key in body if key not in RATINGS[1:]]:
        raise RegistryError(f"content_words.json: unknown rating(s) {unknown}; use {list(RATINGS[1:])}")
    try:
        words = ContentWords.model_validate(body)
    except ValidationError as exc:
        raise RegistryError(f"content_words.json: {_summary(exc)}") from None
    if overlap := set(words.suggestive) & set(words.nsfw):
        raise RegistryError(f"content_words.json: words under two ratings: {sorted(overlap)}")
    return words


def _lookup(what: str, table: Mapping[str, _T], name: str) -> _T:
    try:
        return table[name]
    except KeyError:
        raise UnknownName(what, name, list(table)) from None


def _summary(exc: ValidationError) -> str:
    return "; ".join(f"{'.'.join(map(str, e['loc'])) or '<entry>'}: {e['msg']}" for e in exc.errors()[:3])

