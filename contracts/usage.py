"""What language-model calls cost, as events carry it: one shape for every service that calls a model."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["ModelUsage"]


class ModelUsage(BaseModel):
    """The model calls made for one thing (a plan, a reply): how many, their tokens, their price."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    model: str = Field(min_length=1)
    calls: int = Field(ge=0)
    prompt_tokens: int = Field(default=0, ge=0)
    completion_tokens: int = Field(default=0, ge=0)
    cost_usd: float = Field(default=0.0, ge=0)
    # True when a server sent no usage and the counts (so the cost) are estimates.
    tokens_estimated: bool = False
