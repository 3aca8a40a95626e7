"""A webhook receiver as a program of ours would run one: real HTTP on a real socket, signatures checked twice.

    with WebhookReceiver() as receiver:
        receiver.secret = "whsec_..."          # what POST /delivery/webhooks showed once
        url = receiver.url_for("orders")       # http://127.0.0.1:PORT/hooks/orders

Every POST to `/hooks/<name>` is checked against the Standard Webhooks specification two independent ways:
the standardwebhooks library's `Webhook(secret).verify`, and by recomputing `v1,` + base64(HMAC-SHA256(
base64-decoded secret, "<webhook-id>.<webhook-timestamp>.<body>")) against each signature in the header.
A request that fails either is answered 401, as a receiver must; one that passes, 200 (or a scripted
reply: `Answer(500)`, `Answer(400)`, `Answer(429, retry_after=2)`, `Hang(seconds)`, one per request).
`requests` records each: name, the three headers, the body, both verdicts and the status answered;
`delivered()` the verified ones answered 2xx.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from dataclasses import dataclass
from typing import Any

from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.fakes.threaded_server import Hang, ScriptedServer

__all__ = ["Answer", "Hang", "WebhookReceiver", "hmac_verdict"]


@dataclass(frozen=True)
class Answer:
    status: int
    retry_after: int | None = None


def hmac_verdict(secret: str, message_id: str, timestamp: str, body: bytes, signature_header: str) -> bool:
    """The specification's algorithm written out: does any `v1,` signature match?"""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    expected = base64.b64encode(hmac.new(key, f"{message_id}.{timestamp}.".encode() + body, hashlib.sha256)
                                .digest()).decode()
    return any(hmac.compare_digest(f"v1,{expected}", candidate) for candidate in signature_header.split(" "))


class WebhookReceiver(ScriptedServer[Answer | Hang]):
    name = "webhook-receiver"

    def __init__(self, replies: list[Answer | Hang] | None = None, *, host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__(replies or [], host=host, port=port)
        self.secret: str | None = None

    def url_for(self, name: str) -> str:
        return f"{self.base}/hooks/{name}"

    def delivered(self, name: str | None = None) -> list[dict[str, Any]]:
        return [r for r in self.requests if r["library_ok"] and r["hmac_ok"] and 200 <= r["status"] < 300
                and (name is None or r["name"] == name)]

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/hooks/{name}", self._receive, methods=["POST"])])

    async def _receive(self, request: Request) -> Response:
        body = await request.body()
        headers = {k: request.headers.get(k, "") for k in ("webhook-id", "webhook-timestamp", "webhook-signature")}
        library_ok = hmac_ok = False
        if self.secret is not None:
            try:
                Webhook(self.secret).verify(body, dict(request.headers))
                library_ok = True
            except WebhookVerificationError:
                library_ok = False
            hmac_ok = hmac_verdict(self.secret, headers["webhook-id"], headers["webhook-timestamp"], body,
                                   headers["webhook-signature"])
        entry: dict[str, Any] = {"name": request.path_params["name"], **headers, "body": json.loads(body or b"null"),
                                 "raw": body.decode(), "library_ok": library_ok, "hmac_ok": hmac_ok}
        if not (library_ok and hmac_ok):
            entry["status"] = 401
            self.log(entry)
            return JSONResponse({"error": "signature not valid"}, status_code=401)
        with self.lock:
            scripted = self.replies.popleft() if self.replies else None
        if isinstance(scripted, Hang):
            # Logged before the wait: a killed sender leaves its request here, unanswered.
            entry["status"] = 0
            self.log(entry)
            await self.hang(request, scripted.seconds)
            return Response(status_code=504)
        status = scripted.status if scripted is not None else 200
        entry["status"] = status
        self.log(entry)
        headers_out = {"Retry-After": str(scripted.retry_after)} if scripted and scripted.retry_after else {}
        return JSONResponse({"received": status < 300}, status_code=status, headers=headers_out)
