"""The fake's prompt worker: one prompt at a time, sending the frames a real ComfyUI sends (§6)."""

from __future__ import annotations

import asyncio
import io
import json
import time
from typing import Any

from PIL import Image

from tests.fakes.comfyui.graph import SAMPLER_CLASSES, execution_order
from tests.fakes.comfyui.state import FakeState, Item

__all__ = ["run_worker"]


def _preview_jpeg() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (32, 32), (90, 120, 150)).save(out, format="JPEG")
    return out.getvalue()


PREVIEW = _preview_jpeg()


def _ms() -> int:
    return int(time.time() * 1000)


async def run_worker(state: FakeState) -> None:
    """Take pending prompts by number, forever."""
    while True:
        await state.wakeup.wait()
        state.wakeup.clear()
        while state.pending:
            item = min(state.pending, key=lambda i: i.number)
            state.pending.remove(item)
            state.running = item
            await state.broadcast(state.status())
            try:
                await _Run(state, item).execute()
            finally:
                state.running, state.current_node = None, None


class _Run:
    def __init__(self, state: FakeState, item: Item) -> None:
        self.state, self.item = state, item
        self.pid, self.cid = item.prompt_id, item.extra_data.get("client_id")
        self.messages: list[list[Any]] = []
        self.outputs: dict[str, Any] = {}
        self.executed: list[str] = []
        self.progress: dict[str, dict[str, Any]] = {}
        self.sent: dict[str, bytes] = {}

    async def emit(self, kind: str, data: dict[str, Any], *, broadcast: bool = False, record: bool = False) -> None:
        if record:
            self.messages.append([kind, data])
        # Without a client_id only broadcast-type frames reach anyone (§6.6).
        if self.cid:
            await self.state.to_client(self.cid, {"type": kind, "data": data})
        elif broadcast:
            await self.state.broadcast({"type": kind, "data": data})

    async def execute(self) -> None:
        state, item, scenario = self.state, self.item, self.state.scenario
        await self.emit("execution_start", {"prompt_id": self.pid, "timestamp": _ms()}, record=True)
        key = json.dumps(item.graph, sort_keys=True)
        order = execution_order(item.graph, item.outputs)
        cached = state.cache is not None and state.cache[0] == key
        # SaveImageWebsocket's IS_CHANGED is "always": it runs again even in a cached graph (§3.2).
        rerun = [n for n in order if item.graph[n]["class_type"] == "SaveImageWebsocket"] if cached else order
        await self.emit("execution_cached", {"nodes": [n for n in order if n not in rerun], "prompt_id": self.pid,
                                             "timestamp": _ms()}, record=True)
        if cached:
            # Replayed with the previous run's files (§6.2), even when those files are gone (§7.7).
            for node_id in item.outputs:
                if node_id in state.cache[1]:
                    self.outputs[node_id] = state.cache[1][node_id]
                    await self._executed(node_id)
        input_bytes = state.input_bytes(item.graph)
        for node_id in rerun:
            node = item.graph[node_id]
            if self._interrupted():
                return await self._stop("execution_interrupted", node_id, node, {})
            await self._progress_state(node_id, 0.0, 1.0, "running")
            await self.emit("executing", {"node": node_id, "display_node": node_id, "prompt_id": self.pid})
            state.current_node = node_id
            if scenario.fail_at_node in (node_id, node["class_type"]):
                return await self._error(node_id, node, scenario.fail_type, scenario.fail_message)
            if node["class_type"] in SAMPLER_CLASSES:
                if not await self._sample(node_id, node):
                    return await self._stop("execution_interrupted", node_id, node, {})
            elif scenario.node_delay_s:
                await asyncio.sleep(scenario.node_delay_s)
            if node["class_type"] == "SaveImageWebsocket":
                if cached and node_id in state.cache[2]:
                    image = state.cache[2][node_id]  # upstream is cached: the very same picture goes out again
                else:
                    try:
                        image = scenario.image_for(item.graph, input_bytes)
                    except Exception as exc:  # noqa: BLE001
                        return await self._error(node_id, node, type(exc).__name__, str(exc))
                self.sent[node_id] = image
                await self._send_image(node_id, image)
            elif node["class_type"] in ("SaveImage", "PreviewImage"):
                try:
                    image = scenario.image_for(item.graph, input_bytes)
                except Exception as exc:  # noqa: BLE001 - a policy failure shows up as the node failing
                    return await self._error(node_id, node, type(exc).__name__, str(exc))
                self.outputs[node_id] = {"images": [state.save_output(node, image)]}
                await self._executed(node_id)
            self.executed.append(node_id)
            await self._progress_state(node_id, 1.0, 1.0, "finished")
        state.cache = (key, dict(self.outputs), dict(self.sent))
        await self._finish("success")

    async def _sample(self, node_id: str, node: dict[str, Any]) -> bool:
        scenario, steps = self.state.scenario, node["inputs"].get("steps")
        steps = steps if isinstance(steps, int) and steps > 0 else 4
        for step in range(1, steps + 1):
            if self._interrupted():
                return False
            if scenario.step_delay_s:
                await asyncio.sleep(scenario.step_delay_s)
            await self._progress_state(node_id, step, steps, "running")
            meta = {"node_id": node_id, "prompt_id": self.pid, "display_node_id": node_id, "parent_node_id": None,
                    "real_node_id": node_id, "image_type": "image/jpeg"}
            conn = self.state.sockets.get(self.cid) if self.cid else None
            legacy = conn is None or not conn.feature_flags
            # Metadata previews come before `progress`, legacy ones after it (§3.2).
            if scenario.previews and not legacy:
                await self.state.preview(self.cid, PREVIEW, meta)
            await self.emit("progress", {"value": step, "max": steps, "prompt_id": self.pid, "node": node_id},
                            broadcast=True)
            if scenario.previews and legacy:
                await self.state.preview(self.cid, PREVIEW, meta)
            if scenario.drop_socket_at_step == step and self.cid:
                scenario.drop_socket_at_step = None
                if scenario.reconnect_hold_s:
                    self.state.held.add(self.cid)
                await self.state.drop(self.cid)
        return True

    async def _send_image(self, node_id: str, image: bytes) -> None:
        """SaveImageWebsocket: `progress` 0..n-1 of n and the PNG as a binary frame per image; no file, no
        `executed`, no history output (§3.1, §6.4)."""
        await self._progress_state(node_id, 0, 1, "running")
        await self.emit("progress", {"value": 0, "max": 1, "prompt_id": self.pid, "node": node_id}, broadcast=True)
        meta = {"node_id": node_id, "prompt_id": self.pid, "display_node_id": node_id, "parent_node_id": None,
                "real_node_id": node_id, "image_type": "image/png"}
        if self.state.scenario.drop_socket_before_image and self.cid:
            # The network drops just then: the picture is sent into nothing, as on the real server.
            self.state.scenario.drop_socket_before_image = False
            await self.state.drop(self.cid)
        await self.state.preview(self.cid, image, meta)

    async def _progress_state(self, node_id: str, value: float, maximum: float, status: str) -> None:
        self.progress[node_id] = {"value": value, "max": maximum, "state": status, "node_id": node_id,
                                  "prompt_id": self.pid, "display_node_id": node_id, "parent_node_id": None,
                                  "real_node_id": node_id}
        await self.emit("progress_state", {"prompt_id": self.pid, "nodes": dict(self.progress)}, broadcast=True)

    async def _executed(self, node_id: str) -> None:
        await self.emit("executed", {"node": node_id, "display_node": node_id, "output": self.outputs[node_id],
                                     "prompt_id": self.pid})

    def _interrupted(self) -> bool:
        if self.state.interrupt_id == self.pid:
            self.state.interrupt_id = None
            return True
        return False

    async def _error(self, node_id: str, node: dict[str, Any], exc_type: str, message: str) -> None:
        extra = {"exception_message": f"{message}\n", "exception_type": exc_type,
                 "traceback": ['  File "<comfyui>/execution.py", line 496, in execute\n'],
                 "current_inputs": {k: [v] for k, v in node["inputs"].items()},
                 "current_outputs": list(self.item.outputs)}
        await self._stop("execution_error", node_id, node, extra)

    async def _stop(self, kind: str, node_id: str, node: dict[str, Any], extra: dict[str, Any]) -> None:
        data = {"prompt_id": self.pid, "node_id": node_id, "node_type": node["class_type"],
                "executed": list(self.executed), **extra, "timestamp": _ms()}
        await self.emit(kind, data, broadcast=kind == "execution_interrupted", record=True)
        await self._finish("error")

    async def _finish(self, status: str) -> None:
        if status == "success":
            await self.emit("execution_success", {"prompt_id": self.pid, "timestamp": _ms()}, record=True)
        # History first, then status, then `executing: null` (§6.8).
        self.state.history[self.pid] = {
            "prompt": self.item.entry(), "outputs": self.outputs,
            "status": {"status_str": status, "completed": status == "success", "messages": self.messages},
            "meta": {n: {"node_id": n, "display_node": n, "parent_node": None, "real_node_id": n}
                     for n in self.outputs},
        }
        self.state.running, self.state.current_node = None, None
        await self.state.broadcast(self.state.status())
        await self.emit("executing", {"node": None, "prompt_id": self.pid})
