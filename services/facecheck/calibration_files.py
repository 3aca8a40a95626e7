"""Calibration files: JSON on disk (see `Calibration.to_json`), the shipped ones inside the package."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

from services.facecheck.calibration import Calibration
from services.facecheck.errors import ModelPackError

__all__ = ["DLIB_CALIBRATION", "load_calibration", "packaged_calibration", "write_calibration"]

# Re-derived from the labelled real photos of shared/data/face-pairs (CALIBRATION.md).
DLIB_CALIBRATION = "dlib_resnet_v1.json"


def load_calibration(path: Path, *, recognizer: str | None = None) -> Calibration:
    """Read a calibration file; `ModelPackError` naming the file when it is missing, not JSON or not one."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelPackError(f"calibration file {path} does not exist") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelPackError(f"calibration file {path} is unreadable: {exc}") from None
    try:
        calibration = Calibration.from_json(data, source=f"calibration file {path}")
    except ValueError as exc:
        raise ModelPackError(str(exc)) from None
    if recognizer is not None and calibration.recognizer != recognizer:
        # A mapping fitted on another model's raw values would score nonsense without any error.
        raise ModelPackError(f"calibration file {path} is for {calibration.recognizer}, not {recognizer}")
    return calibration


def packaged_calibration(name: str, *, recognizer: str | None = None) -> Calibration:
    """A calibration shipped in services/facecheck/calibrations (package data, so it is in the wheel)."""
    source = resources.files("services.facecheck") / "calibrations" / name
    with resources.as_file(source) as path:
        return load_calibration(path, recognizer=recognizer)


def write_calibration(path: Path, calibration: Calibration) -> None:
    Path(path).write_text(json.dumps(calibration.to_json(), indent=2) + "\n", encoding="utf-8")
