"""The rows of the gateway's views: the statements that write them and the objects read back from them.

Every write is an idempotent upsert guarded by the stream version, so a projector pass that runs
again after a crash writes the same rows.
"""

from __future__ import annotations

import json
from typing import Any

import asyncpg

from contracts import (
    CharacterReferenceSet,
    CharacterReplied,
    ConversationStarted,
    ImageRef,
    Message,
    ModelUsage,
)
from services.gateway.readmodels.chains import ChainSummary, ImageRow, StepSummary
from services.gateway.readmodels.characters import CharacterView
from services.runtime.eventstore import RecordedEvent

__all__ = ["INSERT_IMAGE", "UPSERT_CHAIN", "UPSERT_CHARACTER", "UPSERT_USER_REFERENCE", "chain_args",
           "chain_from_row", "character_args", "character_from_row", "image_args", "project_chat",
           "user_reference_args"]


UPSERT_CHAIN = """
    INSERT INTO chains_view (chain_id, user_id, character_id, status, request_text, parent_chain_id,
                             branch_from_step, batch_id, threshold, final_sha256, steps, outcome, version,
                             created_at, updated_at, llm_usage)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11::jsonb, $12, $13, $14, $15, $16::jsonb)
    ON CONFLICT (chain_id) DO UPDATE SET
        user_id = excluded.user_id, character_id = excluded.character_id, status = excluded.status,
        request_text = excluded.request_text, parent_chain_id = excluded.parent_chain_id,
        branch_from_step = excluded.branch_from_step, batch_id = excluded.batch_id,
        threshold = excluded.threshold, final_sha256 = excluded.final_sha256, steps = excluded.steps,
        outcome = excluded.outcome, version = excluded.version, updated_at = excluded.updated_at,
        llm_usage = excluded.llm_usage
    WHERE chains_view.version < excluded.version
"""

INSERT_IMAGE = """
    INSERT INTO images_view (chain_id, role, step, attempt, sha256, user_id, media_type, width, height, bytes,
                             kind, score, created_at)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
    ON CONFLICT ON CONSTRAINT images_view_pkey DO NOTHING
"""


def chain_args(s: ChainSummary) -> tuple[Any, ...]:
    return (s.chain_id, s.user_id, s.character_id, s.status, s.request_text, s.parent_chain_id, s.branch_from_step,
            s.batch_id, s.threshold, s.final_sha256, json.dumps([step.to_json() for step in s.steps]), s.outcome,
            s.version, s.created_at, s.updated_at, None if s.llm_usage is None else s.llm_usage.model_dump_json())


def image_args(i: ImageRow) -> tuple[Any, ...]:
    return (i.chain_id, i.role, i.step, i.attempt, i.image.sha256, i.user_id, i.image.media_type, i.image.width,
            i.image.height, i.image.bytes, i.kind, i.score, i.created_at)


def chain_from_row(row: asyncpg.Record) -> ChainSummary:
    steps = row["steps"]
    steps = json.loads(steps) if isinstance(steps, str) else steps
    return ChainSummary(
        chain_id=row["chain_id"], user_id=row["user_id"], character_id=row["character_id"], status=row["status"],
        request_text=row["request_text"], parent_chain_id=row["parent_chain_id"],
        branch_from_step=row["branch_from_step"], batch_id=row["batch_id"], threshold=row["threshold"],
        final_sha256=row["final_sha256"], steps=tuple(StepSummary.from_json(s) for s in steps),
        outcome=row["outcome"], version=row["version"], created_at=row["created_at"], updated_at=row["updated_at"],
        llm_usage=_usage(row.get("llm_usage")))


def _usage(value: str | dict | None) -> ModelUsage | None:
    if value is None:
        return None
    return ModelUsage.model_validate(json.loads(value) if isinstance(value, str) else value)


