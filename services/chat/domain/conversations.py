"""A conversation's state folded from its stream, and the rules for messages and replies. Pure: no I/O.

A message is taken in (`ReceiveMessage`: started if new, recorded, and a picture chain requested when
the message asks for one, the character has a reference photo and the sender may make another
picture), then answered (`RecordReply`,
decided on a reply the application produced). A message id already in the conversation, or a message
already answered, decides nothing: that is what makes a redelivered command harmless.

Pictures in a conversation build on each other: a picture request (or an edit instruction such as "now
make her wave") edits the conversation's current picture, the last one it accepted, as a branch from that
chain's last step; "start over" edits the reference photo and "go back to the previous picture" the one
before (`edit_base`). A message that only goes back records `ChatPictureSelected` and asks for nothing.
Which chains completed is read by the application and given to the rules as `pictures`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Literal
from uuid import UUID

from contracts import (
    CharacterReplied,
    ChatMessageRefused,
    ChatPictureSelected,
    ConversationStarted,
    Event,
    ImageRef,
    ImageRequestedInChat,
    Message,
    RequestChain,
    SendChatMessage,
    UserMessageSent,
)
from contracts.decision import Decision
from services.chat.domain.characters import CharacterState
from services.chat.follow_up import PictureBasis, basis_only, edit_request, picture_basis
from services.chat.intent import picture_request

__all__ = [
    "NOT_YOUR_CONVERSATION",
    "OTHER_CHARACTER",
    "UNKNOWN_CHARACTER",
    "WINDOW",
    "ConversationState",
    "Exchange",
    "Picture",
    "PicturePlan",
    "Pictures",
    "ReceiveMessage",
    "RecordReply",
    "decide",
    "evolve",
    "current_picture",
    "edit_base",
    "picture_plan",
    "requested_scene",
]

UNKNOWN_CHARACTER = "chat.unknown_character"
NOT_YOUR_CONVERSATION = "chat.not_your_conversation"
OTHER_CHARACTER = "chat.other_character"

# Messages the state remembers (for the LLM's history and to recognise resends); older ones fall off.
WINDOW = 200


@dataclass(frozen=True)
class Exchange:
    """One user message and what became of it."""

    message_id: UUID
    text: str = ""
    refused: bool = False
    chain_id: UUID | None = None
    picture_scene: str | None = None
    # The conversation's earlier picture the requested one edits (None: the reference photo).
    parent_chain_id: UUID | None = None
    # The message moved the conversation back to `picked_chain_id` (None there: the reference photo).
    picked: bool = False
    picked_chain_id: UUID | None = None
    reply: str | None = None
    reply_offline: bool = False


@dataclass(frozen=True)
class ConversationState:
    conversation_id: UUID | None = None
    version: int = 0
    character_id: str | None = None
    user_id: str | None = None
    exchanges: tuple[Exchange, ...] = ()

    @property
    def started(self) -> bool:
        return self.user_id is not None

    @property
    def offline_replies(self) -> int:
        return sum(1 for e in self.exchanges if e.reply_offline)

    def exchange(self, message_id: UUID) -> Exchange | None:
        return next((e for e in reversed(self.exchanges) if e.message_id == message_id), None)


@dataclass(frozen=True)
class Picture:
    """An accepted picture of this conversation, as its chain recorded it; a follow-up edit starts from it."""

    chain_id: UUID
    image: ImageRef
    last_step: int
    parent_chain_id: UUID | None = None


# The conversation's accepted pictures by chain id, read from their chains by the application.
Pictures = Mapping[UUID, Picture]


@dataclass(frozen=True)
class ReceiveMessage:
    """Take a user's message in; `character` is the character's state as read for this message."""

    command: SendChatMessage
    message_id: UUID
    character: CharacterState
    # The chain a picture request would start; derived from the message id by the application.
    chain_id: UUID
    pictures: Pictures = field(default_factory=dict)


@dataclass(frozen=True)
class RecordReply:
    """Record the character's reply to `message_id`, produced by the LLM or the offline persona."""

    message_id: UUID
    reply_id: UUID
    text: str
    model: str
    offline: bool
    character: CharacterState
    chain_id: UUID
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    tokens_estimated: bool = False
    # A picture the reply itself asked for (the LLM's `request_picture` tool), if any.
    picture_scene: str | None = None
    # Whether the sender may start another picture (see `SendChatMessage.pictures_allowed`).
    pictures_allowed: bool = True
    # Which picture the reply's own picture request edits (the LLM tool says, or the message's words do).
    basis: PictureBasis = "continue"
    pictures: Pictures = field(default_factory=dict)


