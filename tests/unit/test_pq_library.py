"""A library kind past PQ_ABOVE gets an IVF-PQ index (vectors/large.py) from its catalog: planned
for its count and memory budget, memory-mapped by readers, re-ranked on the catalog's vectors,
following batches, and given back to the fp16 IVF when it shrinks. PQ_ABOVE is scaled down so
that a test library crosses it."""

from __future__ import annotations

import errno
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from searchapp import checkup
from searchapp.errors import DiskFullError, UsageError
from searchapp.records import (
    CatalogBatch,
    FileStat,
    ImageMeta,
    NewImage,
    RegionData,
    VectorDelta,
)
from searchapp.store.catalog import Catalog
from searchapp.vectors import ann, faiss_index, large
from searchapp.vectors.faiss_index import IndexStore

DIM = 64
COUNT = 12_000


@pytest.fixture(autouse=True)
def small_limits(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ann, "EXACT_LIMIT", 1000)
    monkeypatch.setattr(large, "PQ_ABOVE", 4000)
    monkeypatch.delenv(large.BUDGET_VARIABLE, raising=False)


def clustered(count: int, seed: int) -> np.ndarray:
    """Unit vectors in 200 clusters, as the catalog stores them (float16)."""
    rng = np.random.default_rng(seed)
    centres = np.random.default_rng(0).normal(size=(200, DIM))
    rows = centres[rng.integers(0, 200, count)] + 0.5 * rng.normal(size=(count, DIM))
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    return rows.astype(np.float16).astype(np.float32)


def add_images(catalog: Catalog, vectors: np.ndarray, start: int) -> tuple[int, VectorDelta]:
    batch = CatalogBatch()
    for offset, vector in enumerate(vectors):
        i = start + offset
        region = RegionData("scene", (0, 0, 10, 10), vector)
        meta = ImageMeta(10, 10, "JPEG", 0.0, "mtime")
        batch.new.append(NewImage(FileStat(f"/p/{i}.jpg", 1, 1), f"h{i}", meta, [region]))
    return catalog.apply(batch)


