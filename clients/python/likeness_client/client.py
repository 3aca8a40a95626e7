"""`Client` (blocking) and `AsyncClient` (asyncio) for the bot API, over httpx. The same methods on both:

    generate(message, nick=)          POST /request -> Accepted (job id, queue position)
    job(job_id, nick=)                GET /job/{id} -> Job
    wait(job_id, timeout=, nick=)     GET /wait/{id} until the job ends (or `timeout`), then the Job
    batch(requests, character=, nick=) POST /batch -> BatchAccepted;  batch_status(batch_id) -> Batch
    stream(job_id, nick=)             the chain's events (ChainEvent, Progress, Queue, Preview, Waiting)
    download(job | picture | job_id)  the picture's bytes (a batch job's: its grid)
    models()                          GET /models

`nick` names the person the bot speaks for; on the reading calls it narrows the view to that nick's jobs
(without it the bot's key sees the jobs of all its nicks).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any

import httpx

from likeness_client import calls
from likeness_client.calls import NICK_HEADER, Call, picture_path
from likeness_client.events import ChainEvent, Event, EventDecoder
from likeness_client.models import Accepted, Batch, BatchAccepted, Job, Model, Picture

__all__ = ["AsyncClient", "Client"]

_TIMEOUT = httpx.Timeout(60.0, connect=10.0)
# A dropped event stream is resumed from its last event this many times in a row before giving up.
_RECONNECTS = 5
_NETWORK_ERRORS = (httpx.TransportError,)
# Events may be minutes apart (a long render); the server's heartbeats keep the connection alive meanwhile.
_STREAM_TIMEOUT = httpx.Timeout(60.0, read=None)


def _headers(api_key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}", "Accept": "application/json"}


def _answer(call: Call, response: httpx.Response) -> Any:
    if response.status_code >= 400:
        try:
            body = response.json()
        except ValueError:
            body = None
        raise calls.error_of(response.status_code, body, response.headers.get("retry-after"))
    return call.read(response.json())


class _Resumption:
    """One event stream read across reconnections: the last event seen, and whether the chain has ended."""

    def __init__(self, job_id: str, nick: str | None, last: int | None) -> None:
        self.path = calls.EVENTS.path.format(chain_id=job_id)
        self.nick, self.last = nick, last
        self.ended, self.failures = False, 0
        self.decoder = EventDecoder()

    def headers(self) -> dict[str, str]:
        self.decoder = EventDecoder()
        headers = {"Accept": "text/event-stream"}
        if self.nick is not None:
            headers[NICK_HEADER] = self.nick
        if self.last is not None:
            headers["Last-Event-ID"] = str(self.last)
        return headers

    def take(self, line: str) -> Event | None:
        event = self.decoder.feed(line)
        if event is not None:
            self.failures = 0
            if isinstance(event, ChainEvent):
                self.last, self.ended = event.seq, event.terminal
        return event

    def dropped(self) -> bool:
        """The stream broke off before the chain's end (a network error, a server restart): try again?"""
        self.failures += 1
        return self.failures <= _RECONNECTS