Trigger = ReceiveMessage | RecordReply


@dataclass(frozen=True)
class PicturePlan:
    """What a reply says about a picture: on its way (`chain_id`), or why not: no reference photo yet,
    or the sender must log in to make more pictures."""

    scene: str
    status: Literal["requested", "needs_reference", "login_required"]
    chain_id: UUID | None = None
    # The picture the requested one edits; None: the reference photo.
    base: Picture | None = None


def picture_plan(
    exchange: Exchange, character: CharacterState, scene: str | None, chain_id: UUID, *, allowed: bool = True,
    base: Picture | None = None,
) -> PicturePlan | None:
    """The picture a reply to `exchange` speaks of: the one already requested, or the one `scene` asks for
    (an edit of `base`, or of the reference photo)."""
    if exchange.chain_id is not None:
        return PicturePlan(exchange.picture_scene or scene or "", "requested", exchange.chain_id)
    if scene is None:
        return None
    if character.reference is None:
        return PicturePlan(scene, "needs_reference")
    if not allowed:
        return PicturePlan(scene, "login_required")
    return PicturePlan(scene, "requested", chain_id, base)


def current_picture(state: ConversationState, pictures: Pictures) -> Picture | None:
    """The picture a follow-up edit starts from: the latest accepted picture asked for in this conversation,
    or the one a later "go back" picked. A picture still being made is not one yet: there is nothing to edit."""
    for exchange in reversed(state.exchanges):
        if exchange.picked:
            return pictures.get(exchange.picked_chain_id) if exchange.picked_chain_id else None
        if exchange.chain_id is not None and exchange.chain_id in pictures:
            return pictures[exchange.chain_id]
    return None


def requested_scene(state: ConversationState, pictures: Pictures, text: str) -> str | None:
    """The scene the phrase rules read in `text`: a picture request, or, when the conversation has a picture
    to edit, an edit instruction without a picture word ("now make her wave")."""
    scene = picture_request(text)
    if scene is None and current_picture(state, pictures) is not None:
        scene = edit_request(text)
    return scene


def edit_base(state: ConversationState, pictures: Pictures, basis: PictureBasis) -> Picture | None:
    """The picture an edit asked for with `basis` starts from; None: the reference photo."""
    current = current_picture(state, pictures)
    if basis == "original" or current is None:
        return None
    if basis == "continue":
        return current
    # "previous": the picture the current one was edited from, else the accepted one asked for before it.
    if current.parent_chain_id is not None:
        return pictures.get(current.parent_chain_id)
    earlier = False
    for exchange in reversed(state.exchanges):
        if exchange.chain_id == current.chain_id:
            earlier = True
        elif earlier and exchange.chain_id is not None and exchange.chain_id in pictures:
            return pictures[exchange.chain_id]
    return None


def evolve(state: ConversationState, event: Message, version: int | None = None) -> ConversationState:
    state = replace(state, version=version if version is not None else state.version + 1)
    match event:
        case ConversationStarted():
            return replace(state, conversation_id=event.conversation_id, character_id=event.character_id,
                           user_id=event.user_id)
        case UserMessageSent():
            return _append(state, Exchange(event.message_id, event.text))
        case ChatMessageRefused():
            return _append(replace(state, conversation_id=event.conversation_id),
                           Exchange(event.message_id, refused=True))
        case ImageRequestedInChat():
            return _update(state, event.message_id, chain_id=event.chain_id, picture_scene=event.request_text,
                           parent_chain_id=event.parent_chain_id)
        case ChatPictureSelected():
            return _update(state, event.message_id, picked=True, picked_chain_id=event.chain_id)
        case CharacterReplied() if event.in_reply_to is not None:
            return _update(state, event.in_reply_to, reply=event.text, reply_offline=event.offline)
    return state


def decide(state: ConversationState, trigger: Trigger) -> Decision:
    match trigger:
        case ReceiveMessage():
            return _receive(state, trigger)
        case RecordReply():
            return _reply(state, trigger)
    raise TypeError(f"not a conversation trigger: {trigger!r}")


