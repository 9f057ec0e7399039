"""The Ray engine against the local run, side by side on the same photos: wall time of an
index run each way, and whether the two libraries are the same (photos, failures, regions by
kind, box and label, and the largest difference between their stored vectors, by kind).

    python benchmarks/ray_engine.py ../shared/data/photos [--regions scene] [--codec]

Both runs are Library.index in this process, into fresh libraries, one after the other on an
otherwise idle machine; the Ray run starts Ray itself (local mode, this machine's cores), so its
start-up counts, and each run loads its own models. The objects' and tiles' int8 basis
(store/codec.py) is fitted on whichever 1024 regions a library holds first, which differ with
the order photos arrive in; its vectors are then in different bases, so the fit is left off
unless --codec asks for it. Results: benchmarks/results/ray_engine.json.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from bench_results import RESULTS, scratch_folder, write_result

from searchapp.ingest.engines.ray_engine import RayOptions
from searchapp.ingest.pipeline import IndexOptions
from searchapp.ingest.regions import RegionOptions
from searchapp.library import Library


def run_index(photos: Path, folder: Path, options: IndexOptions, ray: bool, codec: bool) -> float:
    with Library(folder) as lib:
        if not codec:
            lib.catalog.codec_fit_at = 10**12
        started = time.monotonic()
        lib.index([str(photos)], options=options, engine=RayOptions() if ray else None)
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
    largest: dict[str, float] = {}
    counts: dict[str, int] = {}
    for path, regions in theirs.items():
        for key, vector in regions.items():
            counts[key[0]] = counts.get(key[0], 0) + 1
            if key in mine.get(path, {}):
                gap = float(np.abs(mine[path][key] - vector).max())
                largest[key[0]] = max(largest.get(key[0], 0.0), gap)
    return {
        "photos": len(theirs),
        "same_photos": sorted(mine) == sorted(theirs),
        "same_failures": failures,
        "same_regions": all(sorted(mine.get(p, {})) == sorted(r) for p, r in theirs.items()),
        "regions_by_kind": counts,
        "largest_vector_difference_by_kind": largest,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("photos", type=Path)
    parser.add_argument("--regions", default="scene,object,tile")
    parser.add_argument("--codec", action="store_true", help="let the int8 basis be fitted")
    args = parser.parse_args()
    options = IndexOptions(regions=RegionOptions(kinds=tuple(args.regions.split(","))))
    scratch = scratch_folder("ray-engine-")
    local_seconds = run_index(args.photos, scratch / "local", options, False, args.codec)
    ray_seconds = run_index(args.photos, scratch / "ray", options, True, args.codec)
    result = {
        "data": f"{args.photos} (real photos)",
        "region_kinds": args.regions,
        "codec_fitted": args.codec,
        "local_seconds": round(local_seconds, 1),
        "ray_seconds": round(ray_seconds, 1),
        **compare(scratch / "local", scratch / "ray"),
    }
    print(result)
    write_result(RESULTS / "ray_engine.json", result)


if __name__ == "__main__":
    main()
