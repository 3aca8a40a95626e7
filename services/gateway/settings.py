"""The gateway service's settings: the shared runtime settings plus its own (prefix LIKENESS_)."""

from __future__ import annotations

from services.runtime.settings import RuntimeSettings

__all__ = ["GatewaySettings"]


class GatewaySettings(RuntimeSettings):
    """Settings of the gateway service."""

    service_name: str = "gateway"
