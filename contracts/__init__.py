"""Typed messages of Likeness: commands, events and live traffic, and the envelope they travel in.

`REGISTRY` knows every message type; readers decode with
`Envelope.from_bytes(raw).open(REGISTRY)`, which validates and upcasts old versions.
"""

from __future__ import annotations

from contracts.base import Command, Ephemeral, Event, ImageRef, Message, StepAttempt
from contracts.chain import (
    CHAIN_ENDS,
    AttemptScore,
    BatchCompleted,
    CancelChain,
    ChainCancelled,
    ChainCompleted,
    ChainFailed,
    ChainPlanned,
    ChainRefused,
    ChainRequested,
    LoraUse,
    PlannedStep,
    RequestChain,
    StepAccepted,
    StepFailed,
    StepRendered,
    StepRequested,
    StepRetried,
    StepScored,
)
from contracts.character import (
    CharacterCreated,
    CharacterPersonaUpdated,
    CharacterReferenceSet,
    CharacterRefused,
    CharacterThresholdSet,
    CreateCharacter,
    SetCharacterReference,
    UpdatePersona,
)
from contracts.chat import (
    CharacterReplied,
    ChatMessageRefused,
    ChatPictureSelected,
    ChatTokenDelta,
    ConversationStarted,
    ImageRequestedInChat,
    SendChatMessage,
    UserMessageSent,
)
from contracts.envelope import Envelope, TraceContext
from contracts.usage import ModelUsage
from contracts.errors import ContractError, MalformedMessage, UnknownMessageType, UnsupportedVersion
from contracts.face import FaceBox, FaceCheckFailed, FaceScored, ReferenceCheckReply, ReferenceCheckRequest, ScoreFace
from contracts.fields import (
    Attempt,
    Cfg,
    CharacterId,
    Denoise,
    Dimension,
    LoraStrength,
    Reason,
    SamplerSteps,
    Score,
    Seed,
    StepIndex,
    Timings,
    UserId,
)
from contracts.registry import MessageRegistry, Upcaster
from contracts.render import (
    RenderCompleted,
    RenderFailed,
    RenderPreview,
    RenderProgress,
    RenderStep,
    RenderWaiting,
)

__all__ = [
    "CHAIN_ENDS",
    "BatchCompleted",
    "REGISTRY",
    "Attempt",
    "AttemptScore",
    "CancelChain",
    "Cfg",
    "ChainCancelled",
    "ChainCompleted",
    "ChainFailed",
    "ChainPlanned",
    "ChainRefused",
    "ChainRequested",
    "CharacterCreated",
    "CharacterId",
    "CharacterPersonaUpdated",
    "CharacterReferenceSet",
    "CharacterRefused",
    "CharacterReplied",
    "CharacterThresholdSet",
    "ChatMessageRefused",
    "ChatPictureSelected",
    "ChatTokenDelta",
    "Command",
    "ContractError",
    "ConversationStarted",
    "CreateCharacter",
    "Denoise",
    "Dimension",
    "Envelope",
    "Ephemeral",
    "Event",
    "FaceBox",
    "FaceCheckFailed",
    "FaceScored",
    "ImageRef",
    "ImageRequestedInChat",
    "LoraStrength",
    "LoraUse",
    "MalformedMessage",
    "ModelUsage",
    "Message",
    "MessageRegistry",
    "PlannedStep",
    "Reason",
    "ReferenceCheckReply",
    "ReferenceCheckRequest",
    "RenderCompleted",
    "RenderFailed",
    "RenderPreview",
    "RenderProgress",
    "RenderStep",
    "RenderWaiting",
    "RequestChain",
    "SamplerSteps",
    "Score",
    "ScoreFace",
    "Seed",
    "SendChatMessage",
    "SetCharacterReference",
    "StepAccepted",
    "StepAttempt",
    "StepFailed",
    "StepIndex",
    "StepRendered",
    "StepRequested",
    "StepRetried",
    "StepScored",
    "Timings",
    "TraceContext",
    "UnknownMessageType",
    "UnsupportedVersion",
    "UpdatePersona",
    "Upcaster",
    "UserId",
    "UserMessageSent",
    "all_message_types",
]

REGISTRY = MessageRegistry(
    [
        # chain
        RequestChain,
        CancelChain,
        ChainRequested,
        ChainRefused,
        ChainPlanned,
        StepRequested,
        StepRendered,
        StepScored,
        StepAccepted,
        StepRetried,
        StepFailed,
        ChainCompleted,
        ChainFailed,
        ChainCancelled,
        BatchCompleted,
        # render
        RenderStep,
        RenderProgress,
        RenderWaiting,
        RenderPreview,
        RenderCompleted,
        RenderFailed,
        # face
        ScoreFace,
        FaceScored,
        FaceCheckFailed,
        # character
        CreateCharacter,
        SetCharacterReference,
        UpdatePersona,
        CharacterCreated,
        CharacterReferenceSet,
        CharacterPersonaUpdated,
        CharacterThresholdSet,
        CharacterRefused,
        # chat
        SendChatMessage,
        ConversationStarted,
        UserMessageSent,
        CharacterReplied,
        ImageRequestedInChat,
        ChatPictureSelected,
        ChatMessageRefused,
        ChatTokenDelta,
    ]
)


def all_message_types() -> tuple[type[Message], ...]:
    """Every registered message model, in registration order."""
    return tuple(REGISTRY.models.values())
