"""The insightface backend offline: both real SCRFD detectors on t1.jpg, and the start-up checks of a model pack.

No ArcFace weights exist here, so the embedding path runs on a stand-in recognizer built at test
time: an ONNX graph with ArcFace's interface (1x3x112x112 in, one embedding out) that insightface
routes, aligns for (`norm_crop`) and runs exactly as it would a real one.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from services.facecheck.checker import FaceChecker
from services.facecheck.encoder import decode_image
from services.facecheck.errors import ModelPackError
from services.facecheck.insightface_encoder import InsightFaceEncoder, choose_providers, load_insightface
from services.facecheck.loading import load_encoder
from services.facecheck.manifest import MANIFEST
from services.facecheck.scoring import NO_FACE
from services.facecheck.settings import FacecheckSettings
from tests.conftest import REPO
from tests.faces import PEOPLE, face_of, group_photo_path, no_face_image, two_faces_image

pytestmark = [pytest.mark.integration,
              pytest.mark.filterwarnings("ignore:`estimate` is deprecated:FutureWarning")]

SCRFD = REPO.parent / "shared" / "models" / "scrfd"
DETECTORS = ("scrfd_500m_kps.onnx", "scrfd_2.5g_kps.onnx")
# Where the six faces of t1.jpg are (x0, y0, x1, y1), leftmost first.
T1_BOXES = [(59, 263, 169, 396), (269, 147, 371, 265), (465, 265, 573, 416),
            (746, 339, 846, 481), (905, 54, 1013, 204), (1131, 271, 1226, 399)]


def stand_in_recognizer(path: Path, dims: int = 128) -> Path:
    """Write an ONNX model with ArcFace's interface: average-pool the aligned face, project it to `dims`."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weights = np.random.default_rng(7).standard_normal((3 * 14 * 14, dims)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("AveragePool", ["data"], ["pooled"], name="pool", kernel_shape=[8, 8], strides=[8, 8]),
         helper.make_node("Flatten", ["pooled"], ["flat"], name="flatten"),
         helper.make_node("MatMul", ["flat", "weights"], ["fc1"], name="project")],
        "stand_in_arcface",
        [helper.make_tensor_value_info("data", TensorProto.FLOAT, ["N", 3, 112, 112])],
        [helper.make_tensor_value_info("fc1", TensorProto.FLOAT, ["N", dims])],
        [numpy_helper.from_array(weights, "weights")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
    onnx.save(model, str(path))
    return path


def pack(folder: Path, *, detector: str | None, recognizer: bool, licence: str | None = "MIT") -> Path:
    """A model folder; with a recognizer, its likeness-recognizer.json (licence None: no manifest)."""
    folder.mkdir()
    if detector is not None:
        (folder / "det_10g.onnx").symlink_to(SCRFD / detector)
    if recognizer:
        stand_in_recognizer(folder / "w600k_r50.onnx")
        if licence is not None:
            (folder / MANIFEST).write_text(json.dumps({"model": "w600k_r50.onnx", "licence": licence}))
    return folder


@pytest.fixture(scope="module", autouse=True)
def detectors_present() -> None:
    missing = [name for name in DETECTORS if not (SCRFD / name).is_file()]
    if missing:
        pytest.skip(f"SCRFD test models missing from {SCRFD}: {missing}")


@pytest.fixture(scope="module", params=DETECTORS)
def encoder(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> InsightFaceEncoder:
    folder = tmp_path_factory.mktemp("packs") / request.param.removesuffix(".onnx")
    return load_insightface(pack(folder, detector=request.param, recognizer=True))


def test_each_scrfd_model_finds_the_six_faces_of_the_group_photo(encoder: InsightFaceEncoder) -> None:
    faces = sorted(encoder.encode(decode_image(group_photo_path().read_bytes())), key=lambda f: f.x)
    assert len(faces) == PEOPLE
    for face, (x0, y0, x1, y1) in zip(faces, T1_BOXES):
        assert abs(face.x - x0) < 12 and abs(face.y - y0) < 12
        assert abs(face.x + face.width - x1) < 12 and abs(face.y + face.height - y1) < 12
        assert face.det_score > 0.5 and face.landmarks.shape == (5, 2)
        assert (face.landmarks[:, 0] > face.x).all() and (face.landmarks[:, 0] < face.x + face.width).all()
        left_eye, right_eye = face.landmarks[0], face.landmarks[1]
        assert left_eye[0] < right_eye[0]  # insightface's order: the eye on the image's left first
        assert face.embedding.shape == (128,) and np.linalg.norm(face.embedding) == pytest.approx(1, abs=1e-5)


def test_crops_no_face_and_two_faces(encoder: InsightFaceEncoder) -> None:
    assert [len(encoder.encode(decode_image(face_of(p)))) for p in range(PEOPLE)] == [1] * PEOPLE
    assert encoder.encode(decode_image(no_face_image())) == []
    assert len(encoder.encode(decode_image(two_faces_image()))) == 2


def test_the_whole_score_path_runs_align_and_embed(encoder: InsightFaceEncoder) -> None:
    checker = FaceChecker(encoder)
    same = checker.score(face_of(2), face_of(2))
    assert same.faces_found == 1 and same.score == 100.0
    assert checker.score(no_face_image(), face_of(2)).reason == NO_FACE
    assert encoder.name.startswith("insightface/scrfd_")
    assert encoder.providers[-1] == "CPUExecutionProvider"


def test_a_pack_without_a_recognition_model_is_refused_naming_the_folder(tmp_path: Path) -> None:
    folder = pack(tmp_path / "buffalo_half", detector=DETECTORS[0], recognizer=False)
    with pytest.raises(ModelPackError, match=rf"{folder}.* no recognition model \(ArcFace\) among: det_10g.onnx"):
        load_insightface(folder)


def test_a_pack_without_a_detector_is_refused(tmp_path: Path) -> None:
    folder = pack(tmp_path / "only_rec", detector=None, recognizer=True)
    with pytest.raises(ModelPackError, match=rf"{folder}.* no face detector \(SCRFD/RetinaFace\)"):
        load_insightface(folder)


def test_missing_empty_or_damaged_folders_are_start_up_errors_and_nothing_downloads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # insightface would download into ~/.insightface
    with pytest.raises(ModelPackError, match="buffalo_l does not exist"):
        load_insightface(tmp_path / "buffalo_l")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelPackError, match="holds no .onnx model files"):
        load_insightface(tmp_path / "empty")
    (tmp_path / "damaged").mkdir()
    (tmp_path / "damaged" / "det_10g.onnx").write_bytes(b"not a model")
    with pytest.raises(ModelPackError, match="damaged: cannot load"):
        load_insightface(tmp_path / "damaged")
    assert not (tmp_path / "home").exists()


def test_settings_with_a_pack_load_insightface(tmp_path: Path) -> None:
    folder = pack(tmp_path / "buffalo_test", detector=DETECTORS[0], recognizer=True)
    encoder = load_encoder(FacecheckSettings(face_model_dir=folder, face_det_size=640))
    assert encoder.name == "insightface/buffalo_test"
    assert choose_providers()[-1] == "CPUExecutionProvider"