UPSERT_CHARACTER = """
    INSERT INTO characters_view (character_id, name, gender, personality, occupation, persona, art_style, owner,
                                 builtin, reference, reference_sha256, threshold, version, created_at, updated_at)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10::jsonb, $11, $12, $13, $14, $15)
    ON CONFLICT (character_id) DO UPDATE SET
        name = excluded.name, gender = excluded.gender, personality = excluded.personality,
        occupation = excluded.occupation, persona = excluded.persona, art_style = excluded.art_style,
        owner = excluded.owner, builtin = excluded.builtin, reference = excluded.reference,
        reference_sha256 = excluded.reference_sha256, threshold = excluded.threshold, version = excluded.version,
        updated_at = excluded.updated_at
    WHERE characters_view.version < excluded.version
"""


def character_args(v: CharacterView) -> tuple[Any, ...]:
    reference = None if v.reference is None else v.reference.model_dump_json()
    return (v.character_id, v.name, v.gender, v.personality, v.occupation, v.persona, v.art_style, v.owner,
            v.builtin, reference, None if v.reference is None else v.reference.sha256, v.threshold, v.version,
            v.created_at, v.updated_at)


UPSERT_USER_REFERENCE = """
    INSERT INTO user_references_view (character_id, user_id, reference, reference_sha256, version, updated_at)
    VALUES ($1, $2, $3::jsonb, $4, $5, $6)
    ON CONFLICT (character_id, user_id) DO UPDATE SET
        reference = excluded.reference, reference_sha256 = excluded.reference_sha256, version = excluded.version,
        updated_at = excluded.updated_at
    WHERE user_references_view.version < excluded.version
"""


def user_reference_args(record: RecordedEvent, event: CharacterReferenceSet) -> tuple[Any, ...]:
    return (event.character_id, event.for_user, event.image.model_dump_json(), event.image.sha256,
            record.envelope.seq or 0, record.recorded_at)


def character_from_row(row: asyncpg.Record) -> CharacterView:
    """A `characters_view` row; a built-in one with the row's `user_reference` (joined in) as its reference."""
    view = CharacterView(
        character_id=row["character_id"], name=row["name"], gender=row["gender"], personality=row["personality"],
        occupation=row["occupation"], persona=row["persona"], art_style=row["art_style"], owner=row["owner"],
        builtin=row["builtin"], reference=_image(row["reference"]), threshold=row["threshold"],
        version=row["version"], exists=True, created_at=row["created_at"], updated_at=row["updated_at"])
    return view.for_user(_image(row.get("user_reference")))


def _image(value: str | dict | None) -> ImageRef | None:
    if value is None:
        return None
    return ImageRef.model_validate(json.loads(value) if isinstance(value, str) else value)


# -- conversations and the cost of replies ------------------------------------------------------------


async def project_chat(conn: asyncpg.Connection, record: RecordedEvent, message: Message) -> None:
    if isinstance(message, ConversationStarted):
        await conn.execute(
            "INSERT INTO conversations_view (conversation_id, user_id, character_id, started_at) "
            "VALUES ($1, $2, $3, $4) ON CONFLICT (conversation_id) DO NOTHING",
            message.conversation_id, message.user_id, message.character_id, record.recorded_at)
    elif isinstance(message, CharacterReplied):
        await conn.execute(
            """INSERT INTO replies_view (event_id, conversation_id, message_id, user_id, character_id, model, offline,
                                         prompt_tokens, completion_tokens, cost_usd, replied_at, tokens_estimated)
               VALUES ($1, $2, $3,
                       coalesce($4, (SELECT user_id FROM conversations_view WHERE conversation_id = $2)),
                       coalesce($5, (SELECT character_id FROM conversations_view WHERE conversation_id = $2)),
                       $6, $7, $8, $9, $10, $11, $12)
               ON CONFLICT (event_id) DO NOTHING""",
            record.envelope.event_id, message.conversation_id, message.message_id, message.user_id,
            message.character_id, message.model, message.offline, message.prompt_tokens, message.completion_tokens,
            message.cost_usd, record.recorded_at, message.tokens_estimated)
