"""Duplicate detection accuracy on real photos with copies made by known transforms.

    python benchmarks/dupes_eval.py [FOLDER] [--sources 40] [--seed 0] [--regions scene]

FOLDER defaults to ../shared/data/photos. A seeded sample of its photos is copied with every
transform in dupe_copies.TRANSFORMS (resize, low-quality recompression, 60-95% crops, brightness
and contrast, quarter turns, flips, PNG, EXIF orientation, a text watermark, and three more from
imagededup's "transformed" benchmark: a vertical flip, a 25-degree turn, a squash to 1:1). One
library holds the whole folder and the copies; every other photo is a distractor, among them what
merely looks alike: the BoofCV triplets and stitch views, 29 views of one cathedral, the pixabay
categories.

Ground truth: a copy belongs with its source; originals belong together where
../shared/data/MANIFEST.md says they are one picture (the EXIF orientation set, copies/ beside
their stitch/ and scale/ namesakes, imagededup's files of one UKBench number, its RGBA PNG of
ukbench00120, each HDR on/off pair). The manifest calls the 16 EXIF orientation files one
picture; they are two (a landscape and a portrait shot of one waterfall, 8 files each: 18 ORB
inliers between them, 14 px of parallax), and are scored as two. The BoofCV zoom series (scale/,
and its copies in copies/) is left out of the scoring:
a telephoto shot from the same spot is, pixel for pixel, a crop of the wide one, and is reported
as one; whether that is a duplicate is the user's call.

Pairs are scored as users meet them, within groups: every two photos of a reported group form a
predicted pair. Reported: precision, recall and F1 of pairs overall, recall per transform, the
tier each reported pair got, and the false pairs among look-alikes (which must be none).
Writes benchmarks/results/dupes_eval.json.
"""

from __future__ import annotations

import argparse
import itertools
import os
import re
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
from bench_results import scratch_folder, write_result

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from dupe_copies import TRANSFORMS, make_copies  # noqa: E402

from searchapp.dupes.find import DupeOptions  # noqa: E402
from searchapp.encoders.base import EncoderOptions  # noqa: E402
from searchapp.ingest.pipeline import IndexOptions  # noqa: E402
from searchapp.ingest.regions import RegionOptions, parse_kinds  # noqa: E402
from searchapp.library import Library  # noqa: E402

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png"}


def picture_key(rel: str) -> str | None:
    """Which picture an original shows (see the module docstring); None: leave out of scoring."""
    orientation = re.match(r"exif/orientation/(landscape|portrait)_", rel)
    if orientation:  # two shots of one waterfall, each stored with orientations 1..8
        return "exif-orientation:" + orientation.group(1)
    if rel == "imagededup/alpha_channel_image.png":
        return "ukbench00120"
    zoom = re.match(r"boofcv/(scale|copies)/((beach|mountain|rainforest)_?\w*)\.jpg$", rel)
    if zoom and (rel.startswith("boofcv/scale/") or zoom.group(3) == "rainforest"):
        return None
    matched = re.match(r"boofcv/(copies|stitch)/(.+)\.jpg$", rel)
    if matched:
        return "boofcv:" + matched.group(2)
    ukbench = re.match(r"imagededup/.*ukbench(\d+)", rel)
    if ukbench:
        return "ukbench" + ukbench.group(1)
    hdr = re.match(r"exif/hdr/(\w+)_hdr_", rel)
    if hdr:
        return "hdr:" + hdr.group(1)
    return rel


def look_alike_key(rel: str) -> str | None:
    """Photos that are alike but not copies: same scene or same category."""
    for pattern in (
        r"boofcv/triple/(.+)_\d+\.jpg",
        r"boofcv/stitch/(.+?)_\d+\.jpg",
        r"boofcv/pixabay/([a-z]+)\d+\.jpg",
        r"opensfm/(lund|berlin)/",
    ):
        matched = re.match(pattern, rel)
        if matched:
            return matched.group(1)
    return None


