"""The facecheck service's settings: the shared runtime settings plus its own (prefix LIKENESS_)."""

from __future__ import annotations

from services.runtime.settings import RuntimeSettings

__all__ = ["FacecheckSettings"]


class FacecheckSettings(RuntimeSettings):
    """Settings of the facecheck service."""

    service_name: str = "facecheck"
