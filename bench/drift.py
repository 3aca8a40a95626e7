"""What the drift budget costs the face check, and what a budget means on real photos.

    python -m bench.drift [--repeat N] [--budget B]

Cost: one step of 3 attempts scored against the reference only (today, the baseline) and against the
reference and the picture the step edited (the edited picture is embedded once per step, the attempt's
image once for both scores), dlib on real photos of shared/data/face-pairs, same run. Meaning: the drift of
one edit between two real photos of the same person (100 - their similarity), and how many such edits in
a row a budget lets build on each other before the next one re-anchors. Prints figures only.
"""

from __future__ import annotations

import argparse
import hashlib
import statistics
import time
from collections import defaultdict

from bench.learned_threshold import PAIRS, identities
from services.facecheck.checker import FaceChecker
from services.facecheck.dlib_encoder import load_dlib
from services.facecheck.previous import score_with_previous


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--budget", type=float, default=150.0)
    args = parser.parse_args()
    person = identities(PAIRS)
    groups = defaultdict(list)
    for photo in sorted(person):
        groups[person[photo]].append(photo)
    people = max(groups.values(), key=len)
    data = {p: (PAIRS.parent / p).read_bytes() for p in people}
    reference, edited, *attempts = people
    attempts = attempts[:3]
    encoder = load_dlib()
    sha = {p: hashlib.sha256(b).hexdigest() for p, b in data.items()}

    def step(with_previous: bool) -> float:
        checker = FaceChecker(encoder)
        checker.reference_embedding(data[reference], sha256=sha[reference])  # cached as in service
        began = time.perf_counter()
        for attempt in attempts:
            if with_previous:
                score_with_previous(checker, data[attempt], data[reference], data[edited],
                                    reference_sha256=sha[reference], previous_sha256=sha[edited])
            else:
                checker.score(data[attempt], data[reference], reference_sha256=sha[reference])
        return (time.perf_counter() - began) * 1000

    step(True)
    base = statistics.median(step(False) for _ in range(args.repeat))
    both = statistics.median(step(True) for _ in range(args.repeat))
    print(f"one step, {len(attempts)} attempts, dlib on real photos ({', '.join(attempts)}):")
    print(f"  reference only (baseline)          {base:8.0f} ms  {base / len(attempts):6.0f} ms/attempt")
    print(f"  reference + edited picture         {both:8.0f} ms  {both / len(attempts):6.0f} ms/attempt  "
          f"x{both / base:.2f}")
    drifts = []
    checker = FaceChecker(encoder)
    for group in groups.values():
        for i, a in enumerate(group):
            for b in group[i + 1:]:
                ea = checker.reference_embedding((PAIRS.parent / a).read_bytes())
                eb = checker.reference_embedding((PAIRS.parent / b).read_bytes())
                drifts.append(100 - encoder.similarity(ea, eb))
    median = statistics.median(drifts)
    print(f"drift of one edit between two real photos of one person ({len(drifts)} pairs): "
          f"median {median:.1f}, min {min(drifts):.1f}, max {max(drifts):.1f}")
    print(f"budget {args.budget:g}: {args.budget / median:.1f} such edits in a row before the next re-anchors")


if __name__ == "__main__":
    main()
