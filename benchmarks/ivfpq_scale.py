"""IVF-PQ at ten million vectors (searchapp/vectors/large.py), against exact search.

    python benchmarks/ivfpq_scale.py [--vectors 10000000] [--queries 300] [--budget-gib 1]
                                     [--variants planned] [--scratch DIR]

Synthetic 512-d vectors (CLIP's width), clustered as benchmarks/ann_scale.py makes them (topics
holding groups around a common direction), generated shard by shard into a float16 file in the
scratch folder (10 GB at 10M; none of it is kept). Then, as the library would from its parquet
shards:
- train the planned index (large.plan_for: lists, code bytes, OPQ) on a sample;
- fill one index per shard of large.SHARD_VECTORS, each saved on its own (large.write_shards,
  as a library's build does);
- merge the shards' lists, list by list, into one index file on disk (large.write_merged); the
  shard files go.
Build time is each step's; peak memory is the build process's maximum resident set (each
shard's vectors are read into private memory; the training sample is gathered through a memory
map, whose pages the figure then counts too), and apart, its private memory. A separate process
then opens the merged index with its lists memory-mapped (ann.load, as a library's reader does)
and runs the queries one at a time, plain and re-ranked on the exact float16 vectors
(memory-mapped too); its peak memory is reported apart.

Queries, each --queries long, from ann_scale: held-out vectors of the same distribution, random
directions, and text-like ones (shifted off the image vectors, best match near cosine 0.3).
Probes are tuned on 200 other held-out vectors to reach large.RECALL_TARGET re-ranked, as a
library's build would tune them. recall@10 is against exact search over all vectors.

--variants pq,opq builds the plan with and without the rotation on the same vectors, which is
how the rule for OPQ was chosen.

Writes benchmarks/results/ivfpq_scale.json.
"""

from __future__ import annotations

import argparse
import multiprocessing
import shutil
import sys
import tempfile
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from ann_scale import DIM, QUERY_SETS, K, exact_neighbours, out_of_distribution, recall
from bench_results import write_result

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from searchapp.vectors import ann, large  # noqa: E402

SHARD = 1_000_000  # vectors read at a time; large.write_shards cuts its own shards
GENERATE = 250_000
TUNING = 200
WIDER = (2, 4, 8)  # multiples of the tuned probes each query set is also re-ranked at
DEEPER = (1000, 3000)  # candidates re-ranked, beside RERANK*K, at 4x the probes


