"""Signed image links: a URL that shows one stored image to whoever holds it, until it expires.

A Google Chat card or a webhook receiver fetches the picture without a Likeness login, so the delivery
service hands out `<public base>/links/images/<sha256>?expires=<unix s>&signature=<hex>` and the gateway
serves it after checking the signature: HMAC-SHA256 over `<sha256>:<expires>` with `LIKENESS_IMAGE_LINK_SECRET`,
which both services read. Nothing else about the image (its owner, its chain) is in the link.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from urllib.parse import urlencode

__all__ = [
    "DEFAULT_LINK_SECRET",
    "IMAGE_LINK_PATH",
    "check_link_secret",
    "image_link",
    "link_signature",
    "verify_image_link",
]

# Good enough on a developer's machine; refused in prod, where it would be public knowledge.
DEFAULT_LINK_SECRET = "likeness-dev-image-link-secret-not-for-production"
IMAGE_LINK_PATH = "/links/images"
_MIN_SECRET_CHARS = 32
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


def link_signature(secret: str, sha256: str, expires: int) -> str:
    return hmac.new(secret.encode(), f"{sha256}:{expires}".encode(), hashlib.sha256).hexdigest()


def image_link(base_url: str, secret: str, sha256: str, expires: int) -> str:
    """The public URL of one image until `expires` (seconds since the epoch)."""
    query = urlencode({"expires": expires, "signature": link_signature(secret, sha256, expires)})
    return f"{base_url.rstrip('/')}{IMAGE_LINK_PATH}/{sha256}?{query}"


def verify_image_link(secret: str, sha256: str, expires: int, signature: str, now_s: float) -> str | None:
    """None when the link is good; else why not, in words fit for the person holding it."""
    if not _SHA256.match(sha256):
        return "an image link names the image by the 64 hex digits of its sha256"
    if not hmac.compare_digest(link_signature(secret, sha256, expires), signature):
        return "the link's signature does not match: copy the whole link as it was sent"
    if expires < now_s:
        return "the link has expired: ask for the picture again (replay the delivery) for a fresh link"
    return None


def check_link_secret(secret: str, environment: str) -> None:
    """Refuse, at start-up, a link secret that would let anyone forge links in production."""
    if environment != "prod":
        return
    if secret == DEFAULT_LINK_SECRET:
        raise ValueError("LIKENESS_IMAGE_LINK_SECRET must be set in prod (the same value for the gateway and the "
                         "delivery service): the default is public")
    if len(secret) < _MIN_SECRET_CHARS:
        raise ValueError(f"LIKENESS_IMAGE_LINK_SECRET must have at least {_MIN_SECRET_CHARS} characters")
