"""A user's chains as a forest: each chain under the chain it was branched from. Pure."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from services.gateway.readmodels.chains import ChainSummary

__all__ = ["build_tree", "chain_node"]


def chain_node(chain: ChainSummary) -> dict[str, Any]:
    """One node: the chain, its steps with their scores, and (filled in by build_tree) its branches."""
    return {
        "chain_id": str(chain.chain_id),
        "request_text": chain.request_text,
        "character_id": chain.character_id or None,
        "status": chain.status,
        "parent_chain_id": None if chain.parent_chain_id is None else str(chain.parent_chain_id),
        "branch_from_step": chain.branch_from_step,
        "threshold": chain.threshold,
        "score": chain.score,
        "final_sha256": chain.final_sha256,
        "created_at": chain.created_at.isoformat() if chain.created_at else None,
        "steps": [
            {"index": s.index, "kind": s.kind, "score": s.score, "sha256": s.sha256, "state": s.state,
             "attempts": s.attempts, "threshold": chain.threshold}
            for s in chain.steps
        ],
        "branches": [],
    }


def build_tree(chains: list[ChainSummary]) -> list[dict[str, Any]]:
    """Roots oldest first, branches oldest first; a branch whose parent is not in `chains` is a root."""
    ordered = sorted(chains, key=lambda c: (c.created_at is None, c.created_at, str(c.chain_id)))
    nodes: dict[UUID, dict[str, Any]] = {c.chain_id: chain_node(c) for c in ordered}
    roots = []
    for chain in ordered:
        parent = nodes.get(chain.parent_chain_id) if chain.parent_chain_id is not None else None
        if parent is not None and chain.parent_chain_id != chain.chain_id and not _descends(nodes, chain, parent):
            parent["branches"].append(nodes[chain.chain_id])
        else:
            roots.append(nodes[chain.chain_id])
    return roots


def _descends(nodes: dict[UUID, dict[str, Any]], chain: ChainSummary, parent: dict[str, Any]) -> bool:
    """Whether `parent` is already inside `chain`'s subtree (a cycle in bad data must not lose nodes)."""
    stack = list(nodes[chain.chain_id]["branches"])
    while stack:
        node = stack.pop()
        if node is parent:
            return True
        stack.extend(node["branches"])
    return False
