"""A user's destinations: what each change records, and which destinations want which chain event."""

from __future__ import annotations

from uuid import UUID

import pytest

from contracts import Destination, Message, TelegramLinked, WebhookEndpointCreated, WebhookSecretRotated
from services.delivery.destinations import Destinations, Refused, evolve, redacted, wanted

HOOK = UUID(int=11)


def apply(state: Destinations, events: list) -> Destinations:
    for event in events:
        state = evolve(state, event, None)
    return state


def with_hook(events: tuple[str, ...] = ("completed", "failed")) -> Destinations:
    return apply(Destinations(), Destinations().create_webhook("u-1", HOOK, "https://example.com/h", events, ""))


def test_people_get_a_chains_end_and_programs_what_they_subscribed_to() -> None:
    state = apply(with_hook(("step_accepted",)), [TelegramLinked(user_id="u-1", chat_id="42")])
    state = apply(state, state.set_google_chat("u-1", "https://chat.googleapis.com/v1/spaces/A/messages?key=k"))
    assert wanted(state, "chain.completed") == [Destination(channel="telegram"), Destination(channel="google_chat")]
    assert wanted(state, "chain.step_accepted") == [Destination(channel="webhook", endpoint_id=HOOK)]
    assert wanted(Destinations(), "chain.completed") == []


def test_subscriptions_are_kept_in_one_order_without_repeats_and_the_same_again_records_nothing() -> None:
    state = with_hook()
    (event,) = state.subscribe("u-1", HOOK, ("step_accepted", "completed", "completed"))
    assert event.events == ("completed", "step_accepted")
    state = apply(state, [event])
    assert state.subscribe("u-1", HOOK, ("completed", "step_accepted")) == []


def test_rotation_raises_the_generation_by_one_each_time() -> None:
    state = with_hook()
    assert state.webhook(HOOK).generation == 1
    state = apply(state, state.rotate("u-1", HOOK))
    (again,) = state.rotate("u-1", HOOK)
    assert state.webhook(HOOK).generation == 2 and again == WebhookSecretRotated(user_id="u-1", endpoint_id=HOOK,
                                                                                secret_generation=3)


def test_a_deleted_endpoint_is_gone_and_answers_404() -> None:
    state = with_hook()
    state = apply(state, state.delete_webhook("u-1", HOOK))
    assert state.webhooks == {}
    with pytest.raises(Refused) as refused:
        state.rotate("u-1", HOOK)
    assert (refused.value.status, refused.value.code) == (404, "webhook_not_found")


def test_creating_the_same_endpoint_again_records_nothing() -> None:
    state = with_hook()
    assert state.create_webhook("u-1", HOOK, "https://example.com/other", ("failed",), "") == []


def test_the_view_hides_the_google_chat_key_and_token() -> None:
    url = "https://chat.googleapis.com/v1/spaces/A/messages?key=SECRETKEY&token=SECRETTOKEN"
    state = apply(Destinations(), Destinations().set_google_chat("u-1", url))
    view = state.view().model_dump_json()
    assert "SECRET" not in view and redacted(url) in view


def test_unlinking_what_is_not_linked_records_nothing() -> None:
    assert Destinations().unlink_telegram("u-1") == [] and Destinations().unset_google_chat("u-1") == []


def test_folding_is_by_stream_version() -> None:
    created = WebhookEndpointCreated(user_id="u-1", endpoint_id=HOOK, url="https://e.com/h", events=("failed",))
    state = evolve(Destinations(), created, 7)
    assert state.version == 7 and isinstance(created, Message)
