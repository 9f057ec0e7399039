"""Readers as threads or as processes: does a process pool index faster on this machine?

    python benchmarks/reader_pool.py [FOLDER] [--workers 2] [--rounds 3] [--copies 1]

Issue 6 asked for decoding in worker processes; `searchapp index` reads in a pool of threads
(PIL, OpenCV and hashlib release the GIL while they work). This measures both, side by side in
one run. It runs the pipeline's own read step (read, hash, reduced decode, quality, pHash, cut,
preprocess) for every photo in FOLDER in a pool, and the main thread encodes batches of 32
scenes with EfficientNet-Lite0 on its chosen runtime. Worker processes preprocess with the CNN's
model-free input function and send back the arrays, pickled. Each pool kind runs --rounds times,
alternating, and the best round is kept; CPU time counts the workers too.
FOLDER defaults to ../shared/data/phone12mp, 43 real 12 MP phone JPEGs; a folder made by
phone_photos.py is labelled "synthetic (upscaled)". `--copies N` reads N byte-distinct copies of
each photo (bytes appended after the JPEG's end: the same pixels and decode cost), for rounds
longer than 43 photos take.
Writes benchmarks/results/reader_pool.json.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from bench_results import scratch_folder, write_result

ROOT = Path(__file__).resolve().parents[1]
PHONE12MP = ROOT.parent / "shared" / "data" / "phone12mp"
SYNTHETIC_MARKER = "SYNTHETIC-UPSCALED.txt"  # written by phone_photos.py
BATCH = 32
POOLS: dict[str, Callable[[int], Executor]] = {
    "threads": ThreadPoolExecutor,
    "processes": ProcessPoolExecutor,
}


class _InputsOnly:
    """What the read step asks of an encoder, without its model."""

    def __init__(self) -> None:
        from searchapp.encoders import cnn

        self.input_size = cnn.INPUT_SIZE
        self.preprocess = cnn.preprocess


def read_one(path: str) -> list[np.ndarray]:
    from searchapp.ingest.pipeline import IndexOptions, LazyModel, _read
    from searchapp.ingest.regions import RegionOptions
    from searchapp.records import FileStat

    stat = os.stat(path)
    options = IndexOptions(regions=RegionOptions(kinds=("scene",)))
    result = _read(
        FileStat(path, stat.st_size, stat.st_mtime_ns), None, set(), LazyModel(_InputsOnly), options
    )
    if result.error is not None:
        raise SystemExit(f"{path}: {result.error}")
    return [cut.array for cut in result.cuts]


def photo_set(folder: Path, paths: list[str]) -> str:
    """Real photos, or phone_photos.py's upscaled ones (its marker file, or its EXIF make)."""
    from PIL import Image

    synthetic = (folder / SYNTHETIC_MARKER).exists()
    if paths and not synthetic:
        with Image.open(paths[0]) as image:
            synthetic = image.getexif().get(0x010F) == "searchapp-bench"
    return "synthetic (upscaled) by phone_photos.py" if synthetic else "real photos"


def copies(paths: list[str], count: int, folder: Path) -> list[str]:
    """`count` copies of each photo whose bytes differ after the JPEG's end-of-image marker."""
    made = []
    for copy in range(count):
        for path in paths:
            target = folder / f"c{copy:02d}-{Path(path).name}"
            target.write_bytes(Path(path).read_bytes() + f"copy {copy}".encode())
            made.append(str(target))
    return made


def cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system + times.children_user + times.children_system


def run(pool_kind: str, workers: int, paths: list[str], encoder: Any) -> dict[str, float]:
    in_flight = workers * 4  # as `searchapp index` keeps
    started, cpu_started = time.perf_counter(), cpu_seconds()
    embedded = 0
    with POOLS[pool_kind](workers) as pool:
        queue = iter(paths)
        pending: deque[Any] = deque()
        batch: list[np.ndarray] = []

        def fill() -> None:
            while len(pending) < in_flight and (path := next(queue, None)) is not None:
                pending.append(pool.submit(read_one, path))

        fill()
        while pending:
            batch += pending.popleft().result()
            fill()
            if len(batch) >= BATCH or not pending:
                encoder.encode(np.stack(batch))
                embedded, batch = embedded + len(batch), []
    wall = time.perf_counter() - started
    cpu = cpu_seconds() - cpu_started  # the pool is shut down: its workers' time is in
    return {"photos_per_second": embedded / wall, "cpu_ms_per_photo": cpu / embedded * 1000}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path, nargs="?", default=PHONE12MP)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--copies", type=int, default=1, help="read N byte-distinct copies")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/reader_pool.json")
    args = parser.parse_args()
    from searchapp.encoders.base import EncoderOptions
    from searchapp.encoders.cnn import EfficientNetLite0Encoder

    suffixes = {".jpg", ".jpeg"}
    paths = sorted(str(p) for p in args.folder.rglob("*") if p.suffix.lower() in suffixes)
    if not paths:
        raise SystemExit(f"no JPEGs under {args.folder} (default {PHONE12MP})")
    photos_are = photo_set(args.folder, paths)
    sources = len(paths)
    if args.copies > 1:
        paths = copies(paths, args.copies, scratch_folder("searchapp-reader-pool-"))
    encoder = EfficientNetLite0Encoder(EncoderOptions(threads=os.cpu_count()))
    encoder.encode(np.stack(read_one(paths[0])))  # warm: first-call allocations
    rounds: dict[str, list[dict[str, float]]] = {kind: [] for kind in POOLS}
    for _ in range(args.rounds):
        for kind in POOLS:
            rounds[kind].append(run(kind, args.workers, paths, encoder))
    copied = f" x {args.copies} byte-distinct copies" if args.copies > 1 else ""
    print(f"{sources} {photos_are} in {args.folder}{copied}; {args.workers} workers; "
          f"EfficientNet-Lite0 on {encoder.runtime}; best of {args.rounds} rounds")  # fmt: skip
    best = {kind: max(r, key=lambda m: m["photos_per_second"]) for kind, r in rounds.items()}
    for kind, measured in best.items():
        print(f"  {kind:<10} {measured['photos_per_second']:6.1f} photos/s  "
              f"{measured['cpu_ms_per_photo']:5.1f} ms of CPU per photo")  # fmt: skip
    ratio = best["processes"]["photos_per_second"] / best["threads"]["photos_per_second"]
    print(f"  processes / threads {ratio:.2f}")
    result = {
        "folder": str(args.folder),
        "photo_set": photos_are,
        "photos": sources,
        "copies": args.copies,
        "workers": args.workers,
        "runtime": encoder.runtime,
        "rounds": rounds,
        "best": best,
        "processes_over_threads": round(ratio, 3),
    }
    write_result(args.out, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