def _receive(state: ConversationState, receive: ReceiveMessage) -> Decision:
    command, character = receive.command, receive.character
    if state.exchange(receive.message_id) is not None:
        return Decision()
    refusal = _refusal(state, command, character)
    if refusal is not None:
        rule, reason = refusal
        return Decision([ChatMessageRefused(conversation_id=command.conversation_id, message_id=receive.message_id,
                                            user_id=command.user_id, reason=reason, rule=rule)])
    events: list[Event] = []
    if not state.started:
        events.append(ConversationStarted(conversation_id=command.conversation_id,
                                          character_id=command.character_id, user_id=command.user_id))
    events.append(UserMessageSent(conversation_id=command.conversation_id, message_id=receive.message_id,
                                  text=command.text, voice=command.voice))
    basis = picture_basis(command.text)
    current = current_picture(state, receive.pictures)
    if current is not None and basis_only(command.text):
        # "Go back to the previous one" / "start over": nothing to make, the next edit starts there.
        picked = edit_base(state, receive.pictures, basis)
        return Decision([*events, ChatPictureSelected(conversation_id=command.conversation_id,
                                                      message_id=receive.message_id,
                                                      chain_id=picked.chain_id if picked else None)])
    scene = requested_scene(state, receive.pictures, command.text)
    plan = picture_plan(Exchange(receive.message_id, command.text), character, scene, receive.chain_id,
                        allowed=command.pictures_allowed, base=edit_base(state, receive.pictures, basis))
    if plan is None or plan.chain_id is None:
        return Decision(events)
    picture = _request_picture(command.conversation_id, receive.message_id, plan, character, command.user_id)
    return Decision([*events, *picture.events], picture.commands)


def _refusal(state: ConversationState, command: SendChatMessage, character: CharacterState) -> tuple[str, str] | None:
    if state.started and state.user_id != command.user_id:
        return NOT_YOUR_CONVERSATION, "this conversation belongs to another user"
    if state.started and state.character_id != command.character_id:
        return OTHER_CHARACTER, (f"this conversation is with {state.character_id!r}, not {command.character_id!r}; "
                                 "start a new conversation to talk to another character")
    if character.profile is None:
        return UNKNOWN_CHARACTER, f"there is no character {command.character_id!r}"
    return None


def _reply(state: ConversationState, reply: RecordReply) -> Decision:
    exchange = state.exchange(reply.message_id)
    if exchange is None or exchange.refused or exchange.reply is not None or state.conversation_id is None:
        return Decision()
    plan = picture_plan(exchange, reply.character, reply.picture_scene, reply.chain_id,
                        allowed=reply.pictures_allowed, base=edit_base(state, reply.pictures, reply.basis))
    picture = Decision()
    if plan is not None and plan.chain_id is not None and exchange.chain_id is None:
        assert state.user_id is not None
        picture = _request_picture(state.conversation_id, reply.message_id, plan, reply.character, state.user_id)
    replied = CharacterReplied(
        conversation_id=state.conversation_id, message_id=reply.reply_id, text=reply.text, model=reply.model,
        offline=reply.offline, prompt_tokens=reply.prompt_tokens, completion_tokens=reply.completion_tokens,
        cost_usd=reply.cost_usd, tokens_estimated=reply.tokens_estimated, in_reply_to=reply.message_id,
        user_id=state.user_id,
        character_id=state.character_id, chain_id=plan.chain_id if plan else None,
        needs_reference=plan is not None and plan.status == "needs_reference",
        login_required=plan is not None and plan.status == "login_required",
    )
    return Decision([*picture.events, replied], picture.commands)


def _request_picture(conversation_id: UUID, message_id: UUID, plan: PicturePlan, character: CharacterState,
                     user_id: str) -> Decision:
    assert plan.chain_id is not None and character.profile is not None and character.reference is not None
    base = plan.base
    requested = ImageRequestedInChat(conversation_id=conversation_id, message_id=message_id, chain_id=plan.chain_id,
                                     request_text=plan.scene, parent_chain_id=base.chain_id if base else None)
    # A follow-up is a branch from the base picture's last step: the planner edits that image, the face is
    # still checked against the reference photo, and the edit tree shows the path.
    command = RequestChain(chain_id=plan.chain_id, character_id=character.profile.character_id, user_id=user_id,
                           request_text=plan.scene, reference_image=character.reference,
                           parent_chain_id=base.chain_id if base else None,
                           branch_from_step=base.last_step if base else None,
                           input_image=base.image if base else None)
    return Decision([requested], [command])


def _append(state: ConversationState, exchange: Exchange) -> ConversationState:
    return replace(state, exchanges=(*state.exchanges, exchange)[-WINDOW:])


def _update(state: ConversationState, message_id: UUID, **changes: object) -> ConversationState:
    exchanges = tuple(replace(e, **changes) if e.message_id == message_id else e for e in state.exchanges)
    return replace(state, exchanges=exchanges)