@pytest.fixture(scope="module")
def filled(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A catalog file of COUNT scene vectors, written once (10 s) and copied for each test."""
    path = tmp_path_factory.mktemp("filled") / "c.db"
    catalog = Catalog(f"sqlite:///{path}")
    add_images(catalog, clustered(COUNT, seed=0), 0)
    catalog.close()
    return path


@pytest.fixture
def library(filled: Path, tmp_path: Path) -> Iterator[tuple[Catalog, np.ndarray]]:
    """The filled catalog's own copy; region ids run from 1 in insertion order."""
    shutil.copyfile(filled, tmp_path / "c.db")
    catalog = Catalog(f"sqlite:///{tmp_path / 'c.db'}")
    yield catalog, clustered(COUNT, seed=0)
    catalog.close()


def searched(
    store: IndexStore, queries: np.ndarray, k: int, allowed: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """The scenes' nearest regions, as the query layer searches them (re-ranked where PQ)."""
    index = store.get("scene", persist=False)
    exact = store.exact_vectors("scene", index)
    return faiss_index.search(index, queries, k, allowed, exact=exact)


def exact_top(queries: np.ndarray, vectors: np.ndarray, ids: np.ndarray, k: int) -> np.ndarray:
    return ids[np.argsort(-(queries @ vectors.T), axis=1)[:, :k]]


def test_a_kind_past_the_threshold_is_searched_through_pq_and_reranked(
    library: tuple[Catalog, np.ndarray], tmp_path: Path
) -> None:
    catalog, vectors = library
    ids = np.arange(1, COUNT + 1, dtype=np.int64)
    written = IndexStore(tmp_path, catalog, DIM).get("scene", persist=True)
    assert large.is_pq(written) and written.ntotal == COUNT
    ivf = faiss_index._faiss().extract_index_ivf(written)
    assert ivf.nlist == 256 and ivf.nprobe < ivf.nlist  # tuned, not a full scan

    store = IndexStore(tmp_path, catalog, DIM)  # a reader: the saved file, memory-mapped
    index = store.get("scene", persist=False)
    assert large.is_pq(index) and not store.repairs and "scene" in store._mapped

    queries = clustered(100, seed=1)
    truth = exact_top(queries, vectors, ids, 10)
    found = np.stack([searched(store, query[None], 10)[1][0] for query in queries])
    _, plain = faiss_index.search(index, queries, 10)  # the codes' own order, no re-rank
    assert large.recall_at(found, truth) >= 0.9
    assert large.recall_at(found, truth) > large.recall_at(plain, truth) + 0.1
    # the scores shown are the stored vectors' own inner products, best first
    scores, top = searched(store, queries[:5], 10)
    assert np.allclose(scores, np.einsum("qd,qkd->qk", queries[:5], vectors[top - 1]), atol=1e-5)
    assert np.all(np.diff(scores, axis=1) <= 1e-6)

    # a filter of 2.5% of the regions still gives k, all allowed, the best of them
    allowed = ids[::40]
    _, kept = searched(store, queries, 10, allowed=allowed)
    assert np.all(np.isin(kept, allowed))
    assert large.recall_at(kept, exact_top(queries, vectors[::40], allowed, 10)) >= 0.9


def test_a_pq_kind_follows_a_batch_and_gives_way_when_it_shrinks(
    library: tuple[Catalog, np.ndarray], tmp_path: Path
) -> None:
    catalog, _ = library
    store = IndexStore(tmp_path, catalog, DIM)
    assert large.is_pq(store.get("scene", persist=True))
    base = catalog.vector_generation()
    extra = clustered(50, seed=7)
    batch = CatalogBatch()
    for i, vector in enumerate(extra):
        meta = ImageMeta(10, 10, "JPEG", 0.0, "mtime")
        region = [RegionData("scene", (0, 0, 10, 10), vector)]
        batch.new.append(NewImage(FileStat(f"/q/{i}.jpg", 1, 1), f"q{i}", meta, region))
    generation, delta = catalog.apply(batch)
    store.follow(delta, base, generation)  # added to the PQ lists in memory, not rebuilt
    _, found = searched(store, extra, 1)
    assert found[:, 0].tolist() == delta.added_ids["scene"]  # each new photo finds itself
    store.save_all(generation)
    assert large.is_pq(IndexStore(tmp_path, catalog, DIM).get("scene", persist=False))

    index = store.get("scene", persist=True)
    assert not faiss_index.needs_rebuild(index)
    index.remove_ids(np.arange(1, index.ntotal - large.PQ_ABOVE // 2 + 2, dtype=np.int64))
    assert index.ntotal == large.PQ_ABOVE // 2 - 1
    assert faiss_index.needs_rebuild(index)  # under half the threshold: back to the fp16 IVF
    fp16 = ann.build(DIM, 6000, ann.chunks_of(clustered(6000, 2), np.arange(6000)))
    assert not large.is_pq(fp16) and faiss_index.needs_rebuild(fp16)  # 6000 > PQ_ABOVE


def test_a_tight_budget_takes_smaller_codes_with_opq(
    library: tuple[Catalog, np.ndarray], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    catalog, vectors = library
    # room for 8-byte codes and ids, not 16-byte ones: PQ8, each sub-quantiser 8 components
    monkeypatch.setenv(large.BUDGET_VARIABLE, str(COUNT * 20))
    store = IndexStore(tmp_path, catalog, DIM)
    index = store.get("scene", persist=True)
    assert large.is_pq(index) and faiss_index._faiss().extract_index_ivf(index).code_size == 8
    assert type(faiss_index._faiss().downcast_index(index)).__name__ == "IndexPreTransform"
    queries = clustered(100, seed=1)
    _, found = searched(store, queries, 10)
    truth = exact_top(queries, vectors, np.arange(1, COUNT + 1), 10)
    assert large.recall_at(found, truth) >= 0.85
    # `check` looks each sampled vector up as a query does, re-ranked: 8-byte codes alone would
    # rank some stored vectors below their neighbours
    result = checkup.examine(catalog, lambda: store, tmp_path)
    assert [f for f in result.findings if f.what != "missing"] == []  # the photos are made up

    # not even 8 bytes a vector: refused, and the kind, already committed, keeps an index
    monkeypatch.setenv(large.BUDGET_VARIABLE, str(COUNT * 10))
    with pytest.raises(UsageError, match=large.BUDGET_VARIABLE):
        chunks = ann.chunks_of(vectors, np.arange(COUNT))
        large.build(DIM, COUNT, chunks, COUNT * 10, tmp_path / "refused.faiss")
    assert not (tmp_path / "refused.faiss").exists()
    store = IndexStore(tmp_path, catalog, DIM)
    fallback = store.rebuild_from_catalog("scene")
    assert not large.is_pq(fallback) and fallback.ntotal == COUNT
    assert large.BUDGET_VARIABLE in store.repairs[0] and "fp16 IVF" in store.repairs[0]


def test_the_writer_builds_shard_by_shard_into_one_file_it_maps_and_copies_to_change(
    library: tuple[Catalog, np.ndarray], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    catalog, _ = library
    monkeypatch.setattr(large, "SHARD_VECTORS", 5000)
    merged: list[int] = []
    write_merged = large.write_merged
    monkeypatch.setattr(
        large,
        "write_merged",
        lambda e, shards, p: merged.append(len(shards)) or write_merged(e, shards, p),
    )
    (tmp_path / ".shards-killed").mkdir()  # a killed build's shards
    (tmp_path / ".shards-killed" / "shard-0.faiss").write_bytes(b"x")
    store = IndexStore(tmp_path, catalog, DIM)
    index = store.get("scene", persist=True)
    # 12,000 vectors in shards of 5,000, 5,000 and 2,000, merged into the saved file, mapped
    assert merged == [3] and large.is_mapped(index) and index.ntotal == COUNT
    generation = catalog.vector_generation()
    saved = store.path_for("scene", generation)
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith("c.db")) == [
        ".shards-killed",
        saved.name,
    ]
    assert saved.stat().st_size >= COUNT * (16 + 8)  # codes and ids are in it
    published = saved.read_bytes()

    reader = IndexStore(tmp_path, catalog, DIM)
    before = reader.get("scene", persist=False)
    extra = clustered(20, seed=9)
    after, delta = add_images(catalog, extra, COUNT)  # the writer follows it in a copy in memory
    delta_ids = delta.added_ids["scene"]
    store.follow(delta, generation, after)
    assert not large.is_mapped(index) and index.ntotal == COUNT + 20
    assert saved.read_bytes() == published and before.ntotal == COUNT  # readers untouched
    _, found = searched(store, extra, 1)
    assert found[:, 0].tolist() == delta_ids

    store.save_all(after)
    assert not saved.exists() and not (tmp_path / ".shards-killed").exists()
    assert IndexStore(tmp_path, catalog, DIM).get("scene", persist=False).ntotal == COUNT + 20
    result = checkup.examine(catalog, lambda: IndexStore(tmp_path, catalog, DIM), tmp_path)
    assert [f for f in result.findings if f.what != "missing"] == []  # the photos are made up


def test_a_search_during_a_run_catches_a_pq_file_up_instead_of_rebuilding(
    library: tuple[Catalog, np.ndarray], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The run has committed batches since it last saved the PQ kind: a search maps the file,
    applies those batches from the change log, and finds what they added."""
    catalog, _ = library
    IndexStore(tmp_path, catalog, DIM).get("scene", persist=True)
    extra = clustered(20, seed=9)
    _, delta = add_images(catalog, extra, COUNT)
    catalog.apply(CatalogBatch(deleted_ids=[1, 2]))  # the first two photos' scenes go

    def refuse(*_: object, **__: object) -> None:
        raise AssertionError("rebuilt the kind from every vector")

    monkeypatch.setattr(IndexStore, "rebuild_from_catalog", refuse)
    reader = IndexStore(tmp_path, catalog, DIM)
    _, found = searched(reader, extra, 1)
    assert reader.repairs == [] and found[:, 0].tolist() == delta.added_ids["scene"]
    index = reader.get("scene", persist=False)
    assert large.is_pq(index) and index.ntotal == COUNT + 20 - 2
    assert not large.is_mapped(index)  # its lists were copied to take the batches


def test_a_build_replaced_before_its_save_is_not_what_gets_saved(
    library: tuple[Catalog, np.ndarray], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    catalog, _ = library
    store = IndexStore(tmp_path, catalog, DIM)
    store.rebuild_from_catalog("scene")  # a PQ build, its file waiting for a save
    assert len(list(tmp_path.glob("*.build*"))) == 1
    monkeypatch.setattr(large, "PQ_ABOVE", COUNT * 10)  # the kind is now under the threshold
    fp16 = store.rebuild_from_catalog("scene")
    generation = catalog.vector_generation()
    store.save("scene", fp16, generation)
    saved = faiss_index.load(store.path_for("scene", generation))
    assert not large.is_pq(saved) and saved.ntotal == COUNT
    assert list(tmp_path.glob("*.build*")) == []


def test_a_disk_full_during_the_build_says_so_and_leaves_nothing(
    library: tuple[Catalog, np.ndarray], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    catalog, _ = library

    def full(empty: object, shards: list[Path], path: Path) -> None:
        path.write_bytes(b"half an index")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(large, "write_merged", full)
    with pytest.raises(DiskFullError, match="rebuild-index`: the catalog is intact"):
        IndexStore(tmp_path, catalog, DIM).get("scene", persist=True)
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith("c.db")) == []


def test_a_width_no_code_divides_is_said_plainly() -> None:
    with pytest.raises(ValueError, match="divides a width of 100"):
        large.plan_for(10_000_000, 100, budget_bytes=1 << 40)


def test_a_candidate_gone_from_the_catalog_is_dropped_from_the_rerank() -> None:
    queries = np.eye(4, dtype=np.float32)[:1]
    rows = {7: [1.0, 0, 0, 0], 8: [np.nan] * 4, 9: [0.5, 0.5, 0, 0]}

    def exact(ids: np.ndarray) -> np.ndarray:
        return np.array([rows[int(i)] for i in ids], np.float32)

    scores, ids = large.rerank(queries, np.array([[8, 9, 7, -1]]), 3, exact)
    assert ids.tolist() == [[7, 9, -1]] and scores[0, :2].tolist() == [1.0, 0.5]


@pytest.mark.parametrize(
    ("given", "expected"),
    [("16G", 16 << 30), ("800M", 800 << 20), ("1.5GiB", 3 << 29), ("12345", 12345)],
)
def test_the_budget_reads_sizes(monkeypatch: pytest.MonkeyPatch, given: str, expected: int) -> None:
    monkeypatch.setenv(large.BUDGET_VARIABLE, given)
    assert large.memory_budget() == expected


def test_a_budget_that_is_not_a_size_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(large.BUDGET_VARIABLE, "lots")
    with pytest.raises(UsageError, match="'lots' is not a size"):
        large.memory_budget()
    monkeypatch.delenv(large.BUDGET_VARIABLE)
    assert large.memory_budget() > 1 << 28  # a quarter of this machine's memory
