"""The pool's bookkeeping over a mocked transport: probes mark backends down and up, idle ones get /free."""

from __future__ import annotations

import json

import httpx
import pytest

from services.renderer.errors import RenderError
from services.renderer.pool import BackendPool


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def transport(down: set[str], calls: list[tuple[str, str, bytes]]) -> httpx.MockTransport:
    def handle(request: httpx.Request) -> httpx.Response:
        calls.append((request.url.host, request.url.path, request.content))
        if request.url.host in down:
            raise httpx.ConnectError("refused", request=request)
        if request.url.path == "/prompt":
            return httpx.Response(200, json={"exec_info": {"queue_remaining": 3}})
        if request.url.path == "/system_stats":
            return httpx.Response(200, json={"system": {}, "devices": []})
        return httpx.Response(200)

    return httpx.MockTransport(handle)


async def test_probes_mark_down_and_back_up_and_count_foreign_queue() -> None:
    down, calls = {"b"}, []
    async with httpx.AsyncClient(transport=transport(down, calls)) as http:
        pool = BackendPool(["http://a", "http://b"], http)
        await pool.probe_all()
        assert pool.backends["http://a"].healthy and pool.backends["http://a"].foreign == 3
        assert not pool.backends["http://b"].healthy and "refused" in pool.backends["http://b"].down_reason
        assert pool.candidates("m", None) == ["http://a", "http://b"]
        down.clear()
        await pool.probe_all()
        assert pool.backends["http://b"].healthy


async def test_probing_for_a_job_returns_the_backends_that_answered_best_first() -> None:
    down, calls = {"a"}, []
    async with httpx.AsyncClient(transport=transport(down, calls)) as http:
        pool = BackendPool(["http://a", "http://b", "http://c"], http, serves={"http://c": (("flux",), ())})
        assert await pool.probe_serving("qwen", None) == ["http://b"]
        assert {host for host, _, _ in calls} == {"a", "b"}  # c does not serve qwen: not probed
        down.clear()
        async with pool.lease("http://b"):
            assert await pool.probe_serving("qwen", None) == ["http://a", "http://b"]


async def test_in_flight_jobs_steer_the_choice() -> None:
    async with httpx.AsyncClient(transport=transport(set(), [])) as http:
        pool = BackendPool(["http://a", "http://b"], http)
        async with pool.lease("http://a"):
            assert pool.candidates("m", None)[0] == "http://b"
        assert pool.backends["http://a"].in_flight == 0


async def test_a_job_nobody_serves_is_refused_with_what_is_declared() -> None:
    async with httpx.AsyncClient(transport=transport(set(), [])) as http:
        pool = BackendPool(["http://a"], http, serves={"http://a": (("flux",), ())})
        with pytest.raises(RenderError, match="no ComfyUI backend serves model 'qwen'") as info:
            pool.candidates("qwen", "anime")
        assert info.value.kind == "validation" and "flux" in info.value.reason


async def test_idle_backend_is_freed_once() -> None:
    clock, calls = Clock(), []
    async with httpx.AsyncClient(transport=transport(set(), calls)) as http:
        pool = BackendPool(["http://a"], http, idle_free_s=600, clock=clock)
        assert await pool.free_idle() == []  # never used: nothing loaded by us
        async with pool.lease("http://a"):
            pass
        clock.now += 599
        assert await pool.free_idle() == []
        clock.now += 1
        assert await pool.free_idle() == ["http://a"]
        assert await pool.free_idle() == []
    frees = [json.loads(body) for _, path, body in calls if path == "/free"]
    assert frees == [{"unload_models": True, "free_memory": True}]
