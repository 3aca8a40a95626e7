"""The system `tests/integration/test_golden.py` runs `likeness golden` against: the planner in this process,
the renderer and facecheck started on demand (a renderer with or without a templates folder), the fake ComfyUI
whose output is the input through the graph's `ImageBlur` nodes, and the `likeness` command as a subprocess.
"""

from __future__ import annotations

import asyncio
import io
import json
import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import nats
from PIL import Image, ImageFilter

from contracts import REGISTRY, GoldenChainRecorded
from contracts.streams import golden_stream
from contracts.subjects import COMMANDS_STREAM
from services.facecheck.loading import load_encoder
from services.facecheck.service import build_runtime as facecheck_runtime
from services.facecheck.settings import FacecheckSettings
from services.renderer.service import build_runtime as renderer_runtime
from services.renderer.settings import RendererSettings
from services.renderer.templates import BUILTIN_DIR
from services.runtime.database import create_engine
from services.runtime.eventstore import EventStore
from services.runtime.settings import RuntimeSettings
from tests.conftest import REPO, Backends, service_env
from tests.fakes.comfyui import same_as_input
from tests.runtimes import running

__all__ = ["Done", "System", "blurring_templates", "pins", "stream", "with_blur_nodes"]

BLUR_RADIUS = 20


def with_blur_nodes(graph: dict, input_bytes: bytes | None) -> bytes:
    """The fake ComfyUI's output: the input (as the default policy has it) through every ImageBlur node."""
    out = same_as_input(graph, input_bytes)
    blurs = [node for node in graph.values() if node.get("class_type") == "ImageBlur"]
    if not blurs:
        return out
    with Image.open(io.BytesIO(out)) as opened:
        image = opened.convert("RGB")
    for node in blurs:
        image = image.filter(ImageFilter.GaussianBlur(node["inputs"]["blur_radius"]))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def blurring_templates(folder: Path, names: set[str], suffix: str = "") -> Path:
    """Copies of the built-in templates `names` (named `<name><suffix>`) with an ImageBlur between the decoded
    picture and the output."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        graph = json.loads((BUILTIN_DIR / f"{name}.json").read_text())
        (output,) = [node for node in graph.values() if node["_meta"]["title"] == "output"]
        graph["blur"] = {"class_type": "ImageBlur", "_meta": {"title": "Image Blur"},
                         "inputs": {"image": output["inputs"]["images"], "blur_radius": BLUR_RADIUS, "sigma": 6.0}}
        output["inputs"]["images"] = ["blur", 0]
        (folder / f"{name}{suffix}.json").write_text(json.dumps(graph, indent=2))
    return folder


@dataclass(frozen=True)
class Done:
    """What a `likeness` command did."""

    returncode: int
    stdout: str
    stderr: str


class System:
    """The test backends, the fake ComfyUI and the services' settings; renderer and facecheck started on demand."""

    def __init__(self, backends: Backends, comfy_url: str) -> None:
        self.backends = backends
        self.comfy_url = comfy_url
        self.common = dict(nats_url=backends.nats_url, database_url=backends.database_url, environment="test",
                           ack_wait_s=10.0, retry_delay_s=0.2, max_deliver=3, graceful_timeout_s=5.0)
        self.encoder = load_encoder(FacecheckSettings(**self.common))  # dlib, loaded once for every facecheck

    @asynccontextmanager
    async def services(self, *, renderer: bool = True, facecheck: bool = True,
                       templates_dir: Path | None = None) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            if renderer:
                await stack.enter_async_context(running(renderer_runtime(RendererSettings(
                    **self.common, comfyui_urls=(self.comfy_url,), templates_dir=templates_dir))))
            if facecheck:
                await stack.enter_async_context(running(facecheck_runtime(
                    FacecheckSettings(**self.common), encoder_factory=lambda _settings: self.encoder)))
            yield

    async def drained(self, timeout_s: float = 60.0) -> None:
        """Until the renderer's and facecheck's work queues hold no command, delivered or not."""
        nc = await nats.connect(self.backends.nats_url, connect_timeout=5)
        try:
            js = nc.jetstream(timeout=5)
            async with asyncio.timeout(timeout_s):
                while True:
                    infos = [await js.consumer_info(COMMANDS_STREAM, name) for name in ("renderer", "facecheck")]
                    if all(info.num_pending == 0 and info.num_ack_pending == 0 for info in infos):
                        return
                    await asyncio.sleep(0.2)
        finally:
            await nc.drain()

    async def likeness(self, *args: str, timeout_s: float = 180.0) -> Done:
        """The `likeness` command against these backends, in a subprocess (this loop keeps serving)."""
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "services.launcher.cli", *args, cwd=REPO, env=service_env(self.backends),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        stdout, stderr = await asyncio.wait_for(proc.communicate(), timeout_s)
        assert proc.returncode is not None
        return Done(proc.returncode, stdout.decode(), stderr.decode())


async def stream(system: System, stream_id: str) -> list:
    """A stream's messages, straight from the log."""
    engine = create_engine(RuntimeSettings(**system.common))
    try:
        return [r.envelope.open(REGISTRY) for r in await EventStore(engine).read_stream(stream_id)]
    finally:
        await engine.dispose()


async def pins(system: System, chain_id: uuid.UUID) -> list[GoldenChainRecorded]:
    return [pin for pin in await stream(system, golden_stream())
            if isinstance(pin, GoldenChainRecorded) and pin.chain_id == chain_id]
