"""The index layout follows the library's size: exact while small, IVF (trained on the stored
vectors, probes tuned by measured recall) once large, and back; never re-embedding anything."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import faiss
import numpy as np
import pytest

from searchapp.records import (
    CatalogBatch,
    FileStat,
    ImageMeta,
    NewImage,
    RegionData,
    VectorDelta,
)
from searchapp.store.catalog import Catalog
from searchapp.vectors import ann, faiss_index
from searchapp.vectors.faiss_index import IndexStore

DIM = 32
LIMIT = 1000  # the exact limit, scaled down so that a test library crosses it


@pytest.fixture(autouse=True)
def small_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ann, "EXACT_LIMIT", LIMIT)


def clustered(count: int, seed: int = 0) -> np.ndarray:
    """Unit vectors in clusters of uneven spread along uneven axes, as embeddings are; stored
    as the catalog stores them (float16)."""
    shape = np.random.default_rng(0)  # one distribution; the seed draws other members of it
    centres = shape.normal(size=(40, DIM))
    axes = np.exp(shape.normal(scale=0.7, size=DIM))
    rng = np.random.default_rng(seed + 1)
    rows = centres[rng.integers(0, 40, count)] + rng.normal(size=(count, DIM)) * axes * 0.5
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    return rows.astype(np.float16).astype(np.float32)


def exact_top(queries: np.ndarray, vectors: np.ndarray, ids: np.ndarray, k: int) -> np.ndarray:
    return ids[np.argsort(-(queries @ vectors.T), axis=1)[:, :k]]


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    hits = sum(len(set(f.tolist()) & set(t.tolist())) for f, t in zip(found, truth, strict=True))
    return hits / truth.size


def test_tuning_gathers_each_query_s_exact_neighbours_chunk_by_chunk() -> None:
    vectors = clustered(5000)
    vectors[4000] = vectors[3]  # a byte-identical copy is a neighbour; the query itself is not
    ids = np.arange(100, 5100, dtype=np.int64)
    chosen = np.array([3, 70, 2500])
    tuning = ann.ExactNeighbours(ids[chosen], vectors[chosen])
    for start in range(0, 5000, 700):  # chunks that do not divide the count
        tuning.see(ids[start : start + 700], vectors[start : start + 700].astype(np.float16))
    scores = vectors[chosen] @ vectors.astype(np.float16).astype(np.float32).T
    scores[np.arange(3), chosen] = -np.inf
    truth = ids[np.argsort(-scores, axis=1)[:, : ann.NEIGHBOURS]]
    assert [set(row) for row in tuning.found.tolist()] == [set(row) for row in truth.tolist()]
    assert ids[4000] in tuning.found[0] and ids[3] not in tuning.found[0]


def test_layout_by_size_with_hysteresis() -> None:
    assert ann.lists_for(LIMIT) == 0
    assert ann.lists_for(6000) == 128  # the power of two nearest 2 * sqrt(6000) = 155
    exact = ann.exact_index(DIM)
    exact.add_with_ids(clustered(LIMIT + 1), np.arange(LIMIT + 1))
    assert ann.needs_rebuild(exact)  # grown past the limit
    vectors = clustered(6000)
    ivf = ann.build(DIM, 6000, ann.chunks_of(vectors, np.arange(6000)))
    assert ann.lists_of(ivf) == 128 and not ann.needs_rebuild(ivf)
    ivf.remove_ids(np.arange(5000 - LIMIT // 2 + 10))
    assert ivf.ntotal < 6000 and not ann.needs_rebuild(ivf)  # above half the limit: stays IVF
    ivf.remove_ids(np.arange(6000 - LIMIT // 2 + 1))
    assert ann.needs_rebuild(ivf)  # under half the limit: back to exact


def test_ivf_meets_the_recall_target_on_unseen_queries() -> None:
    vectors = clustered(8000)
    ids = np.arange(100, 8100, dtype=np.int64)
    index = ann.build(DIM, len(ids), ann.chunks_of(vectors, ids, size=3000))
    assert ann.lists_of(index) > 0 and index.ntotal == 8000
    assert index.nprobe < ann.lists_of(index)  # tuned, not a full scan
    assert set(ann.stored_ids(index).tolist()) == set(ids.tolist())
    queries = clustered(300, seed=1)
    _, found = faiss_index.search(index, queries, 10)
    assert recall(found, exact_top(queries, vectors, ids, 10)) >= 0.93


@pytest.mark.parametrize("count", [500, 8000])  # exact, IVF
def test_eight_bit_indexes_within_fixed_ranges_keep_recall(count: int) -> None:
    vectors = clustered(count)
    ids = np.arange(count, dtype=np.int64)
    ranges = np.stack([vectors.min(axis=0), vectors.max(axis=0)])
    index = ann.build(DIM, count, ann.chunks_of(vectors, ids), ranges=ranges)
    assert (ann.lists_of(index) > 0) == (count > LIMIT)
    inner = faiss.extract_index_ivf(index) if count > LIMIT else faiss.downcast_index(index.index)
    assert inner.code_size == DIM  # a byte a component, against two for fp16
    queries = clustered(300, seed=1)
    _, found = faiss_index.search(index, queries, 10)
    assert recall(found, exact_top(queries, vectors, ids, 10)) >= 0.9


def test_a_narrow_filter_on_ivf_still_finds_its_hits() -> None:
    vectors = clustered(8000)
    ids = np.arange(8000, dtype=np.int64)
    index = ann.build(DIM, len(ids), ann.chunks_of(vectors, ids))
    allowed = np.random.default_rng(2).choice(ids, 40, replace=False)
    queries = clustered(5, seed=3)
    _, found = faiss_index.search(index, queries, 10, allowed=allowed)
    truth = exact_top(queries, vectors[allowed], allowed, 10)
    assert set(found.ravel().tolist()) <= set(allowed.tolist())
    assert recall(found, truth) >= 0.9


def test_queries_off_the_clusters_probe_more_lists_and_find_more() -> None:
    vectors = clustered(8000)
    ids = np.arange(8000, dtype=np.int64)
    index = ann.build(DIM, len(ids), ann.chunks_of(vectors, ids))
    wider = ann.search_parameters(index, 10, None, off_cluster=True)
    assert wider.nprobe == min(ann.lists_of(index), index.nprobe * ann.OFF_CLUSTER_PROBES)
    # as words lie off photos: one shared offset and noise, far from every cluster
    rng = np.random.default_rng(5)
    shifted = (
        clustered(300, seed=5) + rng.normal(size=DIM) * 0.6 + rng.normal(size=(300, DIM)) * 0.2
    )
    shifted = (shifted / np.linalg.norm(shifted, axis=1, keepdims=True)).astype(np.float32)
    truth = exact_top(shifted, vectors, ids, 10)
    _, tuned = faiss_index.search(index, shifted, 10)
    _, widened = faiss_index.search(index, shifted, 10, off_cluster=True)
    assert recall(widened, truth) > recall(tuned, truth) + 0.2  # measured: 0.62 -> 0.91
    assert recall(widened, truth) >= 0.85


def add_images(catalog: Catalog, vectors: np.ndarray, start: int) -> tuple[int, VectorDelta]:
    batch = CatalogBatch()
    for offset, vector in enumerate(vectors):
        i = start + offset
        meta = ImageMeta(10, 10, "JPEG", 0.0, "mtime")
        region = RegionData("scene", (0, 0, 10, 10), vector)
        batch.new.append(NewImage(FileStat(f"/p/{i}.jpg", 1, 1), f"h{i}", meta, [region]))
    return catalog.apply(batch)


@pytest.fixture
def catalog(tmp_path: Path) -> Iterator[Catalog]:
    opened = Catalog(f"sqlite:///{tmp_path / 'c.db'}")
    yield opened
    opened.close()


def test_a_library_grown_past_the_limit_reopens_as_ivf(catalog: Catalog, tmp_path: Path) -> None:
    vectors = clustered(6000)
    add_images(catalog, vectors[:500], 0)
    store = IndexStore(tmp_path, catalog, DIM)
    assert ann.lists_of(store.get("scene", persist=True)) == 0
    base = catalog.vector_generation()
    add_images(catalog, vectors[500:], 500)  # written by another run: the file is stale
    store = IndexStore(tmp_path, catalog, DIM)
    index = store.get("scene", persist=True)
    assert ann.lists_of(index) == 128 and index.ntotal == 6000
    assert catalog.vector_generation() > base
    reopened = IndexStore(tmp_path, catalog, DIM).get("scene", persist=True)
    assert ann.lists_of(reopened) == 128 and reopened.nprobe == index.nprobe  # saved as IVF
    assert store.repairs and "stale" in store.repairs[0]


def test_saving_a_grown_index_retrains_it_from_the_catalog(
    catalog: Catalog, tmp_path: Path
) -> None:
    vectors = clustered(3000)
    add_images(catalog, vectors[:800], 0)
    store = IndexStore(tmp_path, catalog, DIM)
    assert ann.lists_of(store.get("scene", persist=True)) == 0
    base = catalog.vector_generation()
    generation, delta = add_images(catalog, vectors[800:], 800)
    store.follow(delta, base, generation)  # the exact index follows the batch in memory
    store.save_all(generation)
    saved = IndexStore(tmp_path, catalog, DIM).get("scene", persist=False)
    assert ann.lists_of(saved) > 0 and saved.ntotal == 3000
    queries = clustered(50, seed=4)
    _, found = faiss_index.search(saved, queries, 5)
    truth = exact_top(queries, vectors, np.arange(1, 3001), 5)
    assert recall(found, truth) >= 0.9
