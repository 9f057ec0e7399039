"""The Ray engine against the local run, side by side on the same photos: wall time of
`searchapp index` each way, and whether the two libraries are the same (photos, failures,
regions by kind, box and label, and the largest difference between their stored vectors).

    python benchmarks/ray_engine.py ../shared/data/photos [--regions scene]

Both runs are the CLI a user runs, in fresh libraries, one after the other on an otherwise idle
machine; Ray is started by the run itself (local mode, this machine's cores), so its start-up
counts. Results: benchmarks/results/ray_engine.json.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from bench_results import RESULTS, scratch_folder, write_result

from searchapp.library import Library


def run_index(photos: Path, library: Path, extra: list[str]) -> float:
    command = [sys.executable, "-m", "searchapp", "index", str(photos), "--library", str(library)]
    started = time.monotonic()
    subprocess.run([*command, "-q", *extra], check=True)
    return time.monotonic() - started


def regions_of(lib: Library) -> dict[str, dict[tuple, np.ndarray]]:
    out: dict[str, dict[tuple, np.ndarray]] = {}
    for image in lib.catalog.all_images():
        details = lib.catalog.photo_details(image.id)
        assert details is not None
        out[image.path] = {
            (r.kind, r.bbox, r.label): lib.indexes().get(r.kind, persist=False).reconstruct(r.id)
            for r in details.regions
        }
    return out


def compare(local: Path, ray: Path) -> dict[str, object]:
    with Library(local) as a, Library(ray) as b:
        mine, theirs = regions_of(b), regions_of(a)
        failures = sorted(f.path for f in a.failures()) == sorted(f.path for f in b.failures())
    same_regions = all(sorted(mine.get(p, {})) == sorted(r) for p, r in theirs.items())
    largest = max(
        (float(np.abs(mine[p][k] - v).max()) for p, r in theirs.items() for k, v in r.items()
         if p in mine and k in mine[p]),
        default=0.0,
    )  # fmt: skip
    return {
        "photos": len(theirs),
        "same_photos": sorted(mine) == sorted(theirs),
        "same_failures": failures,
        "same_regions": same_regions,
        "regions": sum(len(r) for r in theirs.values()),
        "largest_vector_difference": largest,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("photos", type=Path)
    parser.add_argument("--regions", help="passed to both runs (default: all kinds)")
    args = parser.parse_args()
    extra = ["--regions", args.regions] if args.regions else []
    scratch = scratch_folder("ray-engine-")
    local_seconds = run_index(args.photos, scratch / "local", extra)
    ray_seconds = run_index(args.photos, scratch / "ray", [*extra, "--engine", "ray"])
    result = {
        "data": f"{args.photos} (real photos)",
        "regions": args.regions or "scene,object,tile",
        "local_seconds": round(local_seconds, 1),
        "ray_seconds": round(ray_seconds, 1),
        **compare(scratch / "local", scratch / "ray"),
    }
    print(result)
    write_result(RESULTS / "ray_engine.json", result)


if __name__ == "__main__":
    main()
