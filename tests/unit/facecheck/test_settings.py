"""Facecheck settings: backend choice and fail-fast validation."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from services.facecheck.settings import FacecheckSettings


def test_auto_is_dlib_without_a_pack_and_insightface_with_one() -> None:
    assert FacecheckSettings().resolved_backend == "dlib"
    with_pack = FacecheckSettings(face_model_dir=Path("/models/buffalo_l"))
    assert with_pack.resolved_backend == "insightface"
    forced = FacecheckSettings(face_backend="dlib", face_model_dir=Path("/models/buffalo_l"))
    assert forced.resolved_backend == "dlib"


def test_settings_come_from_likeness_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LIKENESS_FACE_MODEL_DIR", "/models/buffalo_l")
    monkeypatch.setenv("LIKENESS_FACE_DET_SIZE", "320")
    monkeypatch.setenv("LIKENESS_FACE_CACHE_SIZE", "8")
    settings = FacecheckSettings()
    assert (settings.face_model_dir, settings.face_det_size, settings.face_cache_size) == (
        Path("/models/buffalo_l"), 320, 8)
    monkeypatch.setenv("LIKENESS_FACE_MODEL_DIR", "")
    assert FacecheckSettings().face_model_dir is None


def test_insightface_without_a_pack_is_refused_at_once() -> None:
    with pytest.raises(ValidationError, match="LIKENESS_FACE_MODEL_DIR"):
        FacecheckSettings(face_backend="insightface")


@pytest.mark.parametrize("field", [{"face_det_size": 600}, {"face_cache_size": 0}, {"face_backend": "opencv"}])
def test_bad_values_are_refused(field: dict) -> None:
    with pytest.raises(ValidationError):
        FacecheckSettings(**field)
