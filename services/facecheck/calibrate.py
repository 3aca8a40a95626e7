"""`likeness facecheck calibrate`: embed labelled photos once, measure the recognizer, fit and write its calibration.

The edge around `calibration` (pure math): reads the pairs file and the images, embeds each image's
primary (largest) face once, and prints the report. Images without a face are reported and their
pairs skipped.
"""

from __future__ import annotations

import argparse
import csv
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from services.facecheck.calibration import DEFAULT_THRESHOLD, Calibration, Fit, auc, eer, fit, raw_similarity, rates
from services.facecheck.calibration_files import write_calibration
from services.facecheck.encoder import FaceEncoder, decode_image
from services.facecheck.errors import FacecheckError, UnreadableImage
from services.facecheck.scoring import primary_face

__all__ = ["Pair", "PairScore", "add_arguments", "calibrate", "main", "read_pairs", "report"]

_YES = {"yes", "same", "true", "1"}
_NO = {"no", "different", "false", "0"}
CANDIDATE_THRESHOLDS = tuple(range(20, 65, 5))


@dataclass(frozen=True)
class Pair:
    x: str
    y: str
    same: bool


@dataclass(frozen=True)
class PairScore:
    pair: Pair
    raw: float
    score: float  # under the fitted calibration, rounded as the service rounds


@dataclass
class Result:
    recognizer: str
    metric: str
    scores: list[PairScore]
    fitted: Fit
    calibration: Calibration
    no_face: list[str] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)
    skipped_pairs: int = 0


def read_pairs(path: Path) -> list[Pair]:
    """Rows `file_x,file_y,Decision` (Yes/No); a `ValueError` naming the line for anything else."""
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        needed = {"file_x", "file_y", "Decision"}
        if not needed <= set(reader.fieldnames or ()):
            raise ValueError(f"{path}: needs the columns file_x,file_y,Decision; has {reader.fieldnames}")
        pairs = []
        for line, row in enumerate(reader, start=2):
            decision = (row["Decision"] or "").strip().lower()
            if decision not in _YES | _NO:
                raise ValueError(f"{path} line {line}: Decision must be Yes or No, not {row['Decision']!r}")
            pairs.append(Pair(row["file_x"].strip(), row["file_y"].strip(), decision in _YES))
    if not pairs:
        raise ValueError(f"{path}: no pairs")
    return pairs


def embed_images(encoder: FaceEncoder, folder: Path, names: list[str]) -> tuple[dict[str, np.ndarray], list, list]:
    """Each image's primary face embedding, once per file; the names with no face and the unreadable ones."""
    embeddings, no_face, unreadable = {}, [], []
    for name in names:
        try:
            faces = encoder.encode(decode_image((folder / name).read_bytes(), max_pixels=80_000_000))
        except (OSError, UnreadableImage) as exc:
            unreadable.append(f"{name} ({exc})")
            continue
        face = primary_face(faces)
        if face is None:
            no_face.append(name)
        else:
            embeddings[name] = face.embedding
    return embeddings, no_face, unreadable


def calibrate(encoder: FaceEncoder, pairs: list[Pair], folder: Path, *, threshold: float = DEFAULT_THRESHOLD,
              max_same_rejected: float = 0.01, source: str = "") -> Result:
    metric = getattr(encoder, "metric", "cosine")
    names = sorted({p.x for p in pairs} | {p.y for p in pairs})
    embeddings, no_face, unreadable = embed_images(encoder, folder, names)
    usable = [p for p in pairs if p.x in embeddings and p.y in embeddings]
    raws = [raw_similarity(metric, embeddings[p.x], embeddings[p.y]) for p in usable]
    same = [r for p, r in zip(usable, raws) if p.same]
    different = [r for p, r in zip(usable, raws) if not p.same]
    fitted = fit(same, different, metric, threshold=threshold, max_same_rejected=max_same_rejected)
    calibration = Calibration(encoder.name, metric, fitted.knots)
    scores = [PairScore(p, r, round(calibration.score(r), 2)) for p, r in zip(usable, raws)]
    at = rates([s.score for s in scores if s.pair.same], [s.score for s in scores if not s.pair.same], threshold)
    meta = {"fitted_on": {"pairs": source, "images": len(names), "images_without_face": no_face + unreadable,
                          "same_pairs": len(same), "different_pairs": len(different),
                          "skipped_pairs": len(pairs) - len(usable)},
            "target": {"threshold": threshold, "max_same_rejected": max_same_rejected, "met": fitted.feasible,
                       "how": fitted.note},
            "figures": {"auc": round(auc(same, different, metric), 4),
                        "eer": round(eer(same, different, metric)[0], 4),
                        "same_rejected_at_threshold": at.same_rejected,
                        "different_accepted_at_threshold": at.different_accepted},
            "date": datetime.now(UTC).date().isoformat()}
    return Result(encoder.name, metric, scores, fitted, Calibration(encoder.name, metric, fitted.knots, meta),
                  no_face, unreadable, len(pairs) - len(usable))


