"""The fakes the end-to-end tests run as processes of their own: ComfyUI and an OpenAI-compatible server."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import httpx

from tests.e2e.comfy_script import ENV as SCRIPT_ENV
from tests.e2e.comfy_script import ComfyScript
from tests.e2e.stack import Background, clean_env

__all__ = ["START_TIMEOUT_S", "FakeCloud", "FakeComfy", "FakeLlm", "start_fake_comfyui"]

START_TIMEOUT_S = 60.0


def start_fake_comfyui(workdir: Path, *args: str, **env: str) -> tuple[Background, str]:
    """The fake ComfyUI (tests.fakes.comfyui) with `args`, once it accepts connections, and its URL."""
    process = Background("fake-comfyui", [sys.executable, "-m", "tests.fakes.comfyui", "--port", "0", *args],
                         clean_env(**env), workdir)
    return process, _announced(process, "fake ComfyUI on ")


class FakeComfy:
    """The fake ComfyUI process and the script its image policy reads."""

    def __init__(self, workdir: Path, *args: str) -> None:
        """`args`: more of the fake's options, e.g. `--step-delay 0.2` for renders that take a while."""
        self.script = ComfyScript(workdir / "comfy-script.json")
        self.script.reset()
        self.process, self.url = start_fake_comfyui(workdir, "--image-for", "tests.e2e.comfy_script:next_image",
                                                    *args, **{SCRIPT_ENV: str(self.script.path)})


class FakeLlm:
    """The fake OpenAI-compatible server process; replies are queued per test."""

    def __init__(self, workdir: Path, name: str = "llm", **quirks: object) -> None:
        """`quirks`: the script's `mode`, `quirks`, `first_token_delay_s` (tests/fakes/openai_server.py)."""
        script = workdir / f"{name}-script.json"
        script.write_text(json.dumps({"replies": [], "model": "fake-model", **quirks}))
        self.process = Background("fake-openai", [
            sys.executable, "-m", "tests.fakes.openai_server", "--port", "0", "--script", str(script),
        ], clean_env(), workdir)
        self.url = _announced(self.process, "fake-openai listening on ")  # ends in /v1
        self.control = self.url.removesuffix("/v1")

    def __enter__(self) -> FakeLlm:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.process.stop()

    def queue(self, *replies: str) -> None:
        httpx.post(f"{self.control}/_fake/replies", json=list(replies), timeout=10).raise_for_status()

    def requests(self) -> list[dict]:
        response = httpx.get(f"{self.control}/_fake/requests", timeout=10)
        response.raise_for_status()
        return response.json()


class FakeCloud:
    """A fake remote render engine as a process: RunPod serverless (`runpod`) or an image edit API (`image-api`).

    Both render the input unchanged (the face check must know the face); `script` scripts the rest."""

    def __init__(self, workdir: Path, kind: str, script: dict | None = None) -> None:
        path = workdir / f"{kind}-script.json"
        if kind == "runpod":
            path.write_text(json.dumps(script or {}))
            args, name = ["tests.fakes.runpod_server", "--keep-input", "--api-key", "rp-key"], "fake-runpod"
        else:
            path.write_text(json.dumps(script or {"default": {"edit": {"keep": True}}}))
            args, name = ["tests.fakes.image_api_server", "--api-key", "img-key"], "fake-image-api"
        self.process = Background(name, [sys.executable, "-m", *args, "--port", "0", "--script", str(path)],
                                  clean_env(), workdir)
        self.url = _announced(self.process, f"{name} listening on ")
        self.control = self.url.split("/v")[0]

    def __enter__(self) -> FakeCloud:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.process.stop()

    def received(self, path: str) -> list[dict]:
        response = httpx.get(f"{self.control}/_fake/{path}", timeout=10)
        response.raise_for_status()
        return response.json()


def _announced(process: Background, prefix: str) -> str:
    """The URL a fake prints once it accepts connections; the process is stopped if it never does."""
    try:
        line = process.wait_for_line(lambda s: s.startswith(prefix), START_TIMEOUT_S)
    except AssertionError:
        process.stop()
        raise
    return line.removeprefix(prefix).strip()
