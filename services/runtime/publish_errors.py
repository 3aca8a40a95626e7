"""An error answer to a pipelined JetStream publish fails its future at once, instead of never.

Imported by services.runtime.bus and services.runtime.outbox, which is what every publisher goes through.
"""

from __future__ import annotations

import functools

import nats.js.errors
from nats.js import JetStreamContext

__all__: list[str] = []


def _async_publish_errors_fail_the_future() -> None:
    """Make an error reply to `publish_async` (e.g. 409 "duplicate message id is in process", met by the
    outbox relay republishing through a stream leader change) fail the publish's future.

    nats-py's `_handle_async_reply` calls `APIError.from_error`, which raises instead of returning the error,
    so `future.set_exception` is never reached: the future stays pending until the caller's own timeout
    (the relay's publish timeout, 5 s), and the exception escapes into the subscription's callback, where
    FastStream logs it as "Connection broken" with a traceback.
    """
    handle = JetStreamContext._handle_async_reply
    if getattr(handle, "_fails_the_future", False):
        return

    @functools.wraps(handle)
    async def handle_failing_the_future(self, msg):  # noqa: ANN001, ANN202
        try:
            await handle(self, msg)
        except nats.js.errors.APIError as exc:
            # The reply subject's last token names the future (computed as nats-py does).
            future = self._publish_async_futures.get(msg.subject[len(self._nc._inbox_prefix) + 22 + 2:])
            if future is not None and not future.done():
                future.set_exception(exc)

    handle_failing_the_future._fails_the_future = True  # type: ignore[attr-defined]
    JetStreamContext._handle_async_reply = handle_failing_the_future  # type: ignore[method-assign]


_async_publish_errors_fail_the_future()
