"""Process logging: one format per process, message context on every line, no colours; the gateway access log."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import httpx
import pytest
from fastapi import FastAPI, Request

from services.gateway.access_log import AccessLogMiddleware, user_hash
from services.runtime.logs import configure_logging, log_context


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    named = {name: (logging.getLogger(name).handlers[:], logging.getLogger(name).level,
                    logging.getLogger(name).propagate) for name in ("faststream", "uvicorn.error", "httpx")}
    yield
    root.handlers[:] = saved[0]
    root.setLevel(saved[1])
    for name, (handlers, level, propagate) in named.items():
        logger = logging.getLogger(name)
        logger.handlers[:], logger.propagate = handlers, propagate
        logger.setLevel(level)


def test_json_lines_carry_service_logger_context_and_exception(restore_logging: None) -> None:
    out = io.StringIO()
    configure_logging("planner", "json", stream=out)
    with log_context(correlation_id="chain-1", trace_id=None, message_type="chain.request"):
        logging.getLogger("services.planner.chain_writer").info("planned %d step(s)", 3)
        try:
            raise ValueError("bad")
        except ValueError:
            logging.getLogger("x").exception("handler failed")
    logging.getLogger("x").warning("outside")
    first, second, third = (json.loads(line) for line in out.getvalue().splitlines())
    assert first["service"] == "planner" and first["level"] == "INFO" and first["message"] == "planned 3 step(s)"
    assert first["logger"] == "services.planner.chain_writer"
    assert first["correlation_id"] == "chain-1" and first["message_type"] == "chain.request"
    assert "trace_id" not in first  # None fields are left out
    assert second["exception"].startswith("Traceback") and "ValueError: bad" in second["exception"]
    assert "correlation_id" not in third


def test_library_lines_take_the_one_format_without_colours(restore_logging: None) -> None:
    # FastStream installs a handler that colours unconditionally; after set-up its records come through ours.
    import faststream  # noqa: F401  (its module-level logger and handler exist once imported)

    out = io.StringIO()
    configure_logging("renderer", "text", stream=out)
    logging.getLogger("faststream").warning("subscriber stopped")
    logging.getLogger("faststream").info("callback for Task-12 is being executed...")
    logging.getLogger("uvicorn.error").warning("port busy")
    lines = out.getvalue().splitlines()
    assert len(lines) == 2 and "\x1b[" not in out.getvalue()
    assert lines[0].endswith("WARNING faststream: subscriber stopped")
    assert not logging.getLogger("faststream").handlers


def test_text_lines_name_the_context(restore_logging: None) -> None:
    out = io.StringIO()
    configure_logging("chat", "text", stream=out)
    with log_context(correlation_id="conversation-7"):
        logging.getLogger("services.chat").info("reply sent")
    assert out.getvalue().rstrip().endswith("INFO services.chat: reply sent [correlation_id=conversation-7]")


async def test_the_access_log_names_the_route_template_status_and_a_user_hash(
        caplog: pytest.LogCaptureFixture) -> None:
    app = FastAPI()

    @app.get("/chains/{chain_id}")
    async def chain(chain_id: str, request: Request) -> dict:
        request.state.user = type("User", (), {"id": "u-alice"})()
        return {"id": chain_id}

    @app.get("/healthz")
    async def healthz() -> dict:
        return {}

    app.add_middleware(AccessLogMiddleware)
    transport = httpx.ASGITransport(app=app)
    caplog.set_level(logging.INFO, logger="likeness.gateway.access")
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        await client.get("/chains/c-42?token=secret", headers={"Authorization": "Bearer sk-secret"})
        await client.get("/nowhere", headers={"Cookie": "likeness_session=cookie-secret"})
        await client.get("/healthz")
    records = [r for r in caplog.records if r.name == "likeness.gateway.access"]
    assert [r.http for r in records] == [  # type: ignore[attr-defined]
        {"method": "GET", "route": "/chains/{chain_id}", "status": 200, "duration_ms": records[0].http["duration_ms"],
         "user": user_hash("u-alice")},
        {"method": "GET", "route": "(no route)", "status": 404, "duration_ms": records[1].http["duration_ms"],
         "user": "-"},
    ]  # the probe is logged at DEBUG only
    text = caplog.text
    assert "c-42" not in text and "secret" not in text and "u-alice" not in text
