"""IVF-PQ for large kinds (vectors/large.py): the plan from a count and a budget, shards built
apart and merged into lists on disk, memory-mapped search, re-ranking and filters."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import faiss
import numpy as np
import pytest

from searchapp.vectors import ann, large
from searchapp.vectors.layered import Layered

DIM = 64


def clustered(count: int, seed: int) -> np.ndarray:
    """Unit vectors in 200 clusters: structure for the lists and the codes to find."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(200, DIM)).astype(np.float32)
    rows = centres[rng.integers(0, 200, count)] + 0.5 * rng.normal(size=(count, DIM))
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


def exact_top(queries: np.ndarray, vectors: np.ndarray, ids: np.ndarray, k: int) -> np.ndarray:
    return ids[np.argsort(-(queries @ vectors.T), axis=1)[:, :k]]


def test_the_plan_follows_the_count_and_the_budget() -> None:
    ten_million = large.plan_for(10_000_000, 512, budget_bytes=1 << 30)
    assert (ten_million.lists, ten_million.code_bytes, ten_million.opq) == (4096, 64, True)
    assert ten_million.factory == "OPQ64,IVF4096_HNSW32,PQ64"
    assert ten_million.list_bytes == 10_000_000 * 72 <= 1 << 30
    # a larger budget buys a larger code, one byte for every 4 components at most, then no OPQ
    roomy = large.plan_for(10_000_000, 512, budget_bytes=8 << 30)
    assert (roomy.code_bytes, roomy.opq) == (128, False)
    billion = large.plan_for(1_000_000_000, 512, budget_bytes=64 << 30)
    assert (billion.lists, billion.code_bytes) == (32768, 32)  # 48 does not divide 512
    assert billion.memory_bytes < 1 << 30  # what a query process holds, the lists aside
    with pytest.raises(ValueError, match=r"need at least 14\.9 GiB of lists"):
        large.plan_for(1_000_000_000, 512, budget_bytes=8 << 30)


def test_shards_merged_on_disk_are_the_index_faiss_writes_and_readers_map_it(
    tmp_path: Path,
) -> None:
    count = 24_000
    vectors = clustered(count, seed=0)
    ids = np.arange(10, 10 + count, dtype=np.int64) * 3  # ids are the catalog's, not positions
    plan = large.plan_for(count, DIM, budget_bytes=1 << 30)
    assert plan.code_bytes == 16 and plan.lists == 256
    empty = large.trained(plan, vectors[: plan.train_count])
    seen: list[int] = []
    chunks = ann.chunks_of(vectors, ids, 4_000)
    shards = large.write_shards(empty, chunks, tmp_path, lambda i, v: seen.append(len(i)), 7_000)
    assert len(shards) == 4 and sum(seen) == count  # 7k, 7k, 7k and 3k, from chunks of 4k
    merged = tmp_path / "index.faiss"
    large.write_merged(empty, shards, merged)
    for shard in shards:
        shard.unlink()  # the merged file stands alone

    # byte for byte what FAISS writes for the same vectors added in memory, probes aside
    whole = faiss.clone_index(empty)
    whole.add_with_ids(vectors, ids)
    assert merged.read_bytes() == faiss.serialize_index(whole).tobytes()
    large.write_probes(empty, merged, count, 7)
    index = ann.load(merged, mapped=True)
    assert large.is_mapped(index) and index.ntotal == count
    assert faiss.extract_index_ivf(index).nprobe == 7

    queries = clustered(100, seed=1)
    truth = exact_top(queries, vectors, ids, 10)
    row_of = {int(i): n for n, i in enumerate(ids)}

    def exact(wanted: np.ndarray) -> np.ndarray:
        return vectors[[row_of[int(i)] for i in wanted]]

    probes, reached = large.fewest_probes(index, queries, truth, exact)
    assert reached >= large.RECALL_TARGET and probes < plan.lists
    _, plain = large.search(index, queries, 10, probes=probes)
    scores, reranked = large.search(index, queries, 10, probes=probes, exact=exact)
    assert large.recall_at(reranked, truth) > large.recall_at(plain, truth)
    # re-ranked scores are the exact inner products, best first
    assert np.allclose(scores[:, 0], np.einsum("qd,qd->q", queries, exact(reranked[:, 0])))
    assert np.all(np.diff(scores, axis=1) <= 1e-6)

    # a filter of 2% of the ids still gives k, all of them allowed, the best of them
    allowed = ids[::50]
    _, kept = large.search(index, queries, 10, probes=probes, exact=exact, allowed=allowed)
    assert np.all(np.isin(kept, allowed))
    best_allowed = exact_top(queries, vectors[::50], allowed, 10)
    assert large.recall_at(kept, best_allowed) >= 0.9


