"""A face model folder's manifest, `likeness-recognizer.json`: which file recognizes, its input size, its
licence and its calibration; and the deployment's licence rule.

    {"model": "w600k_r50.onnx", "input_size": 112, "licence": "non-commercial-research",
     "calibration": "calibration.json"}

Face recognition weights come under many licences, several forbidding commercial use; the
manifest says which one applies, and the service refuses to start with a licence the deployment
has not allowed (LIKENESS_FACE_ALLOWED_LICENCES).
"""

from __future__ import annotations

import json
from collections.abc import Collection
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from services.facecheck.errors import LicenceRefused, ModelPackError

__all__ = ["MANIFEST", "RecognizerManifest", "check_licence", "read_manifest"]

MANIFEST = "likeness-recognizer.json"


class RecognizerManifest(BaseModel):
    """What the manifest of a model folder says."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    # The recognizer's ONNX file in the folder (ArcFace-style: 1x3xSxS aligned face in, one embedding out).
    model: str = Field(min_length=1)
    input_size: int = Field(default=112, ge=32, le=1024)
    # An SPDX identifier where one exists (MIT, Apache-2.0), else a short name of the terms.
    licence: str = Field(min_length=1)
    # This recognizer's calibration file in the folder; without one the score is cosine x 100.
    calibration: str | None = None
    # The recognizer's name in events and calibration files; default: insightface/<folder name>.
    name: str | None = None


def read_manifest(folder: Path) -> RecognizerManifest | None:
    """The folder's manifest, None when it has none; `ModelPackError` naming the file when it is malformed."""
    path = folder / MANIFEST
    if not path.is_file():
        return None
    try:
        manifest = RecognizerManifest.model_validate(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelPackError(f"{path} is unreadable: {exc}") from None
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'manifest'}: {e['msg']}" for e in exc.errors())
        raise ModelPackError(f"{path}: {problems}") from None
    for what, name in (("model", manifest.model), ("calibration", manifest.calibration)):
        if name is not None and (Path(name).name != name or not (folder / name).is_file()):
            raise ModelPackError(f"{path}: {what} file {name!r} is not a file in {folder}")
    return manifest


def check_licence(folder: Path, manifest: RecognizerManifest | None, allowed: Collection[str]) -> None:
    """`LicenceRefused`, one line saying what to set, unless the folder's licence is allowed ("*" allows any)."""
    names = {a.strip().casefold() for a in allowed}
    if "*" in names:
        return
    setting = "LIKENESS_FACE_ALLOWED_LICENCES"
    if manifest is None:
        raise LicenceRefused(f"face model folder {folder} has no {MANIFEST} naming its licence: add one "
                             f'(e.g. {{"model": "w600k_r50.onnx", "licence": "..."}}), or set {setting}=* '
                             f"to accept any model")
    if manifest.licence.casefold() not in names:
        raise LicenceRefused(f"face model folder {folder}: licence {manifest.licence!r} is not allowed in this "
                             f"deployment ({setting}={','.join(allowed)}); add it to {setting} if you may use "
                             f"these weights under it")