def _scores(precision: float, recall: float) -> dict[str, float]:
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": round(precision, 4), "recall": round(recall, 4), "f1": round(f1, 4)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "folder", nargs="?", type=Path, default=ROOT.parent / "shared" / "data" / "photos"
    )
    parser.add_argument("--sources", type=int, default=40, help="photos to copy")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--regions",
        default="scene",
        help="region kinds indexed (scene is quick; scene,object,tile is the "
        "default of `searchapp index`)",
    )
    parser.add_argument("--work", type=Path, help="keep the copies and library here")
    parser.add_argument(
        "--out", type=Path, default=ROOT / "benchmarks" / "results" / "dupes_eval.json"
    )
    args = parser.parse_args()
    folder = args.folder.resolve()
    if not folder.is_dir():
        print(f"no folder {folder}; pass a folder of photos", file=sys.stderr)
        return 2
    work = args.work or scratch_folder("searchapp-dupes-")
    originals = sorted(
        p
        for p in folder.rglob("*")
        if p.suffix.lower() in IMAGE_SUFFIXES
        and "corrupt" not in p.name
        and picture_key(str(p.relative_to(folder)))
    )
    rng = np.random.default_rng(args.seed)
    sources = [
        originals[i] for i in sorted(rng.choice(len(originals), args.sources, replace=False))
    ]
    copies_dir = work / "copies"
    made = make_copies(sources, folder, copies_dir, seed=args.seed)
    print(f"{len(made)} copies of {len(sources)} photos in {copies_dir}", file=sys.stderr)

    lib = Library(work / "library")
    started = time.monotonic()
    lib.index(
        [str(folder), str(copies_dir)],
        encoder="cnn:efficientnet-lite0",
        encoder_options=EncoderOptions(allow_download=False),
        options=IndexOptions(regions=RegionOptions(kinds=parse_kinds(args.regions))),
    )
    index_seconds = time.monotonic() - started
    started = time.monotonic()
    report = lib.dupes(DupeOptions())
    dupes_seconds = time.monotonic() - started
    started = time.monotonic()
    lib.dupes(DupeOptions())  # again: the pixel checks are remembered
    again_seconds = time.monotonic() - started
    paths = report.table.paths

    def key(path: str) -> str | None:
        if Path(path) in made:
            return key(str(made[Path(path)][0]))
        return picture_key(os.path.relpath(path, folder))

    scored = [p for p in paths if key(p) is not None]
    truth = {(a, b) for a, b in itertools.combinations(sorted(scored), 2) if key(a) == key(b)}
    predicted = set()
    for group in report.groups:
        members = sorted(paths[r] for r in group.rows if key(paths[r]) is not None)
        predicted |= set(itertools.combinations(members, 2))
    hits = len(truth & predicted)
    precision = hits / len(predicted) if predicted else 1.0
    recall = hits / len(truth) if truth else 1.0
    f1 = 2 * precision * recall / (precision + recall) if hits else 0.0
    per_transform = {}
    for name in TRANSFORMS:
        pairs = [
            tuple(sorted((str(c), str(s))))
            for c, (s, _) in made.items()
            if c.parent.name == name and key(str(s)) is not None
        ]
        found = sum(pair in predicted for pair in pairs)
        per_transform[name] = {"pairs": len(pairs), "recall": round(found / len(pairs), 3)}
    tiers = Counter()
    wrong_by_tier = Counter()
    for pair in report.pairs:
        a, b = paths[pair.a], paths[pair.b]
        if key(a) is None or key(b) is None:
            continue
        tiers[pair.tier] += 1
        wrong_by_tier[pair.tier] += key(a) != key(b)
    false_pairs = sorted(predicted - truth)

    def source_rel(path: str) -> str:
        return os.path.relpath(made[Path(path)][0] if Path(path) in made else path, folder)

    look_alike_false = [
        pair for pair in false_pairs if all(look_alike_key(source_rel(p)) for p in pair)
    ]
    by_tier: dict[str, list[float]] = {}
    for name, row in per_transform.items():
        by_tier.setdefault(TRANSFORMS[name].tier, []).extend([row["recall"]] * row["pairs"])
    result = {
        "folder": str(folder),
        "photos": len(paths),
        "copies": len(made),
        "regions": args.regions,
        "index_seconds": round(index_seconds, 1),
        "dupes_seconds": round(dupes_seconds, 1),
        "dupes_seconds_again": round(again_seconds, 2),
        "pairs_proposed": report.proposed,
        "pairs_checked": report.checked,
        "pairs": {"true": len(truth), "predicted": len(predicted), "correct": hits},
        "precision": round(precision, 4),
        "recall": round(recall, 4),
        "f1": round(f1, 4),
        "per_transform_recall": per_transform,
        "reported_pairs_by_tier": {
            t: {"pairs": n, "wrong": wrong_by_tier[t]} for t, n in tiers.items()
        },
        "false_pairs": [
            [os.path.relpath(a, work), os.path.relpath(b, work)] for a, b in false_pairs[:50]
        ],
        "false_pairs_among_look_alikes": len(look_alike_false),
        "by_expected_tier": {
            tier: _scores(
                1 - wrong_by_tier[tier] / tiers[tier] if tiers[tier] else 1.0,
                float(np.mean(recalls)),
            )
            for tier, recalls in by_tier.items()
        },
    }
    write_result(args.out, result)
    print(
        f"photos {len(paths)} (copies {len(made)}), dupes in {dupes_seconds:.1f} s "
        f"({again_seconds:.1f} s run again), "
        f"{report.checked} of {report.proposed} proposed pairs checked"
    )
    print(
        f"pairs: precision {precision:.3f}  recall {recall:.3f}  F1 {f1:.3f} "
        f"({hits} of {len(truth)} true, {len(predicted)} predicted)"
    )
    print("transform    pairs  recall")
    for name, row in per_transform.items():
        print(f"{name:<12} {row['pairs']:>5}  {row['recall']:.3f}")
    print("tier     reported  wrong")
    for tier, row in result["reported_pairs_by_tier"].items():
        print(f"{tier:<8} {row['pairs']:>8}  {row['wrong']:>5}")
    print("expected tier  precision  recall  F1   (recall: its copies found, in any tier)")
    for tier, row in result["by_expected_tier"].items():
        print(f"{tier:<14} {row['precision']:>9.3f}  {row['recall']:.3f}  {row['f1']:.3f}")
    print(f"false pairs among look-alikes: {len(look_alike_false)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