@pytest.fixture(scope="module")
def opq_trained() -> tuple[object, np.ndarray]:
    """An empty OPQ index and its 12,000 vectors. Trained on a quarter of its sample: layouts
    and answers are what the tests check, not the codes (OPQ's training takes 40 s on the whole
    sample, 9 s here)."""
    vectors = clustered(12_000, seed=3)
    plan = replace(large.plan_for(len(vectors), DIM, budget_bytes=1 << 30), opq=True)
    assert plan.factory.startswith("OPQ")
    return large.trained(plan, vectors[: plan.train_count // 4]), vectors


def test_an_opq_index_merged_from_shards_is_the_one_faiss_writes(
    tmp_path: Path, opq_trained: tuple[object, np.ndarray]
) -> None:
    """A rotation ahead of the IVF wraps it (IndexPreTransform): two headers count the vectors."""
    empty, vectors = opq_trained
    count = len(vectors)
    ids = np.arange(count, dtype=np.int64)
    shards = large.write_shards(
        empty, ann.chunks_of(vectors, ids), tmp_path, lambda i, v: None, 5_000
    )
    assert len(shards) == 3
    large.write_merged(empty, shards, tmp_path / "index.faiss")
    whole = faiss.clone_index(empty)
    whole.add_with_ids(vectors, ids)
    assert (tmp_path / "index.faiss").read_bytes() == faiss.serialize_index(whole).tobytes()
    assert large.shard_size(10**9) * large.MAX_SHARDS >= 10**9  # a merge maps a bounded count
    assert large.shard_size(10**7) == large.SHARD_VECTORS


def test_the_graph_of_centroids_is_searched_wide_enough_for_the_probes() -> None:
    """IVF-PQ finds a query's lists through an HNSW graph of the centroids; at FAISS's default
    breadth (16) the graph misses lists nearer than those it returns, which no probe count or
    re-rank makes up for."""
    rng = np.random.default_rng(0)
    centroids = rng.normal(size=(4096, DIM)).astype(np.float32)
    centroids /= np.linalg.norm(centroids, axis=1, keepdims=True)
    vectors, ids = clustered(40_000, seed=0), np.arange(40_000)
    queries = clustered(100, seed=1)
    truth = exact_top(queries, vectors, ids, 10)
    found = {}
    for name, quantizer in [
        ("graph", faiss.IndexHNSWFlat(DIM, 32, faiss.METRIC_INNER_PRODUCT)),
        ("flat", faiss.IndexFlatIP(DIM)),
    ]:
        quantizer.add(centroids)  # the same lists: only how they are found differs
        index = faiss.IndexIVFPQ(quantizer, DIM, 4096, 16, 8, faiss.METRIC_INNER_PRODUCT)
        index.train(vectors[:10_000])
        index.add_with_ids(vectors, ids)
        _, found[name] = index.search(queries, 10, params=ann.probing(index, 64))
        if name == "graph":
            plain = faiss.SearchParametersIVF(nprobe=64)
            _, found["graph at 16"] = index.search(queries, 10, params=plain)
    graph, flat = large.recall_at(found["graph"], truth), large.recall_at(found["flat"], truth)
    assert graph >= flat - 0.02  # as good as scanning every centroid
    assert graph > large.recall_at(found["graph at 16"], truth) + 0.05


def test_changes_beside_an_opq_file_answer_as_the_one_index_of_what_is_left(
    tmp_path: Path, opq_trained: tuple[object, np.ndarray]
) -> None:
    """The file and the additions beside it are searched in the lists the file's quantiser
    chose once, through its rotation: the answers are those of one index holding the file's
    vectors less the removed, and the added, code for code."""
    empty, vectors = opq_trained
    ids = np.arange(len(vectors), dtype=np.int64)
    file_part, added = slice(0, 10_000), slice(10_000, None)
    saved = faiss.clone_index(empty)
    saved.add_with_ids(vectors[file_part], ids[file_part])
    faiss.write_index(saved, str(tmp_path / "index.faiss"))
    changed = Layered(ann.load(tmp_path / "index.faiss", mapped=True), tmp_path / "index.faiss", 1)
    changed.add(ids[added], vectors[added])
    removed = [*range(0, 10_000, 3), 10_005]  # from the file, and one of the additions
    changed.remove(removed)
    kept = ~np.isin(ids, removed)
    whole = faiss.clone_index(empty)
    whole.add_with_ids(vectors[kept], ids[kept])
    assert changed.ntotal == whole.ntotal
    queries = clustered(40, seed=4)
    for allowed in (None, ids[::7]):
        scores, found = changed.search(queries, 10, 16, allowed)
        selector = None if allowed is None else faiss.IDSelectorBatch(allowed)
        params = ann.probing(faiss.extract_index_ivf(whole), 16, selector)
        expected_scores, expected = whole.search(queries, 10, params=params)
        np.testing.assert_allclose(scores, expected_scores, rtol=1e-5)
        assert np.mean(found == expected) > 0.99  # equal scores may swap places
        assert not np.isin(found, removed).any()
        if allowed is not None:
            assert np.isin(found, allowed).all()
