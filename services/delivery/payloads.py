"""What each destination receives for a chain event: pure functions of the chain's facts.

The same facts make the same bytes, so every retry of a webhook carries the very body of the first
try (its image link expires at a time derived from the event, not from the attempt).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from contracts import ChainCompleted, ChainFailed, ImageRef, Message, StepAccepted

__all__ = ["ChainFacts", "google_chat_message", "telegram_text", "webhook_body"]

# The Bot API's limits: a photo caption, a message.
_CAPTION_CHARS, _MESSAGE_CHARS = 1024, 4096
LinkOf = Callable[[ImageRef], str]


@dataclass(frozen=True)
class ChainFacts:
    """A chain event to deliver, with what its chain's request said."""

    chain_id: UUID
    character_id: str | None
    request_text: str
    event_id: UUID
    occurred_at: datetime
    event: Message

    @property
    def image(self) -> ImageRef | None:
        """The picture the event carries: a completed chain's final image, an accepted step's image."""
        if isinstance(self.event, ChainCompleted):
            return self.event.final_image
        if isinstance(self.event, StepAccepted):
            return self.event.image
        return None


def _image(image: ImageRef, link: LinkOf) -> dict[str, Any]:
    return {"sha256": image.sha256, "media_type": image.media_type, "width": image.width, "height": image.height,
            "bytes": image.bytes, "url": link(image)}


def webhook_body(facts: ChainFacts, link: LinkOf) -> bytes:
    """The Standard Webhooks payload: `{"type", "timestamp", "data"}` as compact JSON."""
    event = facts.event
    data: dict[str, Any] = {"event_id": str(facts.event_id), "chain_id": str(facts.chain_id),
                            "character_id": facts.character_id, "request_text": facts.request_text}
    match event:
        case ChainCompleted():
            data["image"] = _image(event.final_image, link)
            data["step_images"] = [_image(image, link) for image in event.step_images]
        case ChainFailed():
            data.update(step=event.step, reason=event.reason)
        case StepAccepted():
            data.update(step=event.step, attempt=event.attempt, score=event.score, image=_image(event.image, link))
    payload = {"type": event.type, "timestamp": facts.occurred_at.isoformat(), "data": data}
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()


def telegram_text(facts: ChainFacts) -> str:
    """The photo's caption for a picture; the whole message for a failed chain."""
    if isinstance(facts.event, ChainFailed):
        text = f"Your picture could not be made: {facts.event.reason}\n\nYou asked for: {facts.request_text}"
        return text[:_MESSAGE_CHARS]
    return facts.request_text[:_CAPTION_CHARS]


def google_chat_message(facts: ChainFacts, link: LinkOf) -> dict[str, Any]:
    """An incoming-webhook message: a card with the picture and a link to it, or the failure in words."""
    if isinstance(facts.event, ChainFailed):
        return {"text": f"Your picture could not be made: {facts.event.reason}\nYou asked for: {facts.request_text}"}
    image = facts.image
    assert image is not None
    url = link(image)
    card = {
        "header": {"title": "Your picture is ready", "subtitle": facts.request_text[:200]},
        "sections": [{"widgets": [
            {"image": {"imageUrl": url, "altText": facts.request_text[:200]}},
            {"buttonList": {"buttons": [{"text": "Open the picture", "onClick": {"openLink": {"url": url}}}]}},
        ]}],
    }
    return {"text": f"Your picture is ready: {facts.request_text[:200]}",
            "cardsV2": [{"cardId": f"likeness-{facts.chain_id}", "card": card}]}
