"""Face check cost per image on this machine, against decoding the image alone; `--calibrate` prints dlib's distances.

    python -m bench.facecheck [--repeat N] [--pack DIR] [--no-baseline] [--calibrate]

Timings use a render-like 1024x1024 portrait, one 256 px face crop (both cut from t1.jpg) and
insightface's sample group photo t1.jpg (1280x886, six faces). "dlib check" is the service's
per-attempt work: decode, detect, embed every face, score against the cached reference; it runs
the path before issue 16 (full-size detection) and the reduced first pass in the same run and
prints their ratio. SCRFD detectors come from shared/models/scrfd; an insightface pack with a recognition model
(`--pack`, or LIKENESS_FACE_MODEL_DIR) adds the full insightface pipeline. Prints figures only.
"""

from __future__ import annotations

import argparse
import functools
import itertools
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from services.facecheck.checker import FaceChecker
from services.facecheck.dlib_encoder import load_dlib
from services.facecheck.encoder import decode_image
from tests.faces import PEOPLE, VARIANTS, face_of, group_photo_path, same_face_variant

SCRFD_DIR = Path(__file__).resolve().parent.parent.parent / "shared" / "models" / "scrfd"
SCRFD_MODELS = ("scrfd_500m_kps.onnx", "scrfd_2.5g_kps.onnx")


def per_call_ms(func: Callable[[], object], repeat: int) -> float:
    """Median milliseconds of one call, after one warm-up call."""
    func()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        func()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def paired_ms(funcs: dict[str, Callable[[], object]], repeat: int) -> dict[str, float]:
    """Median milliseconds of each call, the calls taken in turn, so a busy machine slows all alike."""
    times: dict[str, list[float]] = {name: [] for name in funcs}
    for func in funcs.values():
        func()
    for _ in range(repeat):
        for name, func in funcs.items():
            start = time.perf_counter()
            func()
            times[name].append((time.perf_counter() - start) * 1000)
    return {name: statistics.median(values) for name, values in times.items()}


def typical_picture() -> bytes:
    """A render-like 1024x1024 PNG: one person's head and shoulders, the face about 430 px high."""
    return face_of(2, size=1024, margin=0.7)


def timings(repeat: int, pack: Path | None, baseline: bool) -> None:
    photo = group_photo_path().read_bytes()
    crop = face_of(2)
    images = {"typical 1024x1024, 1 face": typical_picture(), "face crop 256x256": crop,
              "t1.jpg 1280x886, 6 faces": photo}
    after = load_dlib()
    # The path before issue 16: HOG over the whole picture (at most 1024 px), upsampled once.
    before = load_dlib(detect_side=None) if baseline else None
    hog = __import__("dlib").get_frontal_face_detector()
    encoder = None
    if pack is not None:
        from services.facecheck.insightface_encoder import load_insightface

        encoder = load_insightface(pack)
    print(f"{'pipeline':56} {'image':26} {'ms/image':>9} {'x decode':>9}")
    for label, data in images.items():
        decode_ms = per_call_ms(functools.partial(decode_image, data), repeat)
        pixels = decode_image(data)
        bgr = np.ascontiguousarray(pixels[:, :, ::-1])
        rows = [("decode only (baseline)", decode_ms)]
        calls, found = {}, {}
        for name, dlib in (("before: full-size detection", before), ("after: reduced first pass", after)):
            if dlib is None:
                continue
            checker = FaceChecker(dlib)
            checker.reference_embedding(crop)  # cached, as the service caches a character's reference
            calls[name] = lambda data=data, checker=checker: checker.score(data, crop)
            found[name] = len(dlib.encode(pixels))
        checks = paired_ms(calls, repeat)
        rows += [(f"dlib check {name} (faces: {found[name]})", ms) for name, ms in checks.items()]
        rows.append(("dlib HOG detection only (full res, upsample 1)",
                     per_call_ms(lambda data=data: hog.run(decode_image(data), 1, 0.0), repeat)))
        for name in SCRFD_MODELS:
            path = SCRFD_DIR / name
            if not path.is_file():
                rows.append((f"insightface {name} detection (model missing)", float("nan")))
                continue
            detector = _scrfd(path)
            found = len(detector.detect(bgr)[0])
            rows.append((f"insightface {name.removesuffix('.onnx')} det (faces: {found})",
                         per_call_ms(lambda data=data, detector=detector: detector.detect(_bgr(data)), repeat)))
        if encoder is not None:
            rows.append((f"insightface {pack.name} full (det+align+arcface)",
                         per_call_ms(lambda data=data: encoder.encode(decode_image(data)), repeat)))
        for name, ms in rows:
            print(f"{name:56} {label:26} {ms:9.1f} {ms / decode_ms:9.1f}")
        if len(checks) == 2:
            old, new = checks.values()
            print(f"{'dlib check: before / after':56} {label:26} {old / new:8.2f}x")
    if pack is None:
        print("insightface embedding: no pack with a recognition model here (--pack DIR or LIKENESS_FACE_MODEL_DIR)")


