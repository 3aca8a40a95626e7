"""The gateway's FastAPI app (`create_app`) and the service process around it (`build_runtime`)."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse, HTMLResponse
from fastapi.staticfiles import StaticFiles
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.gateway.access_log import AccessLogMiddleware
from services.gateway.api_docs import install_api_docs
from services.gateway.auth import SESSION_COOKIE
from services.gateway.context import Gateway
from services.gateway.deps import UserDep
from services.gateway.errors import install_error_handlers
from services.gateway.http_middleware import HttpMiddleware
from services.gateway.metrics import instrument_http
from services.gateway.openapi import install_openapi
from services.gateway.routers import auth, batches, cards, catalog, chains, characters, chat, conversations, jobs, me
from services.gateway.routers.asyncapi import router as asyncapi_router
from services.gateway.routers.bots import router as bots_router
from services.gateway.routers.delivery import router as delivery_router
from services.gateway.routers.voice import router as voice_router
from services.gateway.settings import GatewaySettings
from services.gateway.text_guard import TextGuardMiddleware
from services.runtime import tracing
from services.runtime.runner import Runtime

__all__ = ["STATIC", "SessionCookieMiddleware", "build_runtime", "create_app"]

STATIC = Path(__file__).resolve().parent / "static"
_DESCRIPTION = """Chat with AI characters and get pictures of them that keep their face.

Every picture is a **chain** of small edits of the character's reference photo, each checked for face
similarity. `POST /chat/generate-image` answers at once with a job id (= the chain id); follow it with
`GET /chains/{id}/events` (Server-Sent Events, resumable with `Last-Event-ID`), poll `GET /chat/job/{id}`,
or block on `GET /wait/{id}`.

**Auth**: programs send `Authorization: Bearer <api key>` (`POST /auth/signup` makes one); browsers get
an anonymous session cookie, limited in pictures until they log in (`POST /auth/login`). Everything you
did not make is a 404 to you. Errors are JSON: `{"error": code, "detail": what was wrong and how to fix it}`.

**Bots** speak for many people: `POST /request {message, nick}`, `GET /job/{id}`, `POST /batch`. With an
API key, the `X-Likeness-Nick: <nick>` header on any endpoint acts for that person (their own pictures,
limits, gallery and reference photos); the key itself sees the jobs of all its nicks.
"""


class SessionCookieMiddleware(HttpMiddleware):
    """Sets the session cookie a request asked for (`request.state.set_session`), streaming responses included."""

    def __init__(self, app: ASGIApp, *, secure: bool, max_age_s: int) -> None:
        super().__init__(app)
        self.secure, self.max_age_s = secure, max_age_s

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_with_cookie(message: Message) -> None:
            if message["type"] == "http.response.start":
                value = (scope.get("state") or {}).get("set_session")
                if value is not None:
                    MutableHeaders(scope=message).append("set-cookie", self._cookie(value))
            await send(message)

        await self.app(scope, receive, send_with_cookie)

    def _cookie(self, value: str) -> str:
        max_age = self.max_age_s if value else 0
        cookie = f"{SESSION_COOKIE}={value}; Path=/; Max-Age={max_age}; HttpOnly; SameSite=Lax"
        return cookie + "; Secure" if self.secure else cookie


def create_app(settings: GatewaySettings) -> FastAPI:
    """The HTTP API and the web page; `app.state.gateway` is set by `build_runtime`."""
    app = FastAPI(title="Likeness", version="1", description=_DESCRIPTION, docs_url=None, redoc_url=None)
    install_error_handlers(app)
    install_openapi(app)
    install_api_docs(app)
    app.add_middleware(SessionCookieMiddleware, secure=settings.cookie_secure,
                       max_age_s=settings.gateway_session_max_age_s)
    app.add_middleware(TextGuardMiddleware)
    # Added last, so it runs first and times (and logs) everything, errors included.
    app.add_middleware(AccessLogMiddleware)
    for module in (auth, characters, cards, chat, conversations, jobs, chains, batches, me, catalog):
        app.include_router(module.router)
    app.include_router(asyncapi_router)
    app.include_router(bots_router)
    app.include_router(delivery_router)
    app.include_router(voice_router)

    @app.get("/", include_in_schema=False, response_model=None)
    async def index(_: UserDep) -> FileResponse | HTMLResponse:
        # The page comes with its session: without one, its first calls (sent in parallel) would each make
        # an anonymous user of their own, and the character made by one would be a 404 to the next.
        page = STATIC / "index.html"
        if page.is_file():
            return FileResponse(page, headers={"Cache-Control": "no-cache"})
        return HTMLResponse("<!doctype html><title>Likeness</title><p>The web page is not installed; the API is at "
                            '<a href="/docs">/docs</a>.</p>')

    STATIC.mkdir(exist_ok=True)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    # Outermost, so a request's rate, errors and duration include every middleware's share.
    instrument_http(app)
    return app


def build_runtime(settings: GatewaySettings | None = None) -> Runtime:
    """The gateway service: its app on the runtime's HTTP server, NATS, Postgres and the blob store."""
    settings = settings or GatewaySettings()
    app = create_app(settings)
    runtime = Runtime(settings, database=True, relay=False, blobs=True, app=app)
    # After the runtime set tracing up: a server span per request, parent of the commands it sends.
    tracing.instrument_app(app, settings.service_name)
    gateway = Gateway(settings, runtime)
    app.state.gateway = gateway
    runtime.on_startup(gateway.start)
    return runtime
