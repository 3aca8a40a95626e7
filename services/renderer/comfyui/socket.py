"""The `/ws?clientId=...` socket (PROTOCOL.md §3): open, feature negotiation, receive, reopen with the same id."""

from __future__ import annotations

import asyncio
import contextlib
from urllib.parse import quote, urlsplit, urlunsplit

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from services.renderer.comfyui.protocol import FEATURE_FLAGS, parse_text
from services.renderer.errors import BackendUnreachable

__all__ = ["ComfySocket", "SocketClosed", "ws_url"]

SocketClosed = ConnectionClosed

# Full-size PNG previews (SaveImageWebsocket) are far over websockets' 1 MiB default.
MAX_FRAME_BYTES = 64 * 1024 * 1024


def ws_url(base_url: str, client_id: str) -> str:
    """http(s)://host[:port][/prefix] -> ws(s)://host[:port][/prefix]/ws?clientId=<id>."""
    parts = urlsplit(base_url)
    scheme = "wss" if parts.scheme == "https" else "ws"
    return urlunsplit((scheme, parts.netloc, parts.path.rstrip("/") + "/ws", f"clientId={quote(client_id)}", ""))


class ComfySocket:
    """One client id's socket; `reopen` closes the old one first: an overlapping close silences the new one (§6.7)."""

    def __init__(self, base_url: str, client_id: str, *, connect_timeout_s: float) -> None:
        self.base_url = base_url
        self.client_id = client_id
        self.sid: str | None = None
        self._timeout = connect_timeout_s
        self._ws: ClientConnection | None = None

    async def open(self) -> None:
        """Connect, send feature_flags as the first message, and wait for the `status` frame with our sid."""
        try:
            self._ws = await connect(ws_url(self.base_url, self.client_id), open_timeout=self._timeout,
                                     close_timeout=2.0, max_size=MAX_FRAME_BYTES, proxy=None)
            await self._ws.send(FEATURE_FLAGS)
            first = await asyncio.wait_for(self._ws.recv(), self._timeout)
        # AssertionError: websockets asserts (connection.send_context) instead of raising when the peer
        # closes the connection during the opening handshake; for us that is a backend that is not there.
        except (OSError, TimeoutError, InvalidHandshake, InvalidURI, ConnectionClosed, AssertionError) as exc:
            await self.close()
            raise BackendUnreachable(f"websocket to {self.base_url} failed: {type(exc).__name__}: {exc}",
                                     backend=self.base_url) from exc
        frame = parse_text(first) if isinstance(first, str) else None
        if frame is not None and frame.type == "status":
            self.sid = frame.data.get("sid")

    async def recv(self, timeout: float) -> str | bytes | None:
        """The next frame, or None after `timeout` seconds of silence; raises `SocketClosed`."""
        assert self._ws is not None, "open() first"
        try:
            return await asyncio.wait_for(self._ws.recv(), max(timeout, 0.001))
        except TimeoutError:
            return None

    async def reopen(self) -> None:
        await self.close()
        await self.open()

    async def close(self) -> None:
        ws, self._ws = self._ws, None
        if ws is not None:
            with contextlib.suppress(Exception):
                await ws.close()
