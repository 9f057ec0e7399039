"""Duplicate detection accuracy on real photos with copies made by known transforms.

    python benchmarks/dupes_eval.py [FOLDER] [--sources 40] [--seed 0] [--regions scene]

FOLDER defaults to ../shared/data/photos. A seeded sample of its photos is copied with every
transform in dupe_copies.TRANSFORMS (resize, low-quality recompression, 60-95% crops, brightness
and contrast, quarter turns, flips, PNG, EXIF orientation, a text watermark, and three more from
imagededup's "transformed" benchmark: a vertical flip, a 25-degree turn, a squash to 1:1). One
library holds the whole folder and the copies; every other photo is a distractor, among them what
merely looks alike: the BoofCV triplets and stitch views, 29 views of one cathedral, the pixabay
categories.

Ground truth: a copy belongs with its source; originals belong together where they are one
picture (photo_split.picture_keys: copies/ beside their stitch/ namesakes, imagededup's files of
one UKBench number, each HDR on/off pair, identical bytes; the 16 EXIF orientation files are two
pictures, a landscape and a portrait shot). The BoofCV zoom series (scale/, and its copies in
copies/) is left out of the scoring: a telephoto shot from the same spot is, pixel for pixel, a
crop of the wide one, and is reported as one; whether that is a duplicate is the user's call.

Pairs are scored as users meet them, within groups: every two photos of a reported group form a
predicted pair. Reported: precision, recall and F1 of pairs overall, recall per transform, and
the false pairs among look-alikes (which must be none). Tiers are checked too: `dupes` links a
group by a tree of pairs, each with a tier, and a pair of one picture calls for exact when its
two photos show the same pixels (a PNG of a JPEG, identical files), crop when either is a crop
copy, and near otherwise (the other transforms, and the files of one picture here: downscaled,
flipped, greyed, relit or numbered copies). A copy's tier is that of the pair joining it to the
tree grown from its source; the copy is a per-tier hit only when it is grouped with its source
and that tier is the one called for. Copies grouped with their source in another tier are tier
confusions, reported apart. Per-tier precision checks every reported pair the same way.

Everything is reported over the whole folder and over each half of photo_split's split by scene
(a copy goes with its source): the thresholds were tuned on this folder, so the scoring half is
the honest figure. Writes benchmarks/results/dupes_eval.json.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import itertools
import sys
import time
from collections import Counter, deque
from pathlib import Path

import numpy as np
from bench_results import scratch_folder, write_result
from PIL import Image, ImageOps

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from dupe_copies import TRANSFORMS, make_copies  # noqa: E402
from photo_split import (  # noqa: E402
    HALVES,
    half_of,
    is_zoom_shot,
    picture_key,
    picture_keys,
    pixabay_class,
    print_split,
    relative,
    scene_group,
    split_sizes,
)

from searchapp.dupes.find import DupeOptions  # noqa: E402
from searchapp.encoders.base import EncoderOptions  # noqa: E402
from searchapp.ingest.pipeline import IndexOptions  # noqa: E402
from searchapp.ingest.regions import RegionOptions, parse_kinds  # noqa: E402
from searchapp.library import Library  # noqa: E402

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png"}
TIER_RANK = {"exact": 0, "near": 1, "crop": 2}
SCOPES = ("all", *HALVES)
NOT_GROUPED = "not grouped with its source"


def look_alike(rel_a: str, rel_b: str) -> bool:
    """Alike but not copies: another shot of one scene, or a pixabay photo of one class."""
    if scene_group(rel_a) == scene_group(rel_b):
        return True
    return pixabay_class(rel_a) is not None and pixabay_class(rel_a) == pixabay_class(rel_b)


def _scores(precision: float, recall: float) -> dict[str, float]:
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": round(precision, 4), "recall": round(recall, 4), "f1": round(f1, 4)}


class Truth:
    """What each photo of the library is: its picture, its half, and for a copy its source and
    transform."""

    def __init__(self, folder: Path, made: dict[Path, tuple[Path, str]]):
        self.folder = folder
        self.keys = picture_keys(folder)
        self.source = {str(copy): str(source) for copy, (source, _) in made.items()}
        self.transform = {str(copy): copy.parent.name for copy in made}

    def original_rel(self, path: str) -> str:
        return relative(self.source.get(path, path), self.folder)

    def key(self, path: str) -> str | None:
        """Its picture; None for the zoom series, left out of the scoring."""
        rel = self.original_rel(path)
        return None if is_zoom_shot(rel) else self.keys.get(rel) or picture_key(rel)

    def half(self, path: str) -> str:
        return half_of(self.original_rel(path))

    def expected_tier(self, a: str, b: str) -> str:
        """The tier a pair of one picture calls for: exact when the two show the same pixels
        (another format, other metadata), crop when either is a crop copy, near otherwise (the
        other transforms, and the files of one picture here: downscaled, flipped, greyed, relit
        or numbered copies)."""
        if self.shown(a) == self.shown(b):
            return "exact"
        crop = any(
            TRANSFORMS[self.transform[p]].tier == "crop" for p in (a, b) if p in self.transform
        )
        return "crop" if crop else "near"

    @functools.cache  # noqa: B019 (one Truth per run; decodes each photo once)
    def shown(self, path: str) -> tuple[tuple[int, ...], bytes]:
        """Shape and digest of the pixels as displayed (EXIF orientation applied)."""
        with Image.open(path) as opened:
            pixels = np.asarray(ImageOps.exif_transpose(opened).convert("RGB"))
        return pixels.shape, hashlib.blake2b(pixels.tobytes()).digest()


def attaching_tiers(truth: Truth, report, copies: list[str]) -> dict[str, str]:  # type: ignore[no-untyped-def]
    """For each copy grouped with its source: the reported tier of the pair that joins it to the
    tree grown from its source, or the tier expected and got as 'expected>got' when wrong."""
    paths = report.table.paths
    row_of = {path: row for row, path in enumerate(paths)}
    links: dict[int, list[tuple[int, str]]] = {}
    for pair in report.pairs:
        links.setdefault(pair.a, []).append((pair.b, pair.tier))
        links.setdefault(pair.b, []).append((pair.a, pair.tier))
    found = {}
    for source, copies_of in itertools.groupby(
        sorted(copies, key=truth.source.__getitem__), key=truth.source.__getitem__
    ):
        if source not in row_of:
            continue
        parent = {row_of[source]: (-1, "")}
        queue = deque([row_of[source]])
        while queue:  # a group's pairs form a tree: one path from the source to each copy
            row = queue.popleft()
            for other, tier in links.get(row, []):
                if other not in parent:
                    parent[other] = (row, tier)
                    queue.append(other)
        for copy in copies_of:
            if copy not in row_of or row_of[copy] not in parent:
                continue
            up, tier = parent[row_of[copy]]
            expected = truth.expected_tier(copy, paths[up])
            found[copy] = tier if tier == expected else f"{expected}>{tier}"
    return found


def score(truth: Truth, report, made, scope: str) -> dict:  # type: ignore[no-untyped-def,type-arg]
    """Pair precision, recall and F1, recall and tiers per transform, per-tier figures and tier
    confusions, for the photos of one half (a pair counts when either photo is there) or all."""
    paths = report.table.paths

    def inside(*members: str) -> bool:
        return scope == "all" or any(truth.half(m) == scope for m in members)

    scored = [p for p in paths if truth.key(p) is not None]
    truth_pairs = {
        (a, b)
        for a, b in itertools.combinations(sorted(scored), 2)
        if truth.key(a) == truth.key(b) and inside(a, b)
    }
    predicted = set()
    for group in report.groups:
        members = sorted(paths[r] for r in group.rows if truth.key(paths[r]) is not None)
        predicted |= {pair for pair in itertools.combinations(members, 2) if inside(*pair)}
    hits = len(truth_pairs & predicted)
    precision = hits / len(predicted) if predicted else 1.0
    recall = hits / len(truth_pairs) if truth_pairs else 1.0

    copies = [str(c) for c in made if truth.key(str(c)) is not None and inside(str(c))]
    attached = attaching_tiers(truth, report, copies)
    per_transform = {}
    confusions: dict[str, Counter[str]] = {t: Counter() for t in TIER_RANK}
    right_by_tier: Counter[str] = Counter()
    copies_by_tier: Counter[str] = Counter()
    for name, transform in TRANSFORMS.items():
        mine = [c for c in copies if truth.transform[c] == name]
        got = Counter(attached.get(c, NOT_GROUPED) for c in mine)
        right = sum(n for tier, n in got.items() if tier in TIER_RANK)
        per_transform[name] = {
            "pairs": len(mine),
            "recall": round(sum(c in attached for c in mine) / max(len(mine), 1), 3),
            "right_tier": round(right / max(len(mine), 1), 3),
            "tiers": dict(got),
        }
        copies_by_tier[transform.tier] += len(mine)
        right_by_tier[transform.tier] += right
        for tier, n in got.items():
            if tier == NOT_GROUPED:
                confusions[transform.tier][NOT_GROUPED] += n
            elif ">" in tier:
                expected, reported = tier.split(">")
                confusions[expected][reported] += n

    edges: dict[str, Counter[str]] = {}
    look_alike_false = 0
    for pair in report.pairs:
        a, b = paths[pair.a], paths[pair.b]
        if truth.key(a) is None or truth.key(b) is None or not inside(a, b):
            continue
        verdict = edges.setdefault(pair.tier, Counter())
        verdict["pairs"] += 1
        if truth.key(a) != truth.key(b):
            verdict["wrong picture"] += 1
            look_alike_false += look_alike(truth.original_rel(a), truth.original_rel(b))
            continue
        verdict["right tier" if truth.expected_tier(a, b) == pair.tier else "wrong tier"] += 1
    by_expected_tier = {}
    for tier in sorted(copies_by_tier, key=TIER_RANK.__getitem__):
        row = edges.get(tier, Counter())
        checked = row["right tier"] + row["wrong tier"] + row["wrong picture"]
        by_expected_tier[tier] = _scores(
            row["right tier"] / checked if checked else 1.0,
            right_by_tier[tier] / max(copies_by_tier[tier], 1),
        ) | {"copies": copies_by_tier[tier], "right": right_by_tier[tier]}
    false_pairs = sorted(predicted - truth_pairs)
    return {
        "pairs": {"true": len(truth_pairs), "predicted": len(predicted), "correct": hits},
        **_scores(precision, recall),
        "per_transform_recall": per_transform,
        "reported_pairs_by_tier": {tier: dict(row) for tier, row in edges.items()},
        "by_expected_tier": by_expected_tier,
        "tier_confusions": {t: dict(row) for t, row in confusions.items() if row},
        "false_pairs": false_pairs,
        "false_pairs_among_look_alikes": look_alike_false,
    }


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
    # the same sample as before the split: every photo but the corrupt ones and the zoom series
    originals = sorted(
        p
        for p in folder.rglob("*")
        if p.suffix.lower() in IMAGE_SUFFIXES
        and "corrupt" not in p.name
        and not is_zoom_shot(str(p.relative_to(folder)))
    )
    rng = np.random.default_rng(args.seed)
    sources = [
        originals[i] for i in sorted(rng.choice(len(originals), args.sources, replace=False))
    ]
    copies_dir = work / "copies"
    made = make_copies(sources, folder, copies_dir, seed=args.seed)
    print(f"{len(made)} copies of {len(sources)} photos in {copies_dir}", file=sys.stderr)
    print_split([str(s.relative_to(folder)) for s in sources], "copied photos")

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

    truth = Truth(folder, made)
    scores = {scope: score(truth, report, made, scope) for scope in SCOPES}
    for row in scores.values():
        row["false_pairs"] = [
            [relative(a, work), relative(b, work)] for a, b in row["false_pairs"][:50]
        ]
    originals_indexed = [truth.original_rel(p) for p in paths if p not in truth.source]
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
        "split": {
            "photos": split_sizes(originals_indexed),
            "copied": split_sizes([str(s.relative_to(folder)) for s in sources]),
        },
        **scores["all"],
        "by_half": {half: scores[half] for half in HALVES},
    }
    write_result(args.out, result)
    print(
        f"photos {len(paths)} (copies {len(made)}), dupes in {dupes_seconds:.1f} s "
        f"({again_seconds:.1f} s run again), "
        f"{report.checked} of {report.proposed} proposed pairs checked"
    )
    for scope in ("all", "scoring", "tuning"):
        print_scores(scores[scope], scope)
    return 0


def print_scores(row: dict, scope: str) -> None:  # type: ignore[type-arg]
    pairs = row["pairs"]
    print(
        f"\n{scope}: pairs precision {row['precision']:.3f}  recall {row['recall']:.3f}  "
        f"F1 {row['f1']:.3f} ({pairs['correct']} of {pairs['true']} true, "
        f"{pairs['predicted']} predicted)"
    )
    print("transform    copies  grouped  right tier  tiers reported")
    for name, t in row["per_transform_recall"].items():
        tiers = ", ".join(f"{tier} {n}" for tier, n in sorted(t["tiers"].items()))
        print(f"{name:<12} {t['pairs']:>6}  {t['recall']:>7.3f}  {t['right_tier']:>10.3f}  {tiers}")
    print("reported tier  pairs  right tier  wrong tier  wrong picture")
    for tier, t in row["reported_pairs_by_tier"].items():
        print(
            f"{tier:<13} {t.get('pairs', 0):>6}  {t.get('right tier', 0):>10}  "
            f"{t.get('wrong tier', 0):>10}  {t.get('wrong picture', 0):>13}"
        )
    print("expected tier  precision  recall  F1     (a hit: grouped with its source, right tier)")
    for tier, t in row["by_expected_tier"].items():
        print(
            f"{tier:<14} {t['precision']:>9.3f}  {t['recall']:.3f}   {t['f1']:.3f}  "
            f"({t['right']} of {t['copies']} copies)"
        )
    for expected, got in row["tier_confusions"].items():
        told = ", ".join(f"{n} {tier}" for tier, n in sorted(got.items()))
        print(f"tier confusions: expected {expected}, got {told}")
    print(f"false pairs among look-alikes: {row['false_pairs_among_look_alikes']}")


if __name__ == "__main__":
    sys.exit(main())
