"""The chat family: a user's conversation with one character.

The chat service is the single writer of the stream `conversation-<conversation_id>`; reply
tokens stream live as `ChatTokenDelta`, and the whole reply is then recorded once.
"""

from __future__ import annotations

from typing import Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from contracts.base import Command, Ephemeral, Event
from contracts.fields import CharacterId, Reason, UserId

__all__ = [
    "CharacterReplied",
    "ChatMessageRefused",
    "ChatPictureSelected",
    "ChatTokenDelta",
    "ConversationStarted",
    "ImageRequestedInChat",
    "SendChatMessage",
    "UserMessageSent",
    "VoiceInput",
]


class VoiceInput(BaseModel):
    """How a spoken message became its text: the transcriber, its time, and which recording it heard.

    The message's `text` is the transcript. The recording itself is in the blob store under
    `audio_sha256` only when `kept` (the gateway keeps voices only when told to)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    # "pocketsphinx" (the embedded recognizer) or "openai" (an OpenAI-compatible transcription server).
    backend: str = Field(min_length=1, max_length=40)
    model: str = Field(min_length=1, max_length=200)
    # Wall-clock seconds from handing the recording over to having its text.
    seconds: float = Field(ge=0)
    audio_seconds: float = Field(ge=0)
    audio_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    # As sniffed from the content, e.g. "audio/wav", "audio/webm".
    audio_media_type: str = Field(min_length=1, max_length=60)
    kept: bool = False


class SendChatMessage(Command):
    """A user says something to a character; the conversation is started if new."""

    type: Literal["chat.send_message"] = "chat.send_message"
    version: Literal[1] = 1

    conversation_id: UUID
    character_id: CharacterId
    user_id: UserId
    text: str = Field(min_length=1, max_length=8000)
    # Chosen by the sender so it can follow the reply at once and a resend is recognised.
    message_id: UUID | None = None
    # False when the sender may not start another picture now (an anonymous session at its picture
    # limit): a picture the message asks for is then not requested, and the reply says why.
    pictures_allowed: bool = True
    # Set when the message was spoken: `text` is then its transcript.
    voice: VoiceInput | None = None


class ConversationStarted(Event):
    """A user began talking with a character."""

    type: Literal["chat.conversation_started"] = "chat.conversation_started"
    version: Literal[1] = 1

    conversation_id: UUID
    character_id: CharacterId
    user_id: UserId


class UserMessageSent(Event):
    """The user's message, as recorded in the conversation."""

    type: Literal["chat.user_message_sent"] = "chat.user_message_sent"
    version: Literal[1] = 1

    conversation_id: UUID
    message_id: UUID
    text: str = Field(min_length=1)
    # Set when the message was spoken (see `SendChatMessage.voice`).
    voice: VoiceInput | None = None


class CharacterReplied(Event):
    """The character's whole reply, with what it cost to produce."""

    type: Literal["chat.character_replied"] = "chat.character_replied"
    version: Literal[1] = 1

    conversation_id: UUID
    message_id: UUID
    text: str
    model: str = Field(min_length=1)
    # True when no LLM answered and a canned, offline reply was used instead.
    offline: bool = False
    prompt_tokens: int = Field(default=0, ge=0)
    completion_tokens: int = Field(default=0, ge=0)
    cost_usd: float = Field(default=0.0, ge=0)
    # True when the server reported no usage and the token counts (so the cost) are estimates.
    tokens_estimated: bool = False
    in_reply_to: UUID | None = None
    # Who the reply was for and who spoke, so usage can be totalled from these events alone.
    user_id: UserId | None = None
    character_id: CharacterId | None = None
    # The chain making the picture this reply promises (see `ImageRequestedInChat`).
    chain_id: UUID | None = None
    # The user asked for a picture, but the character has no reference photo yet: none was requested.
    needs_reference: bool = False
    # The user asked for a picture, but their session may make no more without logging in: none was requested.
    login_required: bool = False


class ImageRequestedInChat(Event):
    """A message asked for a picture; the chain that will make it is named here."""

    type: Literal["chat.image_requested"] = "chat.image_requested"
    version: Literal[1] = 1

    conversation_id: UUID
    message_id: UUID
    chain_id: UUID
    request_text: str = Field(min_length=1)
    # The conversation's picture this one edits (a follow-up: "now make her wave"); None: the reference photo.
    parent_chain_id: UUID | None = None


class ChatPictureSelected(Event):
    """A message moved the conversation back to an earlier picture ("go back to the previous one", "start
    over"): the next edit in this conversation starts from it. `chain_id` None means the reference photo."""

    type: Literal["chat.picture_selected"] = "chat.picture_selected"
    version: Literal[1] = 1

    conversation_id: UUID
    message_id: UUID
    chain_id: UUID | None = None


class ChatMessageRefused(Event):
    """A message was not taken into the conversation; `rule` says which rule.

    Rules: `chat.unknown_character`, `chat.not_your_conversation`, `chat.other_character`
    (a conversation is with one character only).
    """

    type: Literal["chat.message_refused"] = "chat.message_refused"
    version: Literal[1] = 1

    conversation_id: UUID
    message_id: UUID
    user_id: UserId
    reason: Reason
    rule: str = Field(min_length=1)


class ChatTokenDelta(Ephemeral):
    """A fragment of a reply while it streams; `message_id` is the reply's id (as in `CharacterReplied`).

    `index` counts the fragments of one reply from 0; a fragment with index 0 after others means the
    reply starts over (the LLM failed mid-answer and the offline persona answers instead).
    """

    type: Literal["chat.token_delta"] = "chat.token_delta"
    version: Literal[1] = 1

    conversation_id: UUID
    message_id: UUID
    delta: str
    in_reply_to: UUID | None = None
    index: int | None = Field(default=None, ge=0)
