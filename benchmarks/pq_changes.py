"""What changing a big IVF-PQ kind costs a run and the searches beside it, side by side for several
versions of searchapp: this checkout, and each --before commit (checked out in a git worktree).

    python benchmarks/pq_changes.py [--photos 500000] [--behind 5000] [--batch 64]
                                    [--before REV ...] [--out FILE]

Once: --photos synthetic 512-d scene vectors, clustered as CLIP's are (ann_scale.py's), are
committed to a catalog, PQ_ABOVE is lowered under them, and the scene kind is built as IVF-PQ
and saved. Then each
version, in its own process, on its own copy of that library:
- follow: the writer follows --behind more photos, committed in batches of --batch as a run
  commits them (its first batch opens the kind);
- save: the writer saves, as a run does every two minutes; the bytes it writes;
- open: --behind more photos are committed unsaved, and a search opens the kind (catching up);
- query: p50 and p95 of 200 single queries (held-out vectors of the same clusters), re-ranked
  on the catalog's vectors as searches are (the second of two rounds).
Memory is the process's anonymous resident memory (RssAnon) grown by a step: pages of a mapped
file are the page cache's, which the system takes back under pressure. Writes
benchmarks/results/pq_changes.json.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from bench_results import RESULTS, scratch_folder, write_result
from commit_rate import DIM

HERE = Path(__file__).resolve().parent
QUERIES = 200


def anon_mib() -> float:
    """The process's anonymous resident memory, MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no RssAnon in /proc/self/status (Linux only)")


def index_files(folder: Path) -> dict[Path, int]:
    return {p: p.stat().st_mtime_ns for p in folder.glob("index-*")}


def photo_batch(vectors: np.ndarray, start: int, count: int) -> Any:
    """Photos start.. of one scene region each, their vectors rows of `vectors`."""
    from searchapp.records import CatalogBatch, FileStat, ImageMeta, NewImage, RegionData

    batch = CatalogBatch()
    for i in range(start, start + count):
        region = RegionData("scene", (0, 0, 100, 100), np.asarray(vectors[i], np.float32))
        meta = ImageMeta(4000, 3000, "JPEG", 1.6e9 + i, "exif", "Apple", "iPhone 12")
        stat = FileStat(f"/archive/{i // 1000:04d}/{i:08d}.jpg", 3_000_000, i)
        batch.new.append(NewImage(stat, f"{i:064x}", meta, [region]))
    return batch


def setup(folder: Path, photos: int, vectors: np.ndarray) -> dict[str, Any]:
    from searchapp.library import Library
    from searchapp.records import EncoderIdentity
    from searchapp.vectors import large

    large.PQ_ABOVE = photos // 2
    started = time.perf_counter()
    with Library(folder, None) as lib:
        lib.catalog.set_encoder_identity(EncoderIdentity("clip:synthetic", "none", DIM, "none"))
        for start in range(0, photos, 5000):
            lib.catalog.apply(photo_batch(vectors, start, min(5000, photos - start)))
        filled = time.perf_counter() - started
        index = lib.indexes().get("scene", persist=True)
        assert large.is_pq(index) and index.ntotal == photos, "the scene kind is no IVF-PQ"
    return {"fill_s": round(filled, 1), "build_s": round(time.perf_counter() - started - filled, 1)}


