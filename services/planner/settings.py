"""The planner service's settings: the shared runtime settings plus its own (prefix LIKENESS_)."""

from __future__ import annotations

from services.runtime.settings import RuntimeSettings

__all__ = ["PlannerSettings"]


class PlannerSettings(RuntimeSettings):
    """Settings of the planner service."""

    service_name: str = "planner"
