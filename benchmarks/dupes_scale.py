"""`searchapp dupes` at scale: 10k, 100k and 1M synthetic photos through the real code.

    python benchmarks/dupes_scale.py [--sizes 10000,100000,1000000] [--dim 1280]

Each size gets a fresh library whose catalog is written through the real write path
(Catalog.apply), one row per photo with what indexing stores: a 1280-d float16 scene vector
(the CNN's size) and the 64-byte pHash block. The vectors are clustered, as real embeddings are
(2,000 clusters), and each pHash variant is the sign of a random projection of the vector, so
that alike photos have alike hashes and the hash buckets fill as they would. 2% of the photos are
planted copies of another (a few bits flipped, a little noise on the vector) and 0.5% share their
source's bytes. The files do not exist, so the pixel check of each proposed pair fails at its
first stat: the timing is everything but those checks, whose count is printed and which cost
about 35 ms each on real photos (benchmarks/dupes_eval.py), once: verdicts are cached.

Each size runs in its own process, so its peak memory is its own. Writes results/dupes_scale.json.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from bench_results import scratch_folder, write_result

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--dim", type=int, default=1280)
    parser.add_argument("--work", type=Path, help="keep the libraries here")
    parser.add_argument("--one", type=Path, help=argparse.SUPPRESS)  # child: measure one library
    parser.add_argument(
        "--out", type=Path, default=ROOT / "benchmarks" / "results" / "dupes_scale.json"
    )
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(args.one)))
        return 0
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
        row = {
            "photos": size,
            "build_seconds": None if reused else round(build_seconds, 1),
            **json.loads(child.stdout),
        }
        rows.append(row)
        print(
            f"{size:>9} photos: dupes {row['dupes_seconds']:>7.2f} s  "
            f"peak {row['peak_memory_mib']:>6} MiB  "
            f"stages {row['stages']}  proposed {row['pairs_proposed']}  groups {row['groups']}",
            flush=True,
        )
    result = {
        "dim": args.dim,
        "runs": rows,
    }
    write_result(args.out, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
