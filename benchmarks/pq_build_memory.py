"""What a library's writer holds while it builds an IVF-PQ kind (searchapp/vectors/large.py).

    python benchmarks/pq_build_memory.py [--vectors 5000000] [--budget-gib 1] [--code DIR]

A kind past large.PQ_ABOVE is rebuilt from the catalog, which hands its vectors over in chunks
of 100,000. This feeds large.build the same chunks, from a float16 file of synthetic 512-d
vectors clustered as benchmarks/ivfpq_scale.py makes them (read into private memory a chunk at
a time, as the catalog's rows are), in a fresh process, and reports its peak private memory
(RssAnon, sampled every 20 ms: without the page cache of the files it maps) and the build's
time. The figure to compare is the private peak against the lists' size: a build that fills one
index in memory holds all the lists; one that writes shards holds one shard's.

--code DIR runs another checkout's searchapp (e.g. a `git worktree` of an earlier commit), for
a side-by-side run; its build then keeps the index in memory and writes no file.

Writes benchmarks/results/pq_build_memory.json (or --out).
"""

from __future__ import annotations

import argparse
import inspect
import multiprocessing
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
CHUNK = 100_000  # the catalog's region_vectors chunk


def build_process(code: str, vectors: Path, count: int, budget: int, report: Any) -> None:
    sys.path.insert(0, code)
    import numpy as np

    from searchapp.vectors import large  # the checkout's, before ivfpq_scale puts this one first

    assert Path(large.__file__).is_relative_to(code), f"{large.__file__} is not from {code}"
    from ivfpq_scale import DIM, PrivatePeak, peak_gib, read_rows

    private = PrivatePeak()

    def chunks() -> Any:
        for start in range(0, count, CHUNK):
            yield (
                np.arange(start, start + min(CHUNK, count - start)),
                read_rows(vectors, start, min(CHUNK, count - start)).astype(np.float16),
            )

    started = time.perf_counter()
    if "path" in inspect.signature(large.build).parameters:
        index = large.build(DIM, count, chunks, budget, vectors.parent / "index.faiss")
        report["file_bytes"] = (vectors.parent / "index.faiss").stat().st_size
        report["shard_vectors"] = large.SHARD_VECTORS
    else:
        index = large.build(DIM, count, chunks, budget)
    report["build_s"] = round(time.perf_counter() - started, 1)
    report["ntotal"] = int(index.ntotal)
    report["plan"] = large.plan_for(count, DIM, budget).factory
    report["list_bytes"] = large.plan_for(count, DIM, budget).list_bytes
    report["peak_private_gib"] = private.stop()
    report["peak_rss_gib"] = peak_gib()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--vectors", type=int, default=5_000_000)
    parser.add_argument("--budget-gib", type=float, default=1.0)
    parser.add_argument("--code", type=Path, default=ROOT, help="the searchapp checkout to run")
    parser.add_argument(
        "--out", type=Path, default=ROOT / "benchmarks" / "results" / "pq_build_memory.json"
    )
    args = parser.parse_args()
    from bench_results import write_result
    from ivfpq_scale import generate

    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=args.code, capture_output=True, text=True
    ).stdout.strip()
    with tempfile.TemporaryDirectory(prefix="pq-build-") as scratch:
        vectors = Path(scratch) / "vectors.f16"
        generate(args.vectors, vectors)
        context = multiprocessing.get_context("spawn")
        with context.Manager() as manager:
            report = manager.dict()
            budget = int(args.budget_gib * 2**30)
            process = context.Process(
                target=build_process,
                args=(str(args.code.resolve()), vectors, args.vectors, budget, report),
            )
            process.start()
            process.join()
            if process.exitcode != 0:
                raise SystemExit(f"the build failed with exit code {process.exitcode}")
            result = dict(report)
    result = {
        "code": f"{commit} ({args.code})",
        "vectors": args.vectors,
        "synthetic": True,
        **result,
    }
    print(
        f"{commit}: {result['plan']} over {args.vectors:,} vectors in {result['build_s']} s; "
        f"private peak {result['peak_private_gib']} GiB (lists "
        f"{result['list_bytes'] / 2**30:.2f} GiB)"
    )
    write_result(args.out, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
