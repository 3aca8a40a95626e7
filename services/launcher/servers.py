"""The embedded servers `likeness up` started, watched: one that dies is started again, with back-off."""

from __future__ import annotations

import logging
import time

from services.launcher.embedded import EmbeddedError, EmbeddedNats, EmbeddedPostgres

__all__ = ["WatchedServer"]

log = logging.getLogger("likeness")

# An embedded server that died is started again at once, then after 1, 2, 4 ... 30 s while it fails to start.
_FIRST_SERVER_RESTART_S = 1.0
_MAX_SERVER_RESTART_S = 30.0


class WatchedServer:
    """An embedded server `up` started (NATS, Postgres): started again, with back-off, whenever it dies."""

    def __init__(self, name: str, server: EmbeddedNats | EmbeddedPostgres) -> None:
        self.name, self.server = name, server
        self.delay = _FIRST_SERVER_RESTART_S
        self.next_try = 0.0
        self.down_since: float | None = None

    def supervise(self) -> bool:
        """Restart the server if it died; True when it was (its pid changed)."""
        if self.server.alive():
            return False
        now = time.monotonic()
        if self.down_since is None:
            self.down_since = now
            log.warning("embedded %s (pid %s) is not running; starting it again (the services reconnect)",
                        self.name, self.server.pid)
        if now < self.next_try:
            return False
        try:
            self.server.restart()
        except EmbeddedError as err:
            log.error("embedded %s did not start again (%s); next try in %.0fs", self.name, err, self.delay)
            self.next_try, self.delay = now + self.delay, min(self.delay * 2, _MAX_SERVER_RESTART_S)
            return False
        log.info("embedded %s running again (pid %s) after %.1fs down", self.name, self.server.pid,
                 time.monotonic() - self.down_since)
        self.delay, self.next_try, self.down_since = _FIRST_SERVER_RESTART_S, 0.0, None
        return True
