"""The scheduler over a real pool: waiting jobs get slots fairly, cancelled ones give theirs back, the pool
remembers the model each backend last ran (and forgets it when the backend is freed or goes down)."""

from __future__ import annotations

import asyncio

import httpx

from services.renderer.metrics import MODEL_SWAPS, backend_label
from services.renderer.pool import BackendPool
from services.renderer.scheduler import Scheduler


def ok(request: httpx.Request) -> httpx.Response:
    if request.url.path == "/prompt":
        return httpx.Response(200, json={"exec_info": {"queue_remaining": 0}})
    return httpx.Response(200, json={})


async def test_a_light_users_job_overtakes_the_heavy_users_queue() -> None:
    async with httpx.AsyncClient(transport=httpx.MockTransport(ok)) as http:
        scheduler = Scheduler(BackendPool(["http://a"], http))
        urls = ["http://a"]
        first = await scheduler.acquire("heavy", "qwen", urls, scheduler.arrival())
        heavy = [asyncio.create_task(scheduler.acquire("heavy", "qwen", urls, scheduler.arrival())) for _ in range(5)]
        light = asyncio.create_task(scheduler.acquire("light", "qwen", urls, scheduler.arrival()))
        await asyncio.sleep(0)
        assert first == "http://a" and scheduler.waiting == 6 and not light.done()
        scheduler.release(first, "heavy")
        await asyncio.sleep(0)
        assert light.done() and not any(t.done() for t in heavy)
        scheduler.release(await light, "light")
        await asyncio.sleep(0)
        (next_heavy,) = [t for t in heavy if t.done()]
        scheduler.release(next_heavy.result(), "heavy")
        for task in heavy:
            task.cancel()
        await asyncio.gather(*heavy, return_exceptions=True)
        assert scheduler.pool.backends["http://a"].in_flight == 0 and scheduler.waiting == 0


async def test_a_job_cancelled_after_its_grant_gives_the_slot_back() -> None:
    async with httpx.AsyncClient(transport=httpx.MockTransport(ok)) as http:
        scheduler = Scheduler(BackendPool(["http://a"], http))
        held = await scheduler.acquire("u1", "qwen", ["http://a"], scheduler.arrival())
        waiter = asyncio.create_task(scheduler.acquire("u2", "qwen", ["http://a"], scheduler.arrival()))
        await asyncio.sleep(0)
        scheduler.release(held, "u1")  # granted to the waiter, which is cancelled before it runs again
        waiter.cancel()
        await asyncio.gather(waiter, return_exceptions=True)
        assert scheduler.pool.backends["http://a"].in_flight == 0
        assert await asyncio.wait_for(scheduler.acquire("u3", "qwen", ["http://a"], scheduler.arrival()), 1)


async def test_no_backend_to_try_answers_none_at_once() -> None:
    async with httpx.AsyncClient(transport=httpx.MockTransport(ok)) as http:
        scheduler = Scheduler(BackendPool(["http://a"], http))
        assert await scheduler.acquire("u", "qwen", [], scheduler.arrival()) is None


async def test_the_pool_tracks_the_model_loaded_and_counts_swaps() -> None:
    async with httpx.AsyncClient(transport=httpx.MockTransport(ok)) as http:
        pool = BackendPool(["http://swap-a"], http, idle_free_s=0.0001)
        backend = pool.backends["http://swap-a"]
        swaps = MODEL_SWAPS.labels(backend_label("http://swap-a"))
        before = swaps._value.get()
        assert backend.loaded is None  # unknown at start
        async with pool.lease("http://swap-a", "qwen"):
            pass
        async with pool.lease("http://swap-a", "flux"):
            pass
        assert backend.loaded == "flux" and swaps._value.get() == before + 1
        await asyncio.sleep(0.001)
        assert await pool.free_idle() == ["http://swap-a"]
        assert backend.loaded is None  # /free unloaded it
        async with pool.lease("http://swap-a", "qwen"):
            pass
        pool.mark_down("http://swap-a", "refused")
        assert backend.loaded is None and swaps._value.get() == before + 1


async def test_a_backend_going_down_lets_a_waiting_job_try_another() -> None:
    async with httpx.AsyncClient(transport=httpx.MockTransport(ok)) as http:
        pool = BackendPool(["http://a", "http://b"], http)
        scheduler = Scheduler(pool)
        pool.mark_down("http://b", "refused")
        held = await scheduler.acquire("u1", "qwen", ["http://a", "http://b"], scheduler.arrival())
        waiter = asyncio.create_task(scheduler.acquire("u2", "qwen", ["http://a", "http://b"], scheduler.arrival()))
        await asyncio.sleep(0)
        assert held == "http://a" and not waiter.done()  # b is down: wait for a
        pool.mark_down("http://a", "refused")  # now neither is up: b's probe may be stale, try it
        await asyncio.sleep(0)
        assert await waiter == "http://b"


async def test_a_waiting_job_hears_its_place_as_it_moves_up() -> None:
    async with httpx.AsyncClient(transport=httpx.MockTransport(ok)) as http:
        scheduler = Scheduler(BackendPool(["http://a"], http))
        held = await scheduler.acquire("u1", "qwen", ["http://a"], scheduler.arrival())
        heard: list[int] = []

        async def told(place: int) -> None:
            heard.append(place)

        ahead = asyncio.create_task(scheduler.acquire("u2", "qwen", ["http://a"], scheduler.arrival()))
        waiter = asyncio.create_task(scheduler.acquire("u3", "qwen", ["http://a"], scheduler.arrival(), told))
        await asyncio.sleep(0.01)
        assert heard == [1]
        scheduler.release(held, "u1")
        scheduler.release(await ahead, "u2")
        assert await asyncio.wait_for(waiter, 5) == "http://a"
        assert heard == [1]  # granted before its next look: nothing more to say
