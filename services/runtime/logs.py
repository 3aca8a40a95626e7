"""One logging set-up per process: one handler, one format, and the context of the message being handled.

`LIKENESS_LOG_FORMAT=text` (default) writes `time LEVEL logger: message [chain=... trace=...]`;
`json` writes one JSON object a line with `time`, `level`, `service`, `logger`, `message`, and where known
`correlation_id` (the chain or conversation), `message_type`, `trace_id`, the access log's `http` fields,
and `exception` when there is one. Nothing is coloured: FastStream's and uvicorn's own handlers (which colour unconditionally, or
when they think they are on a terminal) are removed, and their records go through ours.

What a message handler logs carries that message's context: the bus sets it with `log_context` around
each delivery, and a filter copies it into every record.
"""

from __future__ import annotations

import json
import logging
import sys
import traceback
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal, TextIO

__all__ = ["LogFormat", "configure_logging", "log_context", "log_file"]

LogFormat = Literal["text", "json"]

_CONTEXT: ContextVar[Mapping[str, str]] = ContextVar("likeness_log_context", default={})
# Libraries that install handlers of their own; their records are sent to ours instead.
_LIBRARY_LOGGERS = ("faststream", "faststream.access", "uvicorn", "uvicorn.error", "uvicorn.access")
# FastStream's INFO lines are per-task bookkeeping ("callback for Task-12 is being executed..."):
# its warnings and errors are what an operator needs from it.
_QUIET_AT_INFO = ("faststream", "faststream.access", "uvicorn.access", "alembic", "httpx", "httpx2")


@contextmanager
def log_context(**fields: str | None) -> Iterator[None]:
    """Within the block, every record logged by this task carries these fields (None ones are left out)."""
    merged = {**_CONTEXT.get(), **{key: value for key, value in fields.items() if value}}
    token = _CONTEXT.set(merged)
    try:
        yield
    finally:
        _CONTEXT.reset(token)


class _ContextFilter(logging.Filter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def filter(self, record: logging.LogRecord) -> bool:
        record.service = self.service
        record.context = _CONTEXT.get()
        return True


class _TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        context: Mapping[str, str] = getattr(record, "context", {})
        if context:
            head, newline, rest = line.partition("\n")
            line = head + " [" + " ".join(f"{key}={value}" for key, value in context.items()) + "]" + newline + rest
        return line


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "service": getattr(record, "service", ""),
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update(getattr(record, "context", {}))
        # Structured fields a logger passes as `extra={"http": {...}}` (the gateway's access log).
        if isinstance(getattr(record, "http", None), dict):
            entry["http"] = record.http
        if record.exc_info:
            entry["exception"] = "".join(traceback.format_exception(*record.exc_info)).rstrip()
        return json.dumps(entry, ensure_ascii=False, default=str)


def configure_logging(service: str, log_format: LogFormat = "text", level: str = "INFO",
                      stream: TextIO | None = None) -> logging.Handler:
    """Make the root logger's one handler ours; call once, first thing in a process. Returns the handler."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(_JsonFormatter() if log_format == "json" else _TextFormatter())
    handler.addFilter(_ContextFilter(service))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    for name in _LIBRARY_LOGGERS:
        library = logging.getLogger(name)
        for old in list(library.handlers):
            library.removeHandler(old)
        library.propagate = True
        library.setLevel(logging.NOTSET)
    for name in _QUIET_AT_INFO:
        logging.getLogger(name).setLevel(logging.WARNING)
    logging.captureWarnings(True)
    return handler


def log_file(path: Path) -> logging.Handler:
    """A handler that writes to `path` in the format `configure_logging` chose for this process."""
    handler = logging.FileHandler(path)
    like = logging.getLogger().handlers[:1]
    if like:
        handler.setFormatter(like[0].formatter)
        for check in like[0].filters:
            handler.addFilter(check)
    return handler
