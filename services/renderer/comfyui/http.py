"""ComfyUI's HTTP endpoints (PROTOCOL.md §2) over httpx, with a timeout on every call.

Connection failures raise `BackendUnreachable`, slow answers `RenderError("timeout")`; the caller
decides whether that still means "try another backend" (only before anything was queued).
"""

from __future__ import annotations

import json
from typing import Any

import httpx

from services.renderer.comfyui.replies import ImageFile, partial_rejection, rejection
from services.renderer.errors import BackendUnreachable, RenderError

__all__ = ["ComfyHTTP"]

IMAGE_TYPES = ("image/png", "image/jpeg", "image/webp")


class ComfyHTTP:
    """The endpoints of one backend; `http` is shared, its lifetime is the caller's."""

    def __init__(self, base_url: str, http: httpx.AsyncClient, *, request_timeout_s: float, connect_timeout_s: float):
        self.base_url = base_url.rstrip("/")
        self._http = http
        self._timeout = httpx.Timeout(request_timeout_s, connect=connect_timeout_s)

    async def system_stats(self) -> dict[str, Any]:
        return _json(await self._call("GET", "/system_stats"))

    async def queue_remaining(self) -> int:
        """Pending + running prompts of every client (GET /prompt, cheap)."""
        body = _json(await self._call("GET", "/prompt"))
        value = (body.get("exec_info") or {}).get("queue_remaining", 0)
        return int(value) if isinstance(value, int) else 0

    async def upload_image(self, data: bytes, filename: str, subfolder: str, media_type: str) -> str:
        """Upload to the input folder, replacing a same-named file; returns the LoadImage reference."""
        files = {"image": (filename, data, media_type)}
        form = {"overwrite": "true", "subfolder": subfolder, "type": "input"}
        body = _json(await self._call("POST", "/upload/image", files=files, data=form))
        name, folder = body.get("name"), body.get("subfolder") or ""
        if not isinstance(name, str):
            raise RenderError("internal", f"upload answered without a file name: {body}")
        return f"{folder}/{name}" if folder else name

    async def queue_prompt(self, graph: dict, *, client_id: str, prompt_id: str, output_node: str) -> int | None:
        """POST /prompt; a 400, or a 200 whose node_errors drop our output, is a validation failure."""
        payload = {"prompt": graph, "client_id": client_id, "prompt_id": prompt_id}
        response = await self._call("POST", "/prompt", json=payload, check=False)
        if response.status_code == 400:
            raise rejection(400, _maybe_json(response))
        _raise_for_status(response)
        body = _json(response)
        dropped = partial_rejection(body.get("node_errors"), output_node)
        if dropped is not None:
            raise dropped
        number = body.get("number")
        return number if isinstance(number, int) else None

    async def history(self, prompt_id: str) -> dict[str, Any] | None:
        """The history entry, or None while it is not written (200 `{}`, §6.8)."""
        body = _json(await self._call("GET", f"/history/{prompt_id}"))
        entry = body.get(prompt_id)
        return entry if isinstance(entry, dict) else None

    async def in_queue(self, prompt_id: str) -> bool:
        """Whether the prompt is running or pending (GET /queue; entries are positional arrays)."""
        body = _json(await self._call("GET", "/queue"))
        for key in ("queue_running", "queue_pending"):
            for item in body.get(key) or []:
                if isinstance(item, list) and len(item) > 1 and item[1] == prompt_id:
                    return True
        return False

    async def ahead_of(self, prompt_id: str) -> int | None:
        """How many prompts run or wait before ours (GET /queue; `number` orders the pending, §7.12);
        None once ours is no longer waiting."""
        body = _json(await self._call("GET", "/queue"))
        running = [i for i in body.get("queue_running") or [] if isinstance(i, list) and len(i) > 1]
        pending = [i for i in body.get("queue_pending") or [] if isinstance(i, list) and len(i) > 1]
        ours = next((i for i in pending if i[1] == prompt_id), None)
        if ours is None or not isinstance(ours[0], int | float):
            return None
        return len(running) + sum(1 for i in pending if isinstance(i[0], int | float) and i[0] < ours[0])

    async def forget(self, prompt_id: str) -> None:
        """Delete the prompt's history entry: the server keeps every entry (and its outputs list) otherwise."""
        await self._call("POST", "/history", json={"delete": [prompt_id]})

    async def view(self, image: ImageFile) -> tuple[bytes, str]:
        """The bytes and media type of an output file."""
        params = {"filename": image.filename, "subfolder": image.subfolder, "type": image.type}
        response = await self._call("GET", "/view", params=params, check=False)
        if response.status_code == 404:
            raise RenderError("internal", f"output file {image.filename!r} is gone from the backend (GET /view: 404)")
        _raise_for_status(response)
        media_type = response.headers.get("content-type", "").split(";")[0].strip()
        if media_type not in IMAGE_TYPES:
            raise RenderError("internal", f"output file {image.filename!r} is {media_type or 'untyped'}, not an image")
        return response.content, media_type

    async def cancel(self, prompt_id: str) -> None:
        """Stop our prompt whether running (/interrupt with its id) or pending (/queue delete) (§6.5)."""
        await self._call("POST", "/interrupt", json={"prompt_id": prompt_id})
        await self._call("POST", "/queue", json={"delete": [prompt_id]})

    async def free(self) -> None:
        await self._call("POST", "/free", json={"unload_models": True, "free_memory": True})

    async def _call(self, method: str, path: str, *, check: bool = True, **kw: Any) -> httpx.Response:
        url = self.base_url + path
        try:
            response = await self._http.request(method, url, timeout=self._timeout, **kw)
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            raise BackendUnreachable(f"cannot connect to {self.base_url}: {_why(exc)}", backend=self.base_url) from exc
        except httpx.TimeoutException as exc:
            raise RenderError("timeout", f"{method} {path} on {self.base_url} timed out: {_why(exc)}",
                              backend=self.base_url) from exc
        except httpx.TransportError as exc:
            raise BackendUnreachable(f"{method} {path} on {self.base_url} failed: {_why(exc)}",
                                     backend=self.base_url) from exc
        if check:
            _raise_for_status(response)
        return response


def _raise_for_status(response: httpx.Response) -> None:
    if response.status_code >= 400:
        request = response.request
        raise RenderError("internal", f"{request.method} {request.url.path} answered HTTP {response.status_code}: "
                                      f"{response.text[:300]}")


def _json(response: httpx.Response) -> dict[str, Any]:
    body = _maybe_json(response)
    if not isinstance(body, dict):
        raise RenderError("internal", f"{response.request.url.path} answered {response.text[:200]!r}, "
                                      "not a JSON object")
    return body


def _maybe_json(response: httpx.Response) -> Any:
    try:
        return json.loads(response.content)
    except ValueError:
        return None


def _why(exc: Exception) -> str:
    return str(exc) or type(exc).__name__
