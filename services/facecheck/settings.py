"""The facecheck service's settings: the shared runtime settings plus its own (prefix LIKENESS_)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from services.runtime.settings import RuntimeSettings

__all__ = ["FacecheckSettings"]


class FacecheckSettings(RuntimeSettings):
    """Settings of the facecheck service."""

    service_name: str = "facecheck"

    # "auto": insightface when a model pack folder is configured, dlib (offline, CPU) otherwise.
    face_backend: Literal["auto", "dlib", "insightface"] = "auto"
    # An insightface pack folder (e.g. .../buffalo_l); never downloaded, so it must exist at start-up.
    face_model_dir: Path | None = None
    # Square input of the insightface detector; packs' SCRFD models take multiples of 32.
    face_det_size: int = Field(default=640, ge=64, le=2048, multiple_of=32)
    face_det_threshold: float = Field(default=0.5, gt=0, lt=1)
    # dlib's HOG finds faces down to ~80 px; each upsampling halves that and costs ~4x the time.
    face_dlib_upsample: int = Field(default=1, ge=0, le=2)
    # dlib detects on a copy reduced to this many px first (HOG's cost grows with pixels); 0: full size only.
    face_dlib_detect_side: int = Field(default=640, ge=0, le=4096)
    # Reference embeddings kept in memory, one per distinct reference image.
    face_cache_size: int = Field(default=256, ge=1)
    # Licences (comma-separated, as a model folder's likeness-recognizer.json names them) the face model may
    # carry; "*" accepts any. The default allows only terms that permit commercial use without asking anyone
    # (dlib's models are CC0); insightface's own packs (buffalo_l, antelopev2) are for non-commercial research,
    # so a deployment that may use them says so by adding their licence here.
    face_allowed_licences: str = "MIT,Apache-2.0,BSD-2-Clause,BSD-3-Clause,CC0-1.0,CC-BY-4.0"

    @field_validator("face_model_dir", mode="before")
    @classmethod
    def _blank_is_none(cls, value: object) -> object:
        # An empty LIKENESS_FACE_MODEL_DIR= means "none", not the current directory.
        return None if isinstance(value, str) and not value.strip() else value

    @model_validator(mode="after")
    def _pack_for_insightface(self) -> FacecheckSettings:
        if self.face_backend == "insightface" and self.face_model_dir is None:
            raise ValueError("LIKENESS_FACE_BACKEND=insightface needs LIKENESS_FACE_MODEL_DIR (a model pack folder)")
        return self

    @field_validator("face_allowed_licences")
    @classmethod
    def _some_licence(cls, value: str) -> str:
        if not [name for name in value.split(",") if name.strip()]:
            raise ValueError("LIKENESS_FACE_ALLOWED_LICENCES names no licence (use * to accept any)")
        return value

    @property
    def allowed_licences(self) -> list[str]:
        """LIKENESS_FACE_ALLOWED_LICENCES as a list."""
        return [name.strip() for name in self.face_allowed_licences.split(",") if name.strip()]

    @property
    def resolved_backend(self) -> Literal["dlib", "insightface"]:
        """The backend `auto` stands for with these settings."""
        if self.face_backend != "auto":
            return self.face_backend
        return "insightface" if self.face_model_dir is not None else "dlib"
