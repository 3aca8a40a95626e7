"""The conversation's accepted pictures, read from their chains' streams in the log.

A follow-up edit ("now make her wave") starts from the last picture the conversation accepted, so the chat
service needs to know which of its chains completed and with which image. It reads that from the chains'
own streams, read-only: the planner stays their only writer. Only the latest chains are read (a follow-up
edits a recent picture), each once per message.
"""

from __future__ import annotations

from uuid import UUID

from contracts import REGISTRY, ChainCompleted, ChainRequested
from contracts.streams import chain_stream
from services.chat.domain.conversations import ConversationState, Picture
from services.runtime.eventstore import EventStore

__all__ = ["LOOKBACK", "accepted_pictures"]

# Chains read per message: enough to go back a few pictures, few enough to stay a handful of small reads.
LOOKBACK = 12


async def accepted_pictures(store: EventStore, state: ConversationState) -> dict[UUID, Picture]:
    """The completed pictures among the conversation's latest chains (and those a "go back" picked)."""
    wanted: list[UUID] = []
    for exchange in reversed(state.exchanges):
        for chain_id in (exchange.chain_id, exchange.picked_chain_id):
            if chain_id is not None and chain_id not in wanted:
                wanted.append(chain_id)
        if len(wanted) >= LOOKBACK:
            break
    pictures: dict[UUID, Picture] = {}
    for chain_id in wanted:
        picture = await _accepted(store, chain_id)
        if picture is not None:
            pictures[chain_id] = picture
    return pictures


async def _accepted(store: EventStore, chain_id: UUID) -> Picture | None:
    parent: UUID | None = None
    for _version, message in await store.replay(chain_stream(chain_id), REGISTRY):
        if isinstance(message, ChainRequested):
            parent = message.parent_chain_id
        elif isinstance(message, ChainCompleted):
            return Picture(chain_id, message.final_image, len(message.step_images) - 1, parent)
    return None
