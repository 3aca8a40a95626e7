"""Webhook secrets and signatures (Standard Webhooks: `webhook-id`, `webhook-timestamp`, `webhook-signature`).

An endpoint's secret is derived, never stored: 32 bytes of HMAC-SHA256(service key, endpoint id and
secret generation), written `whsec_<base64>`. Rotating bumps the generation, so the old secret stops
signing at once; the log records only the generation. Signing itself is the standardwebhooks library's.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import datetime
from uuid import UUID

from standardwebhooks import Webhook

__all__ = ["endpoint_secret", "signed_headers"]


def endpoint_secret(key: str, endpoint_id: UUID, generation: int) -> str:
    """The endpoint's secret of that generation, in the `whsec_` form receivers configure."""
    raw = hmac.new(key.encode(), f"webhook-secret:{endpoint_id}:{generation}".encode(), hashlib.sha256).digest()
    return "whsec_" + base64.b64encode(raw).decode()


def signed_headers(secret: str, message_id: str, timestamp: datetime, body: bytes) -> dict[str, str]:
    """The three Standard Webhooks headers for `body` sent at `timestamp`."""
    signature = Webhook(secret).sign(message_id, timestamp, body)
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(int(timestamp.timestamp())),
        "webhook-signature": signature,
    }
