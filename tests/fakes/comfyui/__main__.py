"""`python -m tests.fakes.comfyui --port N`: run the fake ComfyUI as its own process (end-to-end tests)."""

from __future__ import annotations

import argparse
import asyncio
import importlib
import signal

from tests.fakes.comfyui.scenario import Scenario
from tests.fakes.comfyui.server import FakeComfyUI


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=8188)
    parser.add_argument("--image-for", help="module:function returning the output image bytes")
    parser.add_argument("--step-delay", type=float, default=0.0, help="seconds per sampler step")
    parser.add_argument("--fail-at", help="node id or class_type that raises execution_error")
    args = parser.parse_args()
    scenario = Scenario(step_delay_s=args.step_delay, fail_at_node=args.fail_at)
    if args.image_for:
        module, _, name = args.image_for.partition(":")
        scenario.image_for = getattr(importlib.import_module(module), name)

    async def serve() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        async with FakeComfyUI(scenario, port=args.port) as fake:
            print(f"fake ComfyUI on {fake.url}", flush=True)
            await stop.wait()

    asyncio.run(serve())


if __name__ == "__main__":
    main()
