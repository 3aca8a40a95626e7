"""Webhook and Google Chat URLs the service may call, so a user cannot aim it at our own network.

A URL must be http(s) with a host name and no user:password part; every address its host resolves to
must be globally routable (no loopback, private, link-local, carrier-grade NAT, multicast or reserved
range) unless `LIKENESS_WEBHOOK_ALLOW_PRIVATE=true` (development). The check runs when a URL is
registered and again before every send, and the send then connects to the very address that was
checked (`Target`: Host header and TLS server name kept), so a DNS answer that changes between the
check and the connection (DNS rebinding) cannot slip through.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

__all__ = ["Target", "UrlRefused", "check_syntax", "resolve", "vet"]

_MAX_URL_CHARS = 2048


class UrlRefused(Exception):
    """A destination URL the service will not call; `code` for the API, `temporary` when DNS may heal."""

    def __init__(self, detail: str, *, code: str = "url_not_allowed", temporary: bool = False) -> None:
        super().__init__(detail)
        self.code, self.temporary = code, temporary


@dataclass(frozen=True)
class Target:
    """Where to connect: the URL with its host replaced by the checked address, and the original host."""

    url: str
    host_header: str
    server_name: str | None


def check_syntax(url: str) -> tuple[str, str, int]:
    """(scheme, host, port) of an acceptable URL; UrlRefused (code `invalid_url`) naming what is wrong."""
    if len(url) > _MAX_URL_CHARS:
        raise UrlRefused(f"the URL is longer than {_MAX_URL_CHARS} characters", code="invalid_url")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise UrlRefused(f"not a URL: {exc}", code="invalid_url") from None
    if parts.scheme not in ("http", "https"):
        raise UrlRefused(f"only http:// and https:// URLs are allowed, not {parts.scheme or 'no scheme'}",
                         code="invalid_url")
    if not parts.hostname:
        raise UrlRefused("the URL has no host", code="invalid_url")
    if parts.username is not None or parts.password is not None:
        raise UrlRefused("the URL may not carry a user name or password; put a token in the path or query",
                         code="invalid_url")
    return parts.scheme, parts.hostname, port or (443 if parts.scheme == "https" else 80)


def _refusal(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    mapped = getattr(address, "ipv4_mapped", None)
    if mapped is not None:
        address = mapped
    if address.is_loopback:
        return "a loopback address"
    if address.is_link_local:
        return "a link-local address (cloud metadata services live there)"
    if address.is_private:
        return "a private-network address"
    if address.is_multicast or not address.is_global:
        return "an address that is not on the public internet"
    return None


async def resolve(host: str, port: int, timeout_s: float) -> list[str]:
    """The addresses `host` resolves to (an IP literal resolves to itself)."""
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(timeout_s):
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, TimeoutError, UnicodeError) as exc:
        raise UrlRefused(f"the host {host!r} does not resolve: {exc}", code="url_unresolvable",
                         temporary=True) from None
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


async def vet(url: str, *, allow_private: bool, timeout_s: float) -> Target:
    """The checked connection target of `url`, or UrlRefused."""
    scheme, host, port = check_syntax(url)
    addresses = await resolve(host, port, timeout_s)
    if not addresses:
        raise UrlRefused(f"the host {host!r} has no address", code="url_unresolvable", temporary=True)
    if not allow_private:
        for text in addresses:
            why = _refusal(ipaddress.ip_address(text.split("%")[0]))
            if why is not None:
                raise UrlRefused(f"{host} resolves to {text}, {why}: webhooks must reach a public address "
                                 "(LIKENESS_WEBHOOK_ALLOW_PRIVATE=true allows it in development)")
    parts = urlsplit(url)
    pinned = addresses[0]
    netloc = f"[{pinned}]" if ":" in pinned else pinned
    if parts.port is not None:
        netloc += f":{parts.port}"
    return Target(url=urlunsplit((scheme, netloc, parts.path or "/", parts.query, "")),
                  host_header=parts.netloc, server_name=host if scheme == "https" else None)
