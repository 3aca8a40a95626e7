"""The catalog of what pictures can be made with, as the planner serves it to other services.

The planner owns the model and style registries; the gateway lists them (GET /models, GET /styles) and
checks a new character's art style against them by asking on core NATS `likeness.rpc.planner.catalog`
(queue group "planner"): an empty request, and this document as the reply.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

from contracts.subjects import rpc_subject

__all__ = ["CATALOG_SUBJECT", "Catalog", "CatalogModel", "CatalogStyle"]

CATALOG_SUBJECT = rpc_subject("planner.catalog")


class CatalogModel(BaseModel):
    """A diffusion model a request may name with --model."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    name: str
    kind: Literal["edit", "t2i"]
    description: str = ""
    width: int
    height: int
    steps: int


class CatalogStyle(BaseModel):
    """An art style a character or a request (--style) may use, and the model that draws it."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    name: str
    model: str
    description: str = ""
    lora: str | None = None


class Catalog(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    models: tuple[CatalogModel, ...]
    styles: tuple[CatalogStyle, ...]
    default_style: str

    def style_names(self) -> list[str]:
        return [style.name for style in self.styles]
