"""What pictures can be made with: the diffusion models and the art styles (the planner's catalog, over NATS)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, Field

from services.gateway.deps import GatewayDep, UserDep

__all__ = ["router"]

router = APIRouter(tags=["catalog"])


class ModelInfo(BaseModel):
    name: str
    kind: str = Field(description="edit (a character's chain of edits) or t2i (a picture from text alone)")
    description: str
    width: int
    height: int
    steps: int
    styles: list[str] = Field(description="the art styles drawn with this model")


@router.get("/models", response_model=list[ModelInfo], summary="The models a request may name with --model")
async def models(_: UserDep, gateway: GatewayDep) -> list[dict[str, Any]]:
    catalog = await gateway.catalog.get()
    return [{"name": m.name, "kind": m.kind, "description": m.description, "width": m.width, "height": m.height,
             "steps": m.steps, "styles": sorted(s.name for s in catalog.styles if s.model == m.name)}
            for m in catalog.models]


@router.get("/styles", summary="The art styles a character or a request (--style) may use")
async def styles(_: UserDep, gateway: GatewayDep) -> list[dict[str, Any]]:
    catalog = await gateway.catalog.get()
    return [{"name": s.name, "model": s.model, "description": s.description, "lora": s.lora,
             "default": s.name == catalog.default_style} for s in catalog.styles]