def generate(count: int, path: Path, seed: int = 0) -> np.ndarray:
    """`count` vectors into `path` (raw float16, row-major), made as ann_scale's
    realistic_vectors makes them but chunk by chunk; returns held-out vectors of the same
    distribution (the query sets' and the tuning set's)."""
    rng = np.random.default_rng(seed)
    spectrum = (np.arange(1, DIM + 1) ** -0.6).astype(np.float32)
    axes = np.linalg.qr(rng.normal(size=(DIM, DIM)))[0].astype(np.float32)
    spread = float(np.sqrt((spectrum**2).sum()))
    common = rng.normal(size=DIM).astype(np.float32)
    common *= 1.2 / np.linalg.norm(common)
    topics = (rng.normal(size=(1000, DIM)).astype(np.float32) * spectrum) @ axes
    topics /= np.linalg.norm(topics, axis=1, keepdims=True)
    groups = max(1, count // 20)
    offsets = (rng.normal(size=(groups, DIM)).astype(np.float32) * spectrum) @ axes
    centres = topics[rng.integers(0, len(topics), groups)] + 0.6 * offsets / spread
    del offsets

    def rows(n: int) -> np.ndarray:
        jitter = (rng.normal(size=(n, DIM)).astype(np.float32) * spectrum) @ axes
        made = common + centres[rng.integers(0, groups, n)] + 0.8 * jitter / spread
        made /= np.linalg.norm(made, axis=1, keepdims=True)
        return made.astype(np.float16)

    with open(path, "wb") as out:
        for start in range(0, count, GENERATE):
            rows(min(GENERATE, count - start)).tofile(out)
    return rows(4000).astype(np.float32)


def read_rows(path: Path, start: int, count: int) -> np.ndarray:
    """Rows read into private memory (not mapped: mapped pages would count as the reader's)."""
    with open(path, "rb") as source:
        source.seek(start * DIM * 2)
        return np.fromfile(source, np.float16, count * DIM).reshape(-1, DIM).astype(np.float32)


def build(plan: large.PQPlan, vectors: Path, folder: Path, report: Any) -> None:
    """The build process: train, a shard at a time, merge. Reports seconds per step."""
    private = PrivatePeak()
    rng = np.random.default_rng(1)
    started = time.perf_counter()
    picks = np.sort(rng.choice(plan.count, plan.train_count, replace=False))
    memory = np.memmap(vectors, np.float16, "r", shape=(plan.count, DIM))
    sample = np.asarray(memory[picks], np.float32)
    del memory
    empty = large.trained(plan, sample)
    del sample
    report["train_s"] = round(time.perf_counter() - started, 1)
    started = time.perf_counter()

    def chunks() -> Any:
        for start in range(0, plan.count, SHARD):
            rows = read_rows(vectors, start, min(SHARD, plan.count - start))
            yield np.arange(start, start + len(rows)), rows

    shards = large.write_shards(empty, chunks, folder, lambda ids, rows: None)
    report["shards"] = len(shards)
    report["add_s"] = round(time.perf_counter() - started, 1)
    started = time.perf_counter()
    large.write_merged(empty, shards, folder / "index.faiss")
    for shard in shards:
        shard.unlink()
    report["merge_s"] = round(time.perf_counter() - started, 1)
    report["peak_rss_gib"] = peak_gib()
    report["peak_private_gib"] = private.stop()


def status_gib(field: str) -> float:
    """A memory field of this process's /proc status (VmHWM: the peak resident set, which
    getrusage would carry over from the parent across the spawn; RssAnon: private memory now,
    without the pages of mapped files, which are page cache)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 2**20
    return float("nan")


def peak_gib() -> float:
    return round(status_gib("VmHWM"), 2)


class PrivatePeak:
    """The largest RssAnon seen, sampled every 20 ms on a thread while the process works: the
    memory the process holds of its own, apart from the memory-mapped lists and vectors."""

    def __init__(self) -> None:
        self.peak = 0.0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while not self._done.wait(0.02):
            self.peak = max(self.peak, status_gib("RssAnon"))

    def stop(self) -> float:
        self._done.set()
        self._thread.join()
        return round(max(self.peak, status_gib("RssAnon")), 2)


def query(folder: Path, vectors: Path, count: int, sets: dict[str, Any], report: Any) -> None:
    """The query process: the merged index memory-mapped, one query at a time; then each set
    re-ranked at WIDER times the tuned probes, to see what out-of-cluster queries need."""
    private = PrivatePeak()
    started = time.perf_counter()
    index = ann.load(folder / "index.faiss", mapped=True)
    report["open_s"] = round(time.perf_counter() - started, 2)
    exact_rows = np.memmap(vectors, np.float16, "r", shape=(count, DIM))

    def exact(ids: np.ndarray) -> np.ndarray:
        order = np.argsort(ids)  # sorted reads: neighbouring pages
        rows = np.empty((len(ids), DIM), np.float32)
        rows[order] = exact_rows[ids[order]]
        return rows

    tuning_queries, tuning_truth = sets.pop("tuning")
    probes, reached = large.fewest_probes(index, tuning_queries, tuning_truth, exact, K)
    report["probes"], report["tuning_recall"] = probes, round(reached, 4)

    def measure(
        queries: np.ndarray, truth: np.ndarray, probes: int, rerank: Any, depth: int | None = None
    ) -> dict:
        latencies, found = [], []
        for row in queries:
            began = time.perf_counter()
            _, ids = large.search(
                index, row[None], K, probes=probes, exact=rerank, candidates=depth
            )
            latencies.append(time.perf_counter() - began)
            found.append(ids[0])
        return {
            "p50_ms": round(float(np.percentile(latencies, 50)) * 1000, 2),
            "p95_ms": round(float(np.percentile(latencies, 95)) * 1000, 2),
            "recall_at_10": recall(np.stack(found), truth),
        }

    for name, (queries, truth) in sets.items():
        report[name] = {
            "plain": measure(queries, truth, probes, None),
            "reranked": measure(queries, truth, probes, exact),
            "wider": {
                str(probes * times): measure(queries, truth, probes * times, exact)
                for times in WIDER
            },
            # at 4x the probes, as a query with words searches: more candidates re-ranked
            "deeper": {
                str(depth): measure(queries, truth, probes * 4, exact, depth) for depth in DEEPER
            },
        }
    report["peak_rss_gib"] = peak_gib()
    report["peak_private_gib"] = private.stop()


def in_process(target: Any, *args: Any) -> dict[str, Any]:
    """Run a step in a fresh process, so that its peak memory is its own."""
    context = multiprocessing.get_context("spawn")
    with context.Manager() as manager:
        report = manager.dict()
        process = context.Process(target=target, args=(*args, report))
        process.start()
        process.join()
        if process.exitcode != 0:
            raise SystemExit(f"{target.__name__} failed with exit code {process.exitcode}")
        return dict(report)


def exact_truth(vectors: Path, count: int, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-K ids and scores of every query over all vectors, a chunk at a time."""
    best_scores = np.full((len(queries), K), -np.inf, np.float32)
    best_ids = np.zeros((len(queries), K), np.int64)
    for start in range(0, count, SHARD):
        rows = read_rows(vectors, start, min(SHARD, count - start))
        ids, scores = exact_neighbours(queries, rows, with_scores=True)
        merged = np.concatenate([best_scores, scores], axis=1)
        merged_ids = np.concatenate([best_ids, ids + start], axis=1)
        order = np.argsort(-merged, axis=1)[:, :K]
        best_scores = np.take_along_axis(merged, order, 1)
        best_ids = np.take_along_axis(merged_ids, order, 1)
    return best_ids, best_scores


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--vectors", type=int, default=10_000_000)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--budget-gib", type=float, default=1.0, help="the lists' budget")
    parser.add_argument("--variants", default="planned", help="planned, or pq,opq")
    parser.add_argument("--scratch", type=Path, default=None)
    parser.add_argument(
        "--out", type=Path, default=ROOT / "benchmarks" / "results" / "ivfpq_scale.json"
    )
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="ivfpq-", dir=args.scratch))
    try:
        return run(args, scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def run(args: argparse.Namespace, scratch: Path) -> int:
    count = args.vectors
    vectors = scratch / "vectors.f16"
    started = time.perf_counter()
    held_out = generate(count, vectors)
    generated = round(time.perf_counter() - started, 1)
    sets = out_of_distribution(held_out[: args.queries])
    tuning = held_out[args.queries : args.queries + TUNING]
    started = time.perf_counter()
    everything = np.concatenate([tuning, *sets.values()])
    truth_ids, truth_scores = exact_truth(vectors, count, everything)
    exact_s = round(time.perf_counter() - started, 1)
    print(f"{count:,} synthetic vectors generated in {generated} s; exact truth in {exact_s} s")
    answers: dict[str, Any] = {"tuning": (tuning, truth_ids[:TUNING])}
    cosines = {}
    for n, (name, batch) in enumerate(sets.items()):
        rows = slice(TUNING + n * args.queries, TUNING + (n + 1) * args.queries)
        answers[name] = (batch, truth_ids[rows])
        cosines[name] = round(float(truth_scores[rows, 0].mean()), 3)
    planned = large.plan_for(count, DIM, int(args.budget_gib * 2**30))
    plans = {"planned": planned}
    if args.variants != "planned":
        plans = {v: replace(planned, opq=v == "opq") for v in args.variants.split(",")}
    runs = []
    for variant, plan in plans.items():
        folder = scratch / variant
        folder.mkdir()
        built = in_process(build, plan, vectors, folder)
        lists_bytes = (folder / "index.faiss").stat().st_size
        answered = in_process(query, folder, vectors, count, dict(answers))
        row = {
            "variant": variant,
            "factory": plan.factory,
            "file_bytes_per_vector": round(lists_bytes / count, 1),
            "build": built,
            "build_s": round(built["train_s"] + built["add_s"] + built["merge_s"], 1),
            "query": answered,
        }
        runs.append(row)
        print(
            f"{variant}: {plan.factory}  build {row['build_s']} s (train {built['train_s']}, "
            f"{built['shards']} shards {built['add_s']}, merge {built['merge_s']}), peak "
            f"{built['peak_rss_gib']} GiB ({built['peak_private_gib']} private); lists "
            f"{row['file_bytes_per_vector']} B/vector; probes {answered['probes']}; query "
            f"process peak {answered['peak_rss_gib']} GiB ({answered['peak_private_gib']} "
            "private)",
            flush=True,
        )
        for name in QUERY_SETS:
            plain, ranked = answered[name]["plain"], answered[name]["reranked"]
            print(
                f"  {name + ':':<22} plain p50 {plain['p50_ms']:6.2f} p95 {plain['p95_ms']:6.2f}"
                f" ms recall@10 {plain['recall_at_10']:.3f} | re-ranked p50 "
                f"{ranked['p50_ms']:6.2f} p95 {ranked['p95_ms']:6.2f} ms recall@10 "
                f"{ranked['recall_at_10']:.3f}  (true nearest at cosine {cosines[name]})",
                flush=True,
            )
            for probes, wider in answered[name]["wider"].items():
                print(
                    f"  {'':<22} re-ranked at {probes:>4} probes: p50 {wider['p50_ms']:6.2f} p95 "
                    f"{wider['p95_ms']:6.2f} ms recall@10 {wider['recall_at_10']:.3f}",
                    flush=True,
                )
            for depth, deeper in answered[name]["deeper"].items():
                print(
                    f"  {'':<22} {depth} candidates at 4x the probes: p50 "
                    f"{deeper['p50_ms']:6.2f} p95 {deeper['p95_ms']:6.2f} ms recall@10 "
                    f"{deeper['recall_at_10']:.3f}",
                    flush=True,
                )
        shutil.rmtree(folder)
    write_result(
        args.out,
        {
            "vectors": count,
            "dim": DIM,
            "vectors_kind": "synthetic, clustered like real embeddings (ann_scale)",
            "generate_s": generated,
            "budget_gib": args.budget_gib,
            "queries_per_set": args.queries,
            "true_nearest_cosine": cosines,
            "latency": "one query at a time, lists file warm in the page cache (just written)",
            "runs": runs,
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
