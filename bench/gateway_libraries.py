"""The gateway's hand-written helpers next to the well-kept libraries that could replace them (issue 10).

    .venv/bin/uv run --group compare python bench/gateway_libraries.py [--n 200000]

Three pairs, each timed in this one process, per operation (best of 5 rounds, microseconds):

  session cookie  sign + verify: the gateway's former HMAC-SHA256 code (copied below as the baseline)
                  vs itsdangerous.TimestampSigner (what the gateway now uses, services/gateway/auth.py)
  rate limit      one allowed request: the gateway's token bucket (services/gateway/auth.RateLimiter)
                  vs limits' MovingWindowRateLimiter and SlidingWindowCounterRateLimiter on MemoryStorage
  SSE frame       one `id/event/data` frame: services/gateway/sse_frames.sse_frame
                  vs sse_starlette.ServerSentEvent(...).encode()

Figures only: a ratio > 1 means the library is slower than the hand-written code.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from services.gateway.auth import RateLimiter, SessionSigner  # noqa: E402
from services.gateway.sse_frames import sse_frame  # noqa: E402


class _HandSigner:
    """The session signer as the gateway wrote it by hand before itsdangerous (the baseline)."""

    def __init__(self, secret: str) -> None:
        self._secret = secret.encode()

    def sign(self, user_id: str) -> str:
        payload = f"{user_id}.{int(time.time())}"
        return f"{payload}.{self._mac(payload)}"

    def verify(self, value: str) -> str | None:
        user_id, issued, mac = value.split(".")
        if not 0 <= time.time() - int(issued) <= 30 * 86400:
            return None
        return user_id if hmac.compare_digest(mac, self._mac(f"{user_id}.{issued}")) else None

    def _mac(self, payload: str) -> str:
        digest = hmac.new(self._secret, payload.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def per_op_us(fn: Callable[[], object], n: int, rounds: int = 5) -> float:
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(n):
            fn()
        best = min(best, time.perf_counter() - start)
    return best / n * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200_000)
    n = parser.parse_args().n
    try:
        from limits import RateLimitItemPerSecond
        from limits.storage import MemoryStorage
        from limits.strategies import MovingWindowRateLimiter, SlidingWindowCounterRateLimiter
        from sse_starlette import ServerSentEvent
    except ImportError:
        sys.exit("needs the comparison group: .venv/bin/uv run --group compare python bench/gateway_libraries.py")

    rows: list[tuple[str, float, str, float]] = []
    secret, user = "s" * 40, "u-0123456789abcdef"
    hand, kept = _HandSigner(secret), SessionSigner(secret, max_age_s=30 * 86400)
    rows.append(("session cookie: hand HMAC sign+verify", per_op_us(lambda: hand.verify(hand.sign(user)), n // 4),
                 "itsdangerous TimestampSigner sign+verify", per_op_us(lambda: kept.verify(kept.sign(user)), n // 4)))

    # Many users, every one well under its limit: the common case on a busy gateway.
    keys = [f"user-{i}" for i in range(10_000)]
    bucket = RateLimiter(rate_per_s=1e9, burst=1e9)
    storage = MemoryStorage()
    limit = RateLimitItemPerSecond(1_000_000_000)
    moving, sliding = MovingWindowRateLimiter(storage), SlidingWindowCounterRateLimiter(storage)
    counter = iter(range(10**12))
    rows.append(("rate limit: token bucket take()", per_op_us(lambda: bucket.take(keys[next(counter) % 10_000]), n),
                 "limits MovingWindow hit()", per_op_us(lambda: moving.hit(limit, keys[next(counter) % 10_000]), n)))
    rows.append(("rate limit: token bucket take()", rows[-1][1],
                 "limits SlidingWindowCounter hit()",
                 per_op_us(lambda: sliding.hit(limit, keys[next(counter) % 10_000]), n)))

    data = '{"chain_id":"5f0c","step":1,"attempt":2,"value":7,"max":20,"node":"3","queue_position":null}'
    rows.append(("SSE frame: sse_frame()", per_op_us(lambda: sse_frame("progress", data, 17), n),
                 "sse_starlette ServerSentEvent.encode()",
                 per_op_us(lambda: ServerSentEvent(data=data, event="progress", id="17").encode(), n)))

    print(f"{'baseline':<42}{'us/op':>9}   {'library':<44}{'us/op':>9}{'ratio':>8}")
    for base, base_us, lib, lib_us in rows:
        print(f"{base:<42}{base_us:>9.2f}   {lib:<44}{lib_us:>9.2f}{lib_us / base_us:>7.2f}x")


if __name__ == "__main__":
    main()