def _bgr(data: bytes) -> np.ndarray:
    return np.ascontiguousarray(decode_image(data)[:, :, ::-1])


def _scrfd(path: Path):
    from insightface.model_zoo import get_model

    detector = get_model(str(path), providers=["CPUExecutionProvider"])
    detector.prepare(0, input_size=(640, 640), det_thresh=0.5)
    return detector


def calibrate() -> None:
    """dlib descriptor distances, same vs different person, over crops and transformed copies of t1.jpg."""
    dlib = load_dlib()
    distance_to_score = dlib.calibration.score
    embeddings, missed = {}, []
    for person in range(PEOPLE):
        for variant in ("original", *VARIANTS):
            data = face_of(person) if variant == "original" else same_face_variant(person, variant)
            faces = dlib.encode(decode_image(data))
            if faces:
                embeddings[(person, variant)] = max(faces, key=lambda f: f.area).embedding
            else:
                missed.append(f"person {person} {variant}")
    same, different, closest = [], [], (9.0, None, None)
    for a, b in itertools.combinations(embeddings, 2):
        distance = float(np.linalg.norm(embeddings[a] - embeddings[b]))
        (same if a[0] == b[0] else different).append(distance)
        if a[0] != b[0] and distance < closest[0]:
            closest = (distance, a, b)
    print(f"images: {len(embeddings)} embedded, no face found in: {', '.join(missed) or 'none'}")
    print(f"{'pairs':18} {'n':>5} {'min':>7} {'mean':>7} {'max':>7}   score range")
    for label, values in (("same person", same), ("different people", different)):
        lo, hi = min(values), max(values)
        print(f"{label:18} {len(values):5d} {lo:7.3f} {statistics.fmean(values):7.3f} {hi:7.3f}"
              f"   {distance_to_score(hi):5.1f} .. {distance_to_score(lo):5.1f}")
    print(f"closest different people: person {closest[1][0]} {closest[1][1]} vs person {closest[2][0]} "
          f"{closest[2][1]} at {closest[0]:.3f}")
    for variant in VARIANTS:
        values = [float(np.linalg.norm(embeddings[(p, "original")] - embeddings[(p, variant)]))
                  for p in range(PEOPLE) if (p, "original") in embeddings and (p, variant) in embeddings]
        print(f"  original vs {variant:9} same person: {min(values):.3f} .. {max(values):.3f} (n={len(values)})")
    wrong = sum(distance_to_score(d) < 40 for d in same) + sum(distance_to_score(d) >= 40 for d in different)
    print(f"pairs on the wrong side of score 40: {wrong} of {len(same) + len(different)}")
    for cutoff in (0.4, 0.45, 0.5, 0.55, 0.6):
        errors = sum(d >= cutoff for d in same) + sum(d < cutoff for d in different)
        print(f"  if the cutoff were distance {cutoff:.2f}: {errors} pairs misjudged")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument("--pack", type=Path, default=os.environ.get("LIKENESS_FACE_MODEL_DIR") or None)
    parser.add_argument("--calibrate", action="store_true", help="print dlib distance figures instead of timings")
    parser.add_argument("--no-baseline", dest="baseline", action="store_false",
                        help="skip the full-size detection path (before issue 16) and the before/after ratio")
    args = parser.parse_args()
    if args.calibrate:
        calibrate()
    else:
        timings(args.repeat, args.pack, args.baseline)


if __name__ == "__main__":
    main()
