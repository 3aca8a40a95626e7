"""ArcFace-style ONNX recognizers in a model folder with a manifest: their own calibration, and the licence rule.

The recognizer is a tiny ONNX graph with ArcFace's interface built by the test (no ArcFace weights
exist here); the detector is a real SCRFD model from shared/models/scrfd.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from services.facecheck.checker import FaceChecker
from services.facecheck.errors import LicenceRefused, ModelPackError
from services.facecheck.loading import load_encoder
from services.facecheck.manifest import MANIFEST
from services.facecheck.settings import FacecheckSettings
from services.launcher.embedded import free_port
from tests.conftest import REPO
from tests.faces import face_of
from tests.integration.test_facecheck_insightface import DETECTORS, SCRFD, pack

pytestmark = [pytest.mark.integration,
              pytest.mark.filterwarnings("ignore:`estimate` is deprecated:FutureWarning"),
              pytest.mark.skipif(not (SCRFD / DETECTORS[0]).is_file(), reason=f"SCRFD model missing from {SCRFD}")]

NAME = "arcface/stand-in"
# A calibration unlike cosine x 100, so a test can tell it is used: cosine 0.5 -> 40.
KNOTS = [[0.0, 0.0], [0.5, 40.0], [1.0, 100.0]]


def model_folder(tmp_path: Path, *, licence: str = "MIT", **overrides: object) -> Path:
    folder = pack(tmp_path / "arcface_stand_in", detector=DETECTORS[0], recognizer=True, licence=None)
    (folder / "calibration.json").write_text(json.dumps(
        {"format": 1, "recognizer": NAME, "metric": "cosine", "knots": KNOTS}))
    manifest = {"model": "w600k_r50.onnx", "input_size": 112, "licence": licence,
                "calibration": "calibration.json", "name": NAME, **overrides}
    (folder / MANIFEST).write_text(json.dumps({k: v for k, v in manifest.items() if v is not None}))
    return folder


def test_an_allowed_recognizer_loads_and_scores_through_its_own_calibration(tmp_path: Path) -> None:
    encoder = load_encoder(FacecheckSettings(face_model_dir=model_folder(tmp_path)))
    assert encoder.name == NAME
    a, b = np.array([1.0, 0.0]), np.array([1.0, 1.0])  # cosine 0.7071
    assert encoder.similarity(a, b) == pytest.approx(40 + 60 * (0.70711 - 0.5) / 0.5, abs=1e-3)
    assert encoder.similarity(a, -a) == 0.0
    same = FaceChecker(encoder).score(face_of(2), face_of(2))
    assert same.faces_found == 1 and same.score == 100.0


def test_a_licence_the_deployment_does_not_allow_is_refused_in_one_line(tmp_path: Path) -> None:
    folder = model_folder(tmp_path, licence="non-commercial-research")
    with pytest.raises(LicenceRefused) as refused:
        load_encoder(FacecheckSettings(face_model_dir=folder))
    message = str(refused.value)
    assert "\n" not in message and "'non-commercial-research' is not allowed" in message
    assert "LIKENESS_FACE_ALLOWED_LICENCES" in message and str(folder) in message
    allowed = FacecheckSettings(face_model_dir=folder, face_allowed_licences="MIT, Non-Commercial-Research")
    assert load_encoder(allowed).name == NAME


def test_a_folder_without_a_manifest_is_refused_unless_any_licence_is_allowed(tmp_path: Path) -> None:
    folder = pack(tmp_path / "bare", detector=DETECTORS[0], recognizer=True, licence=None)
    with pytest.raises(LicenceRefused, match=f"has no {MANIFEST} naming its licence"):
        load_encoder(FacecheckSettings(face_model_dir=folder))
    anything = load_encoder(FacecheckSettings(face_model_dir=folder, face_allowed_licences="*"))
    assert anything.name == "insightface/bare" and anything.similarity(np.ones(2), np.ones(2)) == pytest.approx(100.0)


def test_dlib_is_held_to_the_same_rule() -> None:
    with pytest.raises(LicenceRefused, match="'CC0-1.0' is not allowed"):
        load_encoder(FacecheckSettings(face_allowed_licences="MIT"))


@pytest.mark.parametrize(("overrides", "message"), [
    ({"model": "r100.onnx"}, "model file 'r100.onnx' is not a file"),
    ({"input_size": 128}, "input_size 128 but w600k_r50.onnx takes 112x112"),
    ({"name": "arcface/other"}, "is for arcface/stand-in, not arcface/other"),
    ({"licence": ""}, "licence: String should have at least 1 character"),
    ({"licence": None}, "licence: Field required"),
    ({"weights": "x"}, "weights: Extra inputs are not permitted"),
])
def test_manifest_mistakes_are_named(tmp_path: Path, overrides: dict, message: str) -> None:
    with pytest.raises(ModelPackError, match=message):
        load_encoder(FacecheckSettings(face_model_dir=model_folder(tmp_path, **overrides)))


def test_the_service_refuses_to_start_saying_what_to_set(tmp_path: Path, nats_url: str) -> None:
    folder = model_folder(tmp_path, licence="non-commercial-research")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LIKENESS_", "PYTHON"))}
    env.update(LIKENESS_NATS_URL=nats_url, LIKENESS_HTTP_HOST="127.0.0.1", LIKENESS_HTTP_PORT=str(free_port()),
               LIKENESS_ENVIRONMENT="test", LIKENESS_STATE_DIR=str(tmp_path), LIKENESS_FACE_MODEL_DIR=str(folder))
    done = subprocess.run([sys.executable, "-m", "services.facecheck"], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=120)
    output = done.stdout + done.stderr
    assert done.returncode == 2, output
    assert "facecheck cannot start" in output and "LIKENESS_FACE_ALLOWED_LICENCES" in output
    assert "Traceback" not in output


def test_calibrate_fits_the_recognizers_own_file_which_its_manifest_then_names(tmp_path: Path) -> None:
    from tests.faces import PEOPLE, same_face_variant

    folder = pack(tmp_path / "arcface_pack", detector=DETECTORS[0], recognizer=True, licence=None)
    images = tmp_path / "photos"
    images.mkdir()
    rows = ["file_x,file_y,Decision"]
    for person in range(PEOPLE):
        (images / f"p{person}.png").write_bytes(face_of(person))
        (images / f"p{person}b.png").write_bytes(same_face_variant(person, "brighter"))
        rows.append(f"p{person}.png,p{person}b.png,Yes")
        rows += [f"p{person}.png,p{other}b.png,No" for other in range(person + 1, PEOPLE)]
    (tmp_path / "pairs.csv").write_text("\n".join(rows) + "\n")
    done = subprocess.run(
        [sys.executable, "-m", "services.launcher.cli", "facecheck", "calibrate", "--backend", "insightface",
         "--model-dir", str(folder), "--pairs", str(tmp_path / "pairs.csv"), "--images", str(images),
         "--write", str(folder / "calibration.json")], cwd=REPO, capture_output=True, text=True, timeout=300)
    # The stand-in recognizer is a random projection: whether it separates the people is not the point here.
    assert done.returncode in (0, 1), done.stdout + done.stderr
    assert "recognizer insightface/arcface_pack (cosine); pairs: 6 same person, 15 different" in done.stdout
    written = json.loads((folder / "calibration.json").read_text())
    assert written["recognizer"] == "insightface/arcface_pack" and written["metric"] == "cosine"
    (folder / MANIFEST).write_text(json.dumps(
        {"model": "w600k_r50.onnx", "licence": "MIT", "calibration": "calibration.json"}))
    encoder = load_encoder(FacecheckSettings(face_model_dir=folder))
    assert [list(k) for k in encoder.calibration.knots] == written["knots"]
