"""What a search pays to open an index file that an indexing run has left behind the catalog:
catching the file up from the change log (store/vector_log.py) against rebuilding the kind from
every stored vector, which is what a search did before revision 0014.

    python benchmarks/catch_up.py [--photos 300000] [--behind 5000] [--batch 64] [--pq] [--out FILE]

A library of --photos synthetic scene vectors (CLIP's 512 dimensions, as commit_rate.py makes
them) is committed and its index saved; --behind more photos are then committed without a save,
as a run does between its saves (two minutes of a scene-only run at 38 photos/s is about 4,600).
Then, side by side in one process: a reader opening the scene kind (catch-up), and the same
reader with the log declared too short (rebuild). --pq lowers PQ_ABOVE under --photos, so the
kind is an IVF-PQ index as past five million, and the catch-up lays the batches beside its
mapped lists (vectors/layered.py; before cc59f81 it copied them).
Reported: seconds for each, and the vectors each index holds. Writes
benchmarks/results/catch_up.json (catch_up_pq.json with --pq).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from bench_results import RESULTS, scratch_folder, write_result
from commit_rate import DIM, photo_batch

from searchapp.library import Library
from searchapp.records import EncoderIdentity
from searchapp.vectors import large
from searchapp.vectors.faiss_index import IndexStore, commit_batch

BATCH = 5000  # photos a commit while filling; behind, the library's own (--batch 64)


def fill(lib: Library, first: int, photos: int, rng: np.random.Generator, size: int) -> None:
    generation = lib.catalog.vector_generation()
    for start in range(first, first + photos, size):
        batch = photo_batch(start, min(size, first + photos - start), 1, rng)
        generation = commit_batch(lib.catalog, lib.indexes, batch, generation)


def timed_open(lib: Library) -> tuple[float, int, list[str]]:
    store = IndexStore(lib.directory, lib.catalog, DIM)
    started = time.perf_counter()
    index = store.get("scene", persist=False)
    return time.perf_counter() - started, int(index.ntotal), store.repairs


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--photos", type=int, default=300_000)
    parser.add_argument("--behind", type=int, default=5000, help="photos committed unsaved")
    parser.add_argument("--batch", type=int, default=64, help="photos a commit while behind")
    parser.add_argument("--pq", action="store_true", help="an IVF-PQ kind, as past 5 million")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    if args.pq:
        large.PQ_ABOVE = args.photos // 2
    rng = np.random.default_rng(0)
    folder = scratch_folder("catch-up")
    with Library(folder, None) as lib:
        lib.catalog.set_encoder_identity(EncoderIdentity("clip:synthetic", "none", DIM, "none"))
        started = time.perf_counter()
        fill(lib, 0, args.photos, rng, BATCH)
        lib.indexes().get("scene", persist=True)  # built and saved, as a run's save does
        lib.indexes().save_all(lib.catalog.vector_generation())
        setup_s = time.perf_counter() - started
        lib.forget_loaded()
        # the run goes on; its next save is not due
        fill(lib, args.photos, args.behind, rng, args.batch)
        saved_gen = lib.catalog.index_record("scene")[0]  # type: ignore[index]
        behind = lib.catalog.vector_generation() - saved_gen
        caught_s, caught_n, caught_repairs = timed_open(lib)
        # the same file, with the log said to start after it: what every search did before
        lib.catalog.set_setting("vectors.logged_since", str(lib.catalog.vector_generation()))
        rebuilt_s, rebuilt_n, rebuilt_repairs = timed_open(lib)
    result = {
        "data": "synthetic unit vectors, 512-d, scene kind only",
        "photos_saved": args.photos,
        "photos_behind": args.behind,
        "batches_behind": behind,
        "layout": "IVF-PQ" if args.pq else "fp16 IVF",
        "setup_s": round(setup_s, 1),
        "catch_up_s": round(caught_s, 2),
        "catch_up_vectors": caught_n,
        "catch_up_repairs": caught_repairs,
        "rebuild_s": round(rebuilt_s, 2),
        "rebuild_vectors": rebuilt_n,
        "rebuild_repairs": rebuilt_repairs,
    }
    print(
        f"{result['layout']}, {args.photos:,} saved + {args.behind:,} behind "
        f"({behind} batches): catch-up {caught_s:.2f} s ({caught_n:,} vectors), "
        f"rebuild {rebuilt_s:.2f} s ({rebuilt_n:,})"
    )
    name = "catch_up_pq.json" if args.pq else "catch_up.json"
    write_result(args.out or RESULTS / name, result)
    return 0 if caught_n == rebuilt_n == args.photos + args.behind and not caught_repairs else 1


if __name__ == "__main__":
    raise SystemExit(main())
