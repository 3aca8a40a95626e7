"""The face model settings of issue 16: allowed licences and dlib's reduced detection size."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from services.facecheck.settings import FacecheckSettings


def test_the_default_allows_only_licences_that_permit_commercial_use() -> None:
    allowed = FacecheckSettings().allowed_licences
    assert "CC0-1.0" in allowed and "MIT" in allowed and "Apache-2.0" in allowed
    assert not any("non-commercial" in name.lower() for name in allowed)


def test_licences_come_comma_separated_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LIKENESS_FACE_ALLOWED_LICENCES", " MIT , insightface-non-commercial ,")
    monkeypatch.setenv("LIKENESS_FACE_DLIB_DETECT_SIDE", "0")
    settings = FacecheckSettings()
    assert settings.allowed_licences == ["MIT", "insightface-non-commercial"]
    assert settings.face_dlib_detect_side == 0


@pytest.mark.parametrize("field", [{"face_allowed_licences": " , "}, {"face_dlib_detect_side": -1}])
def test_bad_values_are_refused(field: dict) -> None:
    with pytest.raises(ValidationError):
        FacecheckSettings(**field)