def report(result: Result, *, threshold: float = DEFAULT_THRESHOLD, current: Calibration | None = None) -> str:
    """The printed report: counts, AUC, EER, raw ranges, and errors at candidate thresholds."""
    same = [s for s in result.scores if s.pair.same]
    diff = [s for s in result.scores if not s.pair.same]
    metric = result.metric
    e, e_cut = eer([s.raw for s in same], [s.raw for s in diff], metric)  # type: ignore[arg-type]
    lines = [f"recognizer {result.recognizer} ({metric}); pairs: {len(same)} same person, {len(diff)} different, "
             f"{result.skipped_pairs} skipped",
             f"images without a face: {', '.join(result.no_face) or 'none'}",
             f"unreadable images: {', '.join(result.unreadable) or 'none'}",
             f"AUC {auc([s.raw for s in same], [s.raw for s in diff], metric):.4f}   "  # type: ignore[arg-type]
             f"EER {e:.2%} (raw cut {e_cut:.4f})"]
    for label, group in (("same person", same), ("different people", diff)):
        raws = sorted(s.raw for s in group)
        lines.append(f"{label:17} raw {raws[0]:.4f} .. {raws[-1]:.4f} (median {float(np.median(raws)):.4f})")
    knots = ", ".join(f"{r:g}->{s:g}" for r, s in result.fitted.knots)
    lines += [f"fitted knots: {knots}", f"fit: {result.fitted.note}"]
    tables = [("fitted", lambda raw: round(result.calibration.score(raw), 2))]
    if current is not None:
        tables.append(("current", lambda raw: round(current.score(raw), 2)))
    for label, score in tables:
        lines.append(_table(label, score, same, diff, threshold))
    return "\n".join(lines)


def _table(label: str, score: Callable[[float], float], same: list, diff: list, threshold: float) -> str:
    same_scores = [score(s.raw) for s in same]
    diff_scores = [score(s.raw) for s in diff]
    rows = [f"{label} mapping: same person scores {min(same_scores):.1f} .. {max(same_scores):.1f} "
            f"(median {float(np.median(same_scores)):.1f}); different people {min(diff_scores):.1f} .. "
            f"{max(diff_scores):.1f} (median {float(np.median(diff_scores)):.1f})",
            f"  {'threshold':>9} {'same rejected':>18} {'different accepted':>20}"]
    for t in sorted({*CANDIDATE_THRESHOLDS, threshold}):
        r = rates(same_scores, diff_scores, t)
        mark = "  <- default" if t == threshold else ""
        rows.append(f"  {t:9g} {r.same_rejected:4d}/{r.same_total:<4d} {r.same_rejected_rate:7.1%} "
                    f"{r.different_accepted:6d}/{r.different_total:<4d} {r.different_accepted_rate:7.1%}{mark}")
    return "\n".join(rows)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--pairs", type=Path, required=True, help="CSV with file_x,file_y,Decision (Yes/No)")
    parser.add_argument("--images", type=Path, required=True, help="folder holding the pairs' image files")
    parser.add_argument("--write", type=Path, help="write the fitted calibration (JSON) to this file")
    parser.add_argument("--pair-scores", type=Path, help="write each pair's raw value and score (CSV)")
    parser.add_argument("--backend", choices=("dlib", "insightface"), default="dlib",
                        help="the recognizer: dlib (default) or an insightface/ArcFace-style pack (--model-dir)")
    parser.add_argument("--model-dir", type=Path, help="the pack folder for --backend insightface")
    parser.add_argument("--full-detection", action="store_true",
                        help="dlib: detect at full size only (the path before the reduced first pass)")
    parser.add_argument("--threshold", type=float, default=DEFAULT_THRESHOLD)
    parser.add_argument("--max-same-rejected", type=float, default=0.01,
                        help="share of same-person pairs the threshold may reject (default 0.01)")


def main(args: argparse.Namespace) -> int:
    """Run the calibration the parsed arguments describe; 0 when the target held, 1 when not, 2 on bad input."""
    try:
        pairs = read_pairs(args.pairs)
        if not args.images.is_dir():
            raise ValueError(f"--images {args.images} is not a folder")
        encoder = _encoder(args)
        result = calibrate(encoder, pairs, args.images, threshold=args.threshold,
                           max_same_rejected=args.max_same_rejected, source=str(args.pairs))
    except (OSError, ValueError, FacecheckError) as exc:
        print(f"calibrate: {exc}", file=sys.stderr)
        return 2
    print(report(result, threshold=args.threshold, current=getattr(encoder, "calibration", None)))
    if args.pair_scores:
        with open(args.pair_scores, "w", newline="", encoding="utf-8") as handle:
            out = csv.writer(handle)
            out.writerow(["file_x", "file_y", "same", "raw", "score"])
            out.writerows([s.pair.x, s.pair.y, int(s.pair.same), f"{s.raw:.6f}", f"{s.score:.2f}"]
                          for s in result.scores)
    if args.write:
        write_calibration(args.write, result.calibration)
        print(f"wrote {args.write}")
    return 0 if result.fitted.feasible else 1


def _encoder(args: argparse.Namespace) -> FaceEncoder:
    if args.backend == "insightface":
        if args.model_dir is None:
            raise ValueError("--backend insightface needs --model-dir (the pack folder)")
        from services.facecheck.insightface_encoder import load_insightface

        return load_insightface(args.model_dir)
    from services.facecheck.dlib_encoder import load_dlib

    return load_dlib(detect_side=None if args.full_detection else 640)
