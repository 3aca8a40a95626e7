"""JSON Schema files for every message type and the envelope, for non-Python consumers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from contracts import REGISTRY
from contracts.envelope import Envelope
from contracts.registry import MessageRegistry

__all__ = ["export_schemas"]


def export_schemas(directory: Path, registry: MessageRegistry = REGISTRY) -> list[Path]:
    """Write `<type>.v<version>.json` per message type plus `envelope.json`; return the paths."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for type_, model in sorted(registry.models.items()):
        path = directory / f"{type_}.v{registry.current_version(type_)}.json"
        _write(path, model.model_json_schema())
        written.append(path)
    envelope = directory / "envelope.json"
    _write(envelope, Envelope.model_json_schema())
    written.append(envelope)
    return written


def _write(path: Path, schema: dict[str, Any]) -> None:
    # Sorted keys and a trailing newline keep the files stable, so diffs show real changes.
    path.write_text(json.dumps(schema, indent=2, sort_keys=True) + "\n", encoding="utf-8")
