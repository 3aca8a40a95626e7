"""Signatures a receiver verifies with the published algorithm, secrets by generation, payloads and links."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import UUID

import pytest
from pydantic import ValidationError
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from contracts import ChainCompleted, ChainFailed, ImageRef
from services.delivery.payloads import ChainFacts, google_chat_message, telegram_text, webhook_body
from services.delivery.settings import DeliverySettings
from services.delivery.signing import endpoint_secret, signed_headers
from services.runtime.links import image_link, verify_image_link
from tests.fakes.webhook_receiver import hmac_verdict

ENDPOINT = UUID(int=3)
NOW = datetime.now(UTC)
IMAGE = ImageRef(sha256="ab" * 32, media_type="image/png", width=64, height=64, bytes=100)


def facts(event) -> ChainFacts:
    return ChainFacts(chain_id=UUID(int=1), character_id="luna", request_text="at the beach " * 200,
                      event_id=UUID(int=2), occurred_at=NOW, event=event)


def test_a_signature_verifies_with_the_library_and_with_the_algorithm_written_out() -> None:
    secret = endpoint_secret("k" * 40, ENDPOINT, 1)
    body = b'{"type":"chain.completed"}'
    # Signed now: the library refuses timestamps more than five minutes off, as receivers should.
    headers = signed_headers(secret, "msg_1", datetime.now(UTC), body)
    assert Webhook(secret).verify(body, headers) == {"type": "chain.completed"}
    assert hmac_verdict(secret, "msg_1", headers["webhook-timestamp"], body, headers["webhook-signature"])
    assert not hmac_verdict(secret, "msg_1", headers["webhook-timestamp"], body + b" ", headers["webhook-signature"])


def test_after_rotation_the_old_secret_no_longer_verifies() -> None:
    old, new = endpoint_secret("k" * 40, ENDPOINT, 1), endpoint_secret("k" * 40, ENDPOINT, 2)
    assert old != new and old == endpoint_secret("k" * 40, ENDPOINT, 1) and old.startswith("whsec_")
    body = b"{}"
    headers = signed_headers(new, "msg_2", datetime.now(UTC), body)
    assert Webhook(new).verify(body, headers) == {}
    with pytest.raises(WebhookVerificationError, match="signature"):
        Webhook(old).verify(body, headers)
    assert not hmac_verdict(old, "msg_2", headers["webhook-timestamp"], body, headers["webhook-signature"])


def test_secrets_differ_per_endpoint_and_per_key() -> None:
    assert endpoint_secret("k" * 40, ENDPOINT, 1) != endpoint_secret("k" * 40, UUID(int=4), 1)
    assert endpoint_secret("k" * 40, ENDPOINT, 1) != endpoint_secret("j" * 40, ENDPOINT, 1)


def test_the_webhook_body_is_the_same_bytes_every_time_with_working_image_links() -> None:
    completed = ChainCompleted(chain_id=UUID(int=1), final_image=IMAGE, step_images=(IMAGE,))
    expires = int((NOW + timedelta(days=1)).timestamp())

    def link(image: ImageRef) -> str:
        return image_link("https://likeness.example", "s" * 40, image.sha256, expires)

    body = webhook_body(facts(completed), link)
    assert body == webhook_body(facts(completed), link)
    import json
    data = json.loads(body)
    assert data["type"] == "chain.completed" and data["data"]["event_id"] == str(UUID(int=2))
    url = data["data"]["image"]["url"]
    assert url.startswith(f"https://likeness.example/links/images/{IMAGE.sha256}?expires={expires}&signature=")
    signature = url.rsplit("=", 1)[1]
    assert verify_image_link("s" * 40, IMAGE.sha256, expires, signature, NOW.timestamp()) is None
    assert "signature" in verify_image_link("t" * 40, IMAGE.sha256, expires, signature, NOW.timestamp())
    assert "expired" in verify_image_link("s" * 40, IMAGE.sha256, expires, signature, expires + 1.0)


def test_telegram_gets_a_caption_within_its_limit_and_a_failure_in_words() -> None:
    completed = ChainCompleted(chain_id=UUID(int=1), final_image=IMAGE, step_images=(IMAGE,))
    assert len(telegram_text(facts(completed))) == 1024
    failed = ChainFailed(chain_id=UUID(int=1), step=1, reason="the face drifted on every attempt")
    assert telegram_text(facts(failed)).startswith("Your picture could not be made: the face drifted")


def test_google_chat_gets_a_card_with_the_image_link() -> None:
    completed = ChainCompleted(chain_id=UUID(int=1), final_image=IMAGE, step_images=(IMAGE,))
    message = google_chat_message(facts(completed), lambda image: f"https://x/{image.sha256}")
    widgets = message["cardsV2"][0]["card"]["sections"][0]["widgets"]
    assert widgets[0]["image"]["imageUrl"] == f"https://x/{IMAGE.sha256}"
    assert widgets[1]["buttonList"]["buttons"][0]["onClick"]["openLink"]["url"] == f"https://x/{IMAGE.sha256}"


def test_prod_refuses_default_secrets_private_webhooks_and_a_short_lease() -> None:
    with pytest.raises(ValidationError, match="LIKENESS_DELIVERY_SECRET_KEY"):
        DeliverySettings(environment="prod", image_link_secret="l" * 40)
    with pytest.raises(ValidationError, match="LIKENESS_IMAGE_LINK_SECRET"):
        DeliverySettings(environment="prod", delivery_secret_key="k" * 40)
    with pytest.raises(ValidationError, match="WEBHOOK_ALLOW_PRIVATE"):
        DeliverySettings(environment="prod", delivery_secret_key="k" * 40, image_link_secret="l" * 40,
                         webhook_allow_private=True)
    with pytest.raises(ValidationError, match="twice"):
        DeliverySettings(delivery_timeout_s=30, delivery_lease_s=45)
    assert DeliverySettings(environment="prod", delivery_secret_key="k" * 40, image_link_secret="l" * 40)
