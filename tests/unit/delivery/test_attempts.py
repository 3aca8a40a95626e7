"""A delivery's life as pure decisions: claims and leases, outcomes, the retry schedule and its window."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import UUID

from contracts import (
    Deliver,
    DeliveryAttempted,
    DeliveryClaimed,
    DeliveryFailed,
    DeliveryRequested,
    DeliverySucceeded,
    Destination,
    Message,
)
from services.delivery.attempts import (
    DeliveryState,
    RetryPolicy,
    SendResult,
    claim,
    conclude,
    delivery_id_for,
    evolve,
    give_up,
    message_id_for,
    replay_id_for,
    view_of,
)

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
DELIVERY = UUID(int=7)
HOOK = Destination(channel="webhook", endpoint_id=UUID(int=9))
POLICY = RetryPolicy(schedule_s=(5.0, 60.0, 3600.0), window_s=24 * 3600.0)


def requested() -> DeliveryRequested:
    return DeliveryRequested(delivery_id=DELIVERY, user_id="u-1", destination=HOOK, event_id=UUID(int=1),
                             event_type="chain.completed", chain_id=UUID(int=2), message_id="msg_1", requested_at=T0)


def fold(*messages: Message) -> DeliveryState:
    state = DeliveryState()
    for message in messages:
        state = evolve(state, message, None)
    return state


def claimed_by(worker: str, at: datetime = T0, attempt: int = 1, *earlier: Message) -> DeliveryState:
    state = fold(requested(), *earlier)
    (event,) = claim(state, attempt=attempt, worker=worker, now=at, lease_s=30)
    return evolve(state, event, None)


def test_the_first_claim_takes_attempt_one_under_a_lease() -> None:
    (event,) = claim(fold(requested()), attempt=1, worker="a", now=T0, lease_s=30)
    assert event == DeliveryClaimed(delivery_id=DELIVERY, attempt=1, worker="a", lease_until=T0 + timedelta(seconds=30))


def test_a_live_claim_keeps_every_other_replica_out_until_its_lease_passes() -> None:
    state = claimed_by("a")
    assert claim(state, attempt=1, worker="b", now=T0 + timedelta(seconds=29), lease_s=30) == []
    (takeover,) = claim(state, attempt=1, worker="b", now=T0 + timedelta(seconds=31), lease_s=30)
    assert (takeover.attempt, takeover.worker, takeover.takeover_of) == (1, "b", "a")


def test_only_the_holder_records_an_outcome() -> None:
    state = claimed_by("a")
    taken = evolve(state, claim(state, attempt=1, worker="b", now=T0 + timedelta(seconds=31), lease_s=30)[0], None)
    ok = SendResult("delivered", status_code=200, duration_ms=3)
    assert conclude(taken, worker="a", result=ok, now=T0, policy=POLICY).events == []
    assert [type(e) for e in conclude(taken, worker="b", result=ok, now=T0, policy=POLICY).events] == [
        DeliveryAttempted, DeliverySucceeded]


def test_delivered_ends_it_and_nothing_more_is_claimed() -> None:
    state = claimed_by("a")
    decision = conclude(state, worker="a", result=SendResult("delivered", 204), now=T0, policy=POLICY)
    attempted, succeeded = decision.events
    assert attempted.outcome == "delivered" and attempted.status_code == 204 and attempted.retry_at is None
    assert succeeded == DeliverySucceeded(delivery_id=DELIVERY, attempts=1) and decision.commands == []
    after = fold(requested(), *state_events(state), *decision.events)
    assert after.ended == "delivered"
    assert claim(after, attempt=2, worker="b", now=T0, lease_s=30) == []


def state_events(state: DeliveryState) -> list[Message]:
    return [state.claim] if state.claim else []


def test_a_refusal_is_final_and_says_so() -> None:
    decision = conclude(claimed_by("a"), worker="a", now=T0, policy=POLICY,
                        result=SendResult("rejected", 400, "HTTP 400: bad payload"))
    attempted, failed = decision.events
    assert attempted.outcome == "rejected" and decision.commands == []
    assert isinstance(failed, DeliveryFailed) and failed.cause == "rejected" and "not retried" in failed.reason


def test_a_retry_schedules_the_next_attempt_by_the_schedule() -> None:
    decision = conclude(claimed_by("a"), worker="a", now=T0, policy=POLICY,
                        result=SendResult("retry", 503, "HTTP 503"))
    (attempted,) = decision.events
    (command,) = decision.commands
    assert attempted.retry_at == T0 + timedelta(seconds=5)
    assert command == Deliver(delivery_id=DELIVERY, attempt=2, not_before=T0 + timedelta(seconds=5))


def test_a_longer_retry_after_wins_over_the_schedule_and_a_shorter_does_not() -> None:
    assert POLICY.next_attempt_at(1, T0, T0, 90.0) == T0 + timedelta(seconds=90)
    assert POLICY.next_attempt_at(2, T0, T0, 1.0) == T0 + timedelta(seconds=60)


def test_the_last_wait_repeats_until_the_window_closes() -> None:
    assert POLICY.next_attempt_at(9, T0, T0, None) == T0 + timedelta(seconds=3600)
    late = T0 + timedelta(hours=23, minutes=30)
    assert POLICY.next_attempt_at(9, late, T0, None) is None


def test_a_retry_past_the_window_fails_the_delivery_as_expired() -> None:
    late = T0 + timedelta(hours=24, seconds=-2)  # the 5 s wait would end past the 24 h window
    state = claimed_by("a", late)
    decision = conclude(state, worker="a", now=late, policy=POLICY, result=SendResult("retry", None, "timed out"))
    attempted, failed = decision.events
    assert attempted.retry_at is None and decision.commands == []
    assert failed.cause == "expired" and "timed out" in failed.reason


def test_an_older_attempts_command_is_stale() -> None:
    retried = conclude(claimed_by("a"), worker="a", now=T0, policy=POLICY, result=SendResult("retry", 500))
    state = fold(requested(), claimed_by("a").claim, *retried.events)
    assert state.next_attempt == 2
    assert claim(state, attempt=1, worker="b", now=T0, lease_s=30) == []
    assert claim(state, attempt=2, worker="b", now=T0, lease_s=30)[0].attempt == 2


def test_a_gone_destination_ends_the_delivery_without_an_attempt() -> None:
    (failed,) = give_up(claimed_by("a"), worker="a", reason="the webhook endpoint was deleted")
    assert failed.cause == "destination_gone" and failed.attempts == 0
    assert give_up(claimed_by("a"), worker="b", reason="x") == []


def test_ids_are_stable_per_event_and_destination_and_replays_get_their_own() -> None:
    event = UUID(int=1)
    assert delivery_id_for(event, HOOK) == delivery_id_for(event, HOOK)
    assert delivery_id_for(event, HOOK) != delivery_id_for(event, Destination(channel="telegram"))
    assert replay_id_for(UUID(int=5), HOOK) != delivery_id_for(event, HOOK)
    assert message_id_for(DELIVERY) == f"msg_{DELIVERY.hex}"


def test_the_view_lists_every_attempt_in_order_with_the_end() -> None:
    claim_1 = claimed_by("a").claim
    first = conclude(claimed_by("a"), worker="a", now=T0, policy=POLICY, result=SendResult("retry", 500, "HTTP 500"))
    state = fold(requested(), claim_1, *first.events)
    (claim_2,) = claim(state, attempt=2, worker="b", now=T0 + timedelta(seconds=6), lease_s=30)
    state = evolve(state, claim_2, None)
    second = conclude(state, worker="b", now=T0, policy=POLICY, result=SendResult("delivered", 200))
    messages = [requested(), claim_1, *first.events, claim_2, *second.events]
    view = view_of([(T0 + timedelta(seconds=i), m) for i, m in enumerate(messages)])
    assert view is not None and view.status == "delivered" and view.failure is None
    assert [(a.attempt, a.worker, a.outcome, a.status_code) for a in view.attempts] == [
        (1, "a", "retry", 500), (2, "b", "delivered", 200)]