def measure(folder: Path, photos: int, behind: int, batch: int) -> dict[str, Any]:
    """The four steps, in this process, with whichever searchapp it imports; the vectors are
    the setup's (vectors.npy beside the library: photos, 2 x behind more, then queries)."""
    import searchapp
    from searchapp.library import Library
    from searchapp.vectors import faiss_index, large
    from searchapp.vectors.faiss_index import IndexStore, commit_batch

    large.PQ_ABOVE = photos // 2
    vectors = np.load(folder.parent / "vectors.npy", mmap_mode="r")
    result: dict[str, Any] = {"searchapp": str(Path(searchapp.__file__).parent.parent)}
    with Library(folder, None) as lib:

        def commit(first: int) -> None:
            generation = lib.catalog.vector_generation()
            for start in range(first, first + behind, batch):
                made = photo_batch(vectors, start, min(batch, first + behind - start))
                generation = commit_batch(lib.catalog, lib.indexes, made, generation)

        held, started = anon_mib(), time.perf_counter()
        commit(photos)
        result["follow_s"] = round(time.perf_counter() - started, 2)
        result["follow_anon_mib"] = round(anon_mib() - held, 1)

        before = index_files(folder)
        started = time.perf_counter()
        lib.indexes().save_all(lib.catalog.vector_generation())
        result["save_s"] = round(time.perf_counter() - started, 2)
        written = [p for p, stamp in index_files(folder).items() if before.get(p) != stamp]
        result["save_wrote_mib"] = round(sum(p.stat().st_size for p in written) / 2**20, 2)
        result["files_after_save"] = sorted(p.name for p in index_files(folder))

        commit(photos + behind)
        store = IndexStore(lib.directory, lib.catalog, DIM)
        held, started = anon_mib(), time.perf_counter()
        index = store.get("scene", persist=False)
        result["open_s"] = round(time.perf_counter() - started, 2)
        result["open_anon_mib"] = round(anon_mib() - held, 1)
        result["open_vectors"] = int(index.ntotal)
        result["open_repairs"] = store.repairs

        queries = np.asarray(vectors[photos + 2 * behind :], np.float32)
        exact = store.exact_vectors("scene", index)
        for _ in range(2):  # the second round is reported: the lists it reads are warm
            took = []
            for query in queries:
                started = time.perf_counter()
                faiss_index.search(index, query[None], 10, exact=exact)
                took.append(time.perf_counter() - started)
        result["query_p50_ms"] = round(float(np.percentile(took, 50)) * 1000, 2)
        result["query_p95_ms"] = round(float(np.percentile(took, 95)) * 1000, 2)
    return result


def run_version(code: Path, library: Path, folder: Path, args: argparse.Namespace) -> dict:
    """measure() in a process of its own, importing searchapp from `code`, on a copy."""
    shutil.copytree(library, folder)
    env = {"PYTHONPATH": f"{code}:{HERE}", "PATH": "/usr/bin:/bin"}
    command = [sys.executable, __file__, "--measure", str(folder)]
    command += ["--photos", str(args.photos), "--behind", str(args.behind)]
    command += ["--batch", str(args.batch)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    shutil.rmtree(folder, ignore_errors=True)
    if done.returncode:
        raise RuntimeError(f"{code}: {done.stderr[-2000:]}")
    measured: dict = json.loads(done.stdout.strip().splitlines()[-1])
    return measured


def commit_of(rev: str) -> str:
    return subprocess.run(
        ["git", "rev-parse", "--short", rev], capture_output=True, text=True, check=True, cwd=HERE
    ).stdout.strip()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--photos", type=int, default=500_000)
    parser.add_argument("--behind", type=int, default=5000, help="photos a step commits")
    parser.add_argument("--batch", type=int, default=64, help="photos a commit, as a run's")
    parser.add_argument(
        "--before", nargs="*", default=[], help="commits to compare with (git worktrees)"
    )
    parser.add_argument("--measure", type=Path, help=argparse.SUPPRESS)  # the per-version step
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args.measure, args.photos, args.behind, args.batch)))
        return 0
    scratch = scratch_folder("pq-changes")
    library = scratch / "library"
    from ann_scale import realistic_vectors

    vectors = realistic_vectors(args.photos + 2 * args.behind + QUERIES)
    np.save(scratch / "vectors.npy", vectors.astype(np.float16))
    made = setup(library, args.photos, vectors)
    print(f"library of {args.photos:,} photos: {made}")
    versions = {commit_of("HEAD") + " (this checkout)": HERE.parent}
    trees = []
    for rev in args.before:
        trees.append(scratch / f"before-{len(trees)}")
        command = ["git", "worktree", "add", "-f", "--detach", str(trees[-1]), rev]
        subprocess.run(command, check=True, cwd=HERE, capture_output=True)
        versions[commit_of(rev)] = trees[-1]
    rows = {}
    try:
        for label, code in versions.items():
            rows[label] = run_version(code, library, scratch / "copy", args)
            print(label, rows[label])
    finally:
        for tree in trees:
            command = ["git", "worktree", "remove", "--force", str(tree)]
            subprocess.run(command, cwd=HERE, check=False)
    result = {
        "data": "synthetic 512-d unit vectors clustered as CLIP's (ann_scale.py), scene only",
        "photos": args.photos,
        "photos_a_step": args.behind,
        "photos_a_batch": args.batch,
        "setup": made,
        "versions": rows,
    }
    write_result(args.out or RESULTS / "pq_changes.json", result)
    expected = args.photos + 2 * args.behind
    fine = all(r["open_vectors"] == expected and not r["open_repairs"] for r in rows.values())
    return 0 if fine else 1


if __name__ == "__main__":
    raise SystemExit(main())
