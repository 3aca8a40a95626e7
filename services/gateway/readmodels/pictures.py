"""A user's pictures: one entry per finished chain, its final image with the steps that led to it.

A chain's last step makes the image the chain ends with, so the picture is listed once, as the
chain's; its steps come along for a viewer, never as pictures of their own.
"""

from __future__ import annotations

from typing import Any

import asyncpg

from services.gateway.readmodels.view_rows import chain_from_row

__all__ = ["PICTURES", "image_urls", "picture_entry"]

PICTURES = """
    SELECT c.*, i.sha256, i.media_type, i.width, i.height, i.bytes, i.created_at AS made_at
    FROM images_view i JOIN chains_view c ON c.chain_id = i.chain_id
    WHERE i.user_id = $1 AND i.role = 'final' AND ($2::text IS NULL OR c.character_id = $2)
      AND NOT EXISTS (SELECT 1 FROM hidden_pictures h WHERE h.chain_id = i.chain_id)
    ORDER BY i.created_at DESC, i.chain_id
    LIMIT $3 OFFSET $4
"""


def image_urls(sha256: str) -> dict[str, str]:
    """The links of an image, as /me/images gives them."""
    return {"url": f"/images/{sha256}", "thumb_url": f"/images/{sha256}?thumb=1",
            "download_url": f"/images/{sha256}?download=1"}


def picture_entry(row: asyncpg.Record) -> dict[str, Any]:
    """A row of `PICTURES` as the API lists it."""
    chain = chain_from_row(row)
    steps = [{"index": s.index, "kind": s.kind, "seed": s.seed, "score": s.score, "sha256": s.sha256,
              **(image_urls(s.sha256) if s.sha256 else {"url": None, "thumb_url": None, "download_url": None})}
             for s in chain.steps]
    return {
        "chain_id": str(chain.chain_id), "character_id": chain.character_id or None, "request_text": chain.request_text,
        "created_at": row["made_at"].isoformat(), "score": chain.score, "threshold": chain.threshold,
        "parent_chain_id": None if chain.parent_chain_id is None else str(chain.parent_chain_id),
        "branch_from_step": chain.branch_from_step,
        "sha256": row["sha256"], "media_type": row["media_type"], "width": row["width"], "height": row["height"],
        "bytes": row["bytes"], **image_urls(row["sha256"]), "steps": steps,
    }
