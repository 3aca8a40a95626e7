"""JetStream's transient answers during a cluster's leader changes: what the bus waits out, and what
a pipelined publish reports at once."""

from __future__ import annotations

import asyncio
import uuid

import nats
import nats.js.errors
import pytest

from contracts.subjects import event_subject
from services.runtime import bus  # noqa: F401  (installs services.runtime.publish_errors, as every service does)
from services.runtime.faults import is_infrastructure_failure

pytestmark = pytest.mark.integration


async def test_an_error_reply_fails_a_pipelined_publish_at_once(nc: nats.NATS) -> None:
    js = nc.jetstream(timeout=5)
    subject = event_subject("chain.requested", f"chain-{uuid.uuid4()}")
    # The events stream stores this subject, so naming another stream makes JetStream answer 400 at once.
    future = await js.publish_async(subject, b"{}", headers={"Nats-Expected-Stream": "NOT_THE_STREAM"})
    with pytest.raises(nats.js.errors.APIError, match="expected stream does not match"):
        # Without the fix, nats-py raises inside its reply callback and the future never completes.
        await asyncio.wait_for(future, 2.0)


def test_a_stream_without_a_leader_and_a_message_id_in_process_are_waited_out() -> None:
    assert is_infrastructure_failure(nats.js.errors.NoStreamResponseError())
    in_process = nats.js.errors.APIError(code=409, err_code=10158, description="duplicate message id is in process")
    assert is_infrastructure_failure(in_process)
    wrong = nats.js.errors.APIError(code=400, err_code=10060, description="expected stream does not match")
    assert not is_infrastructure_failure(wrong)