class Client:
    """The bot API, blocking. `with Client(url, key) as likeness: ...` closes its connections at the end."""

    def __init__(self, base_url: str, api_key: str, *, timeout: httpx.Timeout | float = _TIMEOUT,
                 http: httpx.Client | None = None) -> None:
        self._http = http or httpx.Client(base_url=base_url, timeout=timeout)
        self._headers = _headers(api_key)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _send(self, call: Call) -> Any:
        timeout = call.timeout_s if call.timeout_s is not None else httpx.USE_CLIENT_DEFAULT
        response = self._http.request(call.method, call.url, json=call.json, params=call.params,
                                      headers={**self._headers, **call.headers}, timeout=timeout)
        return _answer(call, response)

    def generate(self, message: str, *, nick: str | None = None) -> Accepted:
        return self._send(calls.generate(message, nick))

    def job(self, job_id: str, *, nick: str | None = None) -> Job:
        return self._send(calls.job(job_id, nick))

    def wait(self, job_id: str, *, timeout: float = 600.0, nick: str | None = None) -> Job:
        """The job once it has ended (a batch's: every chain of it), or as it stands after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while not self._send(calls.wait(job_id, nick, deadline - time.monotonic())):
            if time.monotonic() >= deadline:
                break
        return self.job(job_id, nick=nick)

    def batch(self, requests: Sequence[str], *, character: str | None = None, nick: str | None = None
              ) -> BatchAccepted:
        return self._send(calls.batch(requests, character, nick))

    def batch_status(self, batch_id: str, *, nick: str | None = None) -> Batch:
        return self._send(calls.batch_status(batch_id, nick))

    def models(self) -> list[Model]:
        return self._send(calls.models())

    def download(self, what: Job | Picture | str, *, nick: str | None = None) -> bytes:
        headers = {**self._headers, **({NICK_HEADER: nick} if nick is not None else {})}
        response = self._http.get(picture_path(what), headers=headers)
        if response.status_code >= 400:
            _answer(Call("GET", ""), response)
        return response.content

    def stream(self, job_id: str, *, nick: str | None = None, last_event_id: int | None = None) -> Iterator[Event]:
        """The chain's events until it ends, resumed from the last one seen if the connection drops."""
        resume = _Resumption(job_id, nick, last_event_id)
        while True:
            try:
                with self._http.stream("GET", resume.path, headers={**self._headers, **resume.headers()},
                                       timeout=_STREAM_TIMEOUT) as response:
                    if response.status_code >= 400:
                        response.read()
                        _answer(Call("GET", resume.path), response)
                    for line in response.iter_lines():
                        if (event := resume.take(line)) is not None:
                            yield event
            except _NETWORK_ERRORS:
                if resume.dropped():
                    continue
                raise
            if resume.ended or not resume.dropped():
                return


class AsyncClient:
    """The bot API for asyncio. `async with AsyncClient(url, key) as likeness: ...`."""

    def __init__(self, base_url: str, api_key: str, *, timeout: httpx.Timeout | float = _TIMEOUT,
                 http: httpx.AsyncClient | None = None) -> None:
        self._http = http or httpx.AsyncClient(base_url=base_url, timeout=timeout)
        self._headers = _headers(api_key)

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _send(self, call: Call) -> Any:
        timeout = call.timeout_s if call.timeout_s is not None else httpx.USE_CLIENT_DEFAULT
        response = await self._http.request(call.method, call.url, json=call.json, params=call.params,
                                            headers={**self._headers, **call.headers}, timeout=timeout)
        return _answer(call, response)

    async def generate(self, message: str, *, nick: str | None = None) -> Accepted:
        return await self._send(calls.generate(message, nick))

    async def job(self, job_id: str, *, nick: str | None = None) -> Job:
        return await self._send(calls.job(job_id, nick))

    async def wait(self, job_id: str, *, timeout: float = 600.0, nick: str | None = None) -> Job:
        """The job once it has ended (a batch's: every chain of it), or as it stands after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while not await self._send(calls.wait(job_id, nick, deadline - time.monotonic())):
            if time.monotonic() >= deadline:
                break
        return await self.job(job_id, nick=nick)

    async def batch(self, requests: Sequence[str], *, character: str | None = None, nick: str | None = None
                    ) -> BatchAccepted:
        return await self._send(calls.batch(requests, character, nick))

    async def batch_status(self, batch_id: str, *, nick: str | None = None) -> Batch:
        return await self._send(calls.batch_status(batch_id, nick))

    async def models(self) -> list[Model]:
        return await self._send(calls.models())

    async def download(self, what: Job | Picture | str, *, nick: str | None = None) -> bytes:
        headers = {**self._headers, **({NICK_HEADER: nick} if nick is not None else {})}
        response = await self._http.get(picture_path(what), headers=headers)
        if response.status_code >= 400:
            _answer(Call("GET", ""), response)
        return response.content

    async def stream(self, job_id: str, *, nick: str | None = None, last_event_id: int | None = None
                     ) -> AsyncIterator[Event]:
        """The chain's events until it ends, resumed from the last one seen if the connection drops."""
        resume = _Resumption(job_id, nick, last_event_id)
        while True:
            try:
                async with self._http.stream("GET", resume.path, headers={**self._headers, **resume.headers()},
                                             timeout=_STREAM_TIMEOUT) as response:
                    if response.status_code >= 400:
                        await response.aread()
                        _answer(Call("GET", resume.path), response)
                    async for line in response.aiter_lines():
                        if (event := resume.take(line)) is not None:
                            yield event
            except _NETWORK_ERRORS:
                if resume.dropped():
                    continue
                raise
            if resume.ended or not resume.dropped():
                return
