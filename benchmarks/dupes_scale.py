"""`searchapp dupes` at scale: 10k, 100k and 1M synthetic photos through the real code, and the
pixel check's cost measured on real photos.

    python benchmarks/dupes_scale.py [--sizes 10000,100000,1000000] [--dim 1280] [--work DIR]
                                     [--pair-repeats 3]

Each size gets a fresh library whose catalog is written through the real write path
(Catalog.apply), one row per photo with what indexing stores: a 1280-d float16 scene vector
(the CNN's size) and the 64-byte pHash block. The vectors are clustered, as real embeddings are
(2,000 clusters), and each pHash variant is the sign of a random projection of the vector, so
that alike photos have alike hashes and the hash buckets fill as they would. 2% of the photos are
planted copies of another (a few bits flipped, a little noise on the vector) and 0.5% share their
source's bytes. The photos' files do not exist, so every pixel check fails at its first stat:
the timed `dupes` run is everything but the checks.

The checks are measured apart, on real files: pairs of real photos through the real check step
(searchapp.dupes.confirm.check_all: PixelComparer.compare on as many threads as `dupes` uses,
each with its own comparer), each photo in one pair only, so that every check decodes both of
its photos as at scale, where a photo is rarely in two proposed pairs. Two sets: the real 12 MP
phone photos of ../shared/data/phone12mp, neighbouring shots paired (21 pairs; what the synthetic
rows stand for: 4000x3000, 3 MB), and ../shared/data/photos: BoofCV's copies with their
originals and the first two views of each triplet (25 pairs, mostly 1 MP or less). Files are
read from the page cache. The time with the checks is then the timed run with its failed checks
taken out and the checks it attempted, at the measured 12 MP cost per pair, put in: an estimate,
and an upper one, since on real photos a confirmed pair groups its photos and later pairs of the
same group are not checked. Proposed pairs times the cost is printed beside it.

Each size runs in its own process, so its peak memory is its own. Writes results/dupes_scale.json.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import numpy as np
from bench_results import scratch_folder, write_result

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SHARED = ROOT.parent / "shared" / "data"
PHONE12MP = SHARED / "phone12mp"
PHOTOS = SHARED / "photos"

COPY_SHARE = 0.02
SAME_BYTES_SHARE = 0.005
CLUSTERS = 2000
BATCH = 5000


def build(directory: Path, size: int, dim: int, seed: int = 0) -> float:
    from searchapp.library import Library
    from searchapp.records import (
        CatalogBatch,
        EncoderIdentity,
        FileStat,
        ImageMeta,
        NewImage,
        RegionData,
    )

    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(CLUSTERS, dim)).astype(np.float32)
    projections = rng.normal(size=(8, dim, 64)).astype(np.float32)
    lib = Library(directory)
    lib.catalog.set_encoder_identity(
        EncoderIdentity("cnn:efficientnet-lite0", "synthetic", dim, "-")
    )
    started = time.monotonic()
    sources: dict[int, tuple[np.ndarray, bytes, str]] = {}
    for start in range(0, size, BATCH):
        count = min(BATCH, size - start)
        vectors = centres[rng.integers(0, CLUSTERS, count)] + 0.9 * rng.normal(size=(count, dim))
        vectors = vectors.astype(np.float32)
        planted = rng.random(count) < COPY_SHARE
        same_bytes = rng.random(count) < SAME_BYTES_SHARE
        batch = CatalogBatch()
        for offset in range(count):
            row = start + offset
            digest = f"{rng.integers(0, 2**63):016x}{rng.integers(0, 2**63):016x}"
            source = sources.get(int(rng.integers(0, row))) if row and sources else None
            if source is not None and (planted[offset] or same_bytes[offset]):
                vectors[offset] = source[0] + 0.2 / np.sqrt(dim) * rng.normal(size=dim)
                if same_bytes[offset]:
                    digest = source[2]
            vector = vectors[offset] / np.linalg.norm(vectors[offset])
            bits = np.einsum("d,vdk->vk", vector, projections) > 0
            if source is not None and planted[offset]:
                bits = np.unpackbits(np.frombuffer(source[1], np.uint8)).reshape(8, 64).astype(bool)
                flips = rng.choice(64, size=int(rng.integers(0, 5)), replace=False)
                bits[0, flips] ^= True
            phash = np.packbits(bits.reshape(-1)).tobytes()
            if len(sources) < 50000 or rng.random() < 0.01:
                sources[row] = (vector, phash, digest)
            meta = ImageMeta(
                width=4000,
                height=3000,
                format="JPEG",
                taken_at=1.6e9 + row,
                taken_source="exif",
                blur=float(rng.uniform(50, 900)),
                brightness=120.0,
                contrast=50.0,
                colourfulness=30.0,
                phash=phash,
            )
            stat = FileStat(f"/synthetic/{row:07d}.jpg", 3_000_000, row)
            region = RegionData("scene", (0, 0, 4000, 3000), vector)
            batch.new.append(NewImage(stat, digest, meta, [region]))
        lib.catalog.apply(batch)
    seconds = time.monotonic() - started
    lib.close()
    return seconds


def measure(directory: Path) -> dict[str, object]:
    from searchapp.dupes.find import DupeOptions
    from searchapp.library import Library

    with Library(directory) as lib:
        started = time.monotonic()
        report = lib.dupes(DupeOptions())
        seconds = time.monotonic() - started
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "dupes_seconds": round(seconds, 2),
        "stages": {k: round(v, 2) for k, v in report.seconds.items()},
        "groups": len(report.groups),
        "pairs": len(report.pairs),
        "pairs_proposed": report.proposed,
        "pixel_checks": report.checked,
        "peak_memory_mib": round(peak_kib / 1024),
    }


@dataclass(frozen=True)
class Pair:
    a: int
    b: int
    variant: int = 0


def phone_pairs(folder: Path) -> list[tuple[Path, Path]]:
    """Neighbouring shots of the phone photos, each photo in one pair."""
    photos = sorted(p for p in folder.iterdir() if p.suffix.lower() in {".jpg", ".jpeg"})
    return [(photos[i], photos[i + 1]) for i in range(0, len(photos) - 1, 2)]


def shared_pairs(folder: Path) -> list[tuple[Path, Path]]:
    """BoofCV's downscaled, recompressed copies with their originals (stitch/ or scale/), and the
    first two views of each triplet: what `dupes` proposes, copies and second shots."""
    boofcv = folder / "boofcv"
    pairs = []
    for copy in sorted((boofcv / "copies").glob("*.jpg")):
        original = next(
            (
                boofcv / d / copy.name
                for d in ("stitch", "scale")
                if (boofcv / d / copy.name).exists()
            ),
            None,
        )
        if original is not None:
            pairs.append((copy, original))
    for first in sorted((boofcv / "triple").glob("*_01.jpg")):
        second = first.with_name(first.name.replace("_01.jpg", "_02.jpg"))
        if second.exists():
            pairs.append((first, second))
    return pairs


def check_cost(pairs: list[tuple[Path, Path]], repeats: int) -> dict[str, object]:
    """Wall and CPU ms per pair of the real check step on these pairs, best of `repeats` (each
    repeat starts with fresh comparers: nothing decoded is cached across repeats)."""
    from searchapp.dupes.confirm import check_all
    from searchapp.dupes.groups import UnionFind

    paths = [str(p) for pair in pairs for p in pair]
    table = SimpleNamespace(paths=paths, content_hashes=[f"h{i}" for i in range(len(paths))])
    candidates = [Pair(2 * i, 2 * i + 1) for i in range(len(pairs))]
    for path in paths:  # into the page cache, so that every repeat reads alike
        Path(path).read_bytes()
    runs: list[dict[str, float]] = []
    tiers: list[str] = []

    def on_result(candidate: object, evidence: object) -> None:
        tiers.append(str(evidence.tier))  # type: ignore[attr-defined]

    for _ in range(repeats):
        tiers.clear()
        started, cpu_started = time.perf_counter(), time.process_time()
        sets = UnionFind(len(paths))
        checked, _ = check_all(table, candidates, sets, {}, on_result)  # type: ignore[arg-type]
        wall, cpu = time.perf_counter() - started, time.process_time() - cpu_started
        runs.append(
            {"wall_ms_per_pair": wall / checked * 1000, "cpu_ms_per_pair": cpu / checked * 1000}
        )
    verdicts = {tier: tiers.count(tier) for tier in sorted(set(tiers))}
    best = min(runs, key=lambda r: r["wall_ms_per_pair"])
    return {
        "pairs": len(pairs),
        "threads": max(1, min(4, os.cpu_count() or 1)),  # as check_all chooses
        "wall_ms_per_pair": round(best["wall_ms_per_pair"], 1),
        "cpu_ms_per_pair": round(best["cpu_ms_per_pair"], 1),
        "wall_ms_per_pair_repeats": [round(r["wall_ms_per_pair"], 1) for r in runs],
        "verdicts": verdicts,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--dim", type=int, default=1280)
    parser.add_argument("--work", type=Path, help="keep the libraries here")
    parser.add_argument("--pair-repeats", type=int, default=3, help="repeats of the check cost")
    parser.add_argument("--phone-photos", type=Path, default=PHONE12MP)
    parser.add_argument("--photos", type=Path, default=PHOTOS)
    parser.add_argument("--one", type=Path, help=argparse.SUPPRESS)  # child: measure one library
    parser.add_argument(
        "--out", type=Path, default=ROOT / "benchmarks" / "results" / "dupes_scale.json"
    )
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(args.one)))
        return 0
    costs = {
        "phone12mp": check_cost(phone_pairs(args.phone_photos), args.pair_repeats),
        "shared_photos": check_cost(shared_pairs(args.photos), args.pair_repeats),
    }
    for name, where in (("phone12mp", args.phone_photos), ("shared_photos", args.photos)):
        cost = costs[name]
        print(
            f"pixel check, {cost['pairs']} pairs of {where} on {cost['threads']} threads: "
            f"{cost['wall_ms_per_pair']:.1f} ms of wall time per pair (repeats "
            f"{cost['wall_ms_per_pair_repeats']}), {cost['cpu_ms_per_pair']:.1f} ms of CPU; "
            f"verdicts {cost['verdicts']}",
            flush=True,
        )
    per_pair = float(costs["phone12mp"]["wall_ms_per_pair"]) / 1000  # type: ignore[arg-type]
    work = args.work or scratch_folder("searchapp-dupes-scale-")
    rows = []
    for size in (int(s) for s in args.sizes.split(",")):
        directory = work / f"lib-{size}"
        reused = (directory / "catalog.db").exists()  # with --work, a built library is reused
        build_seconds = 0.0 if reused else build(directory, size, args.dim)
        child = subprocess.run(
            [sys.executable, __file__, "--one", str(directory)],
            capture_output=True,
            text=True,
            check=True,
        )
        row: dict[str, object] = {
            "photos": size,
            "build_seconds": None if reused else round(build_seconds, 1),
            **json.loads(child.stdout),
        }
        without = float(row["dupes_seconds"]) - float(row["stages"].get("verify", 0.0))  # type: ignore[attr-defined]
        row["seconds_without_checks"] = round(without, 2)
        row["checks_estimated_seconds"] = round(int(row["pixel_checks"]) * per_pair, 1)  # type: ignore[call-overload]
        row["seconds_with_checks_estimated"] = round(
            without + int(row["pixel_checks"]) * per_pair, 1
        )  # type: ignore[call-overload]
        row["seconds_with_every_proposed_pair_checked"] = round(
            without + int(row["pairs_proposed"]) * per_pair,
            1,  # type: ignore[call-overload]
        )
        rows.append(row)
        print(
            f"{size:>9} photos: dupes without the checks {without:>7.2f} s, with them about "
            f"{row['seconds_with_checks_estimated']:>7.1f} s ({row['pixel_checks']} checks x "
            f"{per_pair * 1000:.0f} ms; all {row['pairs_proposed']} proposed pairs: "
            f"{row['seconds_with_every_proposed_pair_checked']:.1f} s)  peak "
            f"{row['peak_memory_mib']:>6} MiB  stages {row['stages']}  groups {row['groups']}",
            flush=True,
        )
    result = {
        "dim": args.dim,
        "vectors": "synthetic; the photos' files do not exist, so the timed run has no checks",
        "pixel_check_cost": costs,
        "estimate": "seconds_without_checks + pixel_checks x phone12mp wall_ms_per_pair",
        "runs": rows,
    }
    write_result(args.out, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
