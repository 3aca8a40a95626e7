"""What a learned per-character threshold changes on real photos: genuine pictures rejected and impostors let
through, at the default threshold (the baseline, same run) and at the threshold each face learned.

    python -m bench.learned_threshold [--pairs CSV] [--min-scores N] [--threshold T]

Data: shared/data/face-pairs (several real photos of each person; identities from the `Yes` pairs). Every
photo of a person serves once as the reference ("the character"); its other photos stand for the
character's accepted pictures, scored by the dlib face check in a fixed order. Learning sees only the
scores a threshold in force let through, as in the planner; the learned threshold is that rule's result
after them all. Impostors are every other person's photos against the same reference. Prints figures only.
"""

from __future__ import annotations

import argparse
import csv
import statistics
from collections import defaultdict
from pathlib import Path

from services.facecheck.dlib_encoder import load_dlib
from services.facecheck.encoder import decode_image
from services.facecheck.scoring import primary_face
from services.planner.thresholds import ThresholdRule, learn

PAIRS = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "face-pairs" / "master.csv"


def identities(pairs: Path) -> dict[str, str]:
    """photo -> a person's id, from the `Yes` pairs (connected components)."""
    parent: dict[str, str] = {}

    def root(x: str) -> str:
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    with pairs.open() as handle:
        for row in csv.DictReader(handle):
            a, b = root(row["file_x"]), root(row["file_y"])
            if row["Decision"] == "Yes":
                parent[a] = b
    return {photo: root(photo) for photo in parent}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=Path, default=PAIRS)
    parser.add_argument("--min-scores", type=int, default=3)
    parser.add_argument("--threshold", type=float, default=40.0)
    args = parser.parse_args()
    rule = ThresholdRule(ceiling=args.threshold, min_scores=args.min_scores)
    person = identities(args.pairs)
    encoder = load_dlib()
    embeddings = {}
    for photo in sorted(person):
        face = primary_face(encoder.encode(decode_image((args.pairs.parent / photo).read_bytes())))
        if face is not None:
            embeddings[photo] = face.embedding
    photos = defaultdict(list)
    for photo in embeddings:
        photos[person[photo]].append(photo)
    genuine_default = genuine_learned = genuine_total = 0
    impostors_default = impostors_learned = impostor_total = 0
    learned_values, worst_margin = [], float("inf")
    for people in photos.values():
        for reference in people:
            others = [p for p in people if p != reference]
            scores = [encoder.similarity(embeddings[reference], embeddings[p]) for p in others]
            strangers = [encoder.similarity(embeddings[reference], embeddings[p])
                         for p in embeddings if person[p] != person[reference]]
            threshold, kept = args.threshold, []
            for score in scores:
                if score >= threshold:
                    kept.append(round(score, 2))
                    found = learn(kept, rule)
                    threshold = found.threshold if found else threshold
            if threshold != args.threshold:
                learned_values.append(threshold)
            genuine_total += len(scores)
            genuine_default += sum(s < args.threshold for s in scores)
            genuine_learned += sum(s < threshold for s in scores)
            impostor_total += len(strangers)
            impostors_default += sum(s >= args.threshold for s in strangers)
            impostors_learned += sum(s >= threshold for s in strangers)
            worst_margin = min(worst_margin, threshold - max(strangers))
    references = sum(len(p) for p in photos.values())
    print(f"{len(embeddings)} photos with a face, {len(photos)} people, {references} references; rule: "
          f"q{rule.quantile:g} - {rule.margin:g} within [{rule.floor:g}, {rule.ceiling:g}], "
          f"after {rule.min_scores} kept scores")
    print(f"{'threshold':28} {'genuine rejected':>18} {'impostors accepted':>20}")
    print(f"{'default ' + format(args.threshold, 'g') + ' (baseline)':28} "
          f"{genuine_default:>6} / {genuine_total:<10} {impostors_default:>7} / {impostor_total:<10}")
    print(f"{'learned per reference':28} {genuine_learned:>6} / {genuine_total:<10} "
          f"{impostors_learned:>7} / {impostor_total:<10}")
    ratio = genuine_learned / genuine_default if genuine_default else float("nan")
    print(f"genuine rejections, learned vs default: {ratio:.2f}x")
    if learned_values:
        print(f"learned below the default for {len(learned_values)} of {references} references: "
              f"min {min(learned_values):.1f}, median {statistics.median(learned_values):.1f}")
    print(f"closest impostor to its reference's threshold: {worst_margin:.1f} points below it")


if __name__ == "__main__":
    main()
