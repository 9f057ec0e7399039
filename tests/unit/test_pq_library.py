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
    Move,
    NewImage,
    RegionData,
    VectorDelta,
)
from searchapp.store.catalog import Catalog
from searchapp.vectors import ann, faiss_index, large, layered, layouts
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


@pytest.fixture(scope="module")
def saved(filled: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The filled catalog with its scene kind built as IVF-PQ and saved, once (10 s)."""
    folder = tmp_path_factory.mktemp("saved")
    shutil.copyfile(filled, folder / "c.db")
    with pytest.MonkeyPatch.context() as patch:  # small_limits, for a fixture of the module
        patch.setattr(ann, "EXACT_LIMIT", 1000)
        patch.setattr(large, "PQ_ABOVE", 4000)
        patch.delenv(large.BUDGET_VARIABLE, raising=False)
        catalog = Catalog(f"sqlite:///{folder / 'c.db'}")
        IndexStore(folder, catalog, DIM).get("scene", persist=True)
        catalog.close()
    return folder


@pytest.fixture
def built(saved: Path, tmp_path: Path) -> Iterator[tuple[Catalog, np.ndarray]]:
    """A copy of the saved library: its catalog, and its PQ index file beside it."""
    for path in saved.iterdir():
        if path.name == "c.db" or path.name.startswith("index-"):
            shutil.copyfile(path, tmp_path / path.name)
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
    ivf = large._faiss().extract_index_ivf(written)
    assert ivf.nlist == 256 and ivf.nprobe < ivf.nlist  # tuned, not a full scan

    store = IndexStore(tmp_path, catalog, DIM)  # a reader: the saved file, memory-mapped
    index = store.get("scene", persist=False)
    assert large.is_pq(index) and not store.repairs and "scene" in store._mapped
    lists = large._faiss().downcast_InvertedLists(large._faiss().extract_index_ivf(index).invlists)
    assert lists.prefetch_nthread == 0  # FAISS's 32 read-ahead threads cost 1 ms a query

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
    built: tuple[Catalog, np.ndarray], tmp_path: Path
) -> None:
    catalog, _ = built
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
    assert faiss_index.is_pq(IndexStore(tmp_path, catalog, DIM).get("scene", persist=False))

    index = store.get("scene", persist=True)
    assert not faiss_index.needs_rebuild(index)
    faiss_index.remove(index, list(range(1, index.ntotal - large.PQ_ABOVE // 2 + 2)))
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
    monkeypatch.setattr(large, "TRAIN_PER_LIST", 15)  # OPQ's training, the test's cost, on less
    store = IndexStore(tmp_path, catalog, DIM)
    index = store.get("scene", persist=True)
    assert large.is_pq(index) and large._faiss().extract_index_ivf(index).code_size == 8
    assert type(large._faiss().downcast_index(index)).__name__ == "IndexPreTransform"
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


def test_the_writer_builds_shard_by_shard_into_one_file_it_maps_and_never_writes(
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
    after, delta = add_images(catalog, extra, COUNT)  # the writer follows it beside the file
    delta_ids = delta.added_ids["scene"]
    monkeypatch.setattr(large, "writable", None)  # no copy of the lists: calling it fails
    store.follow(delta, generation, after)
    changed = store.get("scene", persist=True)
    assert changed.base is index and large.is_mapped(index) and changed.ntotal == COUNT + 20
    assert saved.read_bytes() == published and before.ntotal == COUNT  # readers untouched
    _, found = searched(store, extra, 1)
    assert found[:, 0].tolist() == delta_ids

    store.save_all(after)  # the changes alone, beside the file they lie on
    assert saved.read_bytes() == published and not (tmp_path / ".shards-killed").exists()
    assert store.saved_files("scene", after) == [store.changes_path("scene", after), saved]
    assert IndexStore(tmp_path, catalog, DIM).get("scene", persist=False).ntotal == COUNT + 20
    result = checkup.examine(catalog, lambda: IndexStore(tmp_path, catalog, DIM), tmp_path)
    assert [f for f in result.findings if f.what != "missing"] == []  # the photos are made up


def test_a_search_during_a_run_catches_a_pq_file_up_instead_of_rebuilding(
    built: tuple[Catalog, np.ndarray], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The run has committed batches since it last saved the PQ kind: a search maps the file,
    applies those batches from the change log, and finds what they added."""
    catalog, _ = built
    IndexStore(tmp_path, catalog, DIM).get("scene", persist=True)
    extra = clustered(20, seed=9)
    _, delta = add_images(catalog, extra, COUNT)
    # the first two photos go, and one added since: the file never held it
    catalog.apply(CatalogBatch(deleted_ids=[1, 2, COUNT + 1]))

    def refuse(*_: object, **__: object) -> None:
        raise AssertionError("rebuilt the kind from every vector")

    monkeypatch.setattr(IndexStore, "rebuild_from_catalog", refuse)
    monkeypatch.setattr(large, "writable", None)  # no copy of the lists: calling it fails
    reader = IndexStore(tmp_path, catalog, DIM)
    _, found = searched(reader, extra[1:], 1)
    assert reader.repairs == [] and found[:, 0].tolist() == delta.added_ids["scene"][1:]
    index = reader.get("scene", persist=False)
    assert index.ntotal == COUNT + 20 - 3 and index.changes() == 19 + 2
    assert large.is_mapped(index.base)  # the batches lie beside the file: nothing was copied


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


def refuse_rebuilds(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*_: object, **__: object) -> None:
        raise AssertionError("rebuilt the kind from every vector")

    monkeypatch.setattr(IndexStore, "rebuild_from_catalog", refuse)


def test_a_pq_kinds_changes_are_saved_beside_its_file_read_back_and_checked(
    built: tuple[Catalog, np.ndarray], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Additions and removals, of the file's photos and of added ones, are saved as a changes
    file: a reader reads them back without a rebuild or a copy, filters keep k, and `check`
    finds the kind sound. A batch of another kind moves the changes file, not the file."""
    catalog, vectors = built
    store = IndexStore(tmp_path, catalog, DIM)
    store.get("scene", persist=True)
    generation = catalog.vector_generation()
    base = store.path_for("scene", generation)
    published = base.read_bytes()
    monkeypatch.setattr(large, "writable", None)  # no copy of the lists: calling it fails
    extra = clustered(30, seed=11)
    added_at, delta = add_images(catalog, extra, COUNT)
    store.follow(delta, generation, added_at)
    added = delta.added_ids["scene"]
    after, delta = catalog.apply(CatalogBatch(deleted_ids=[3, 4, 5, added[0]]))
    store.follow(delta, added_at, after)
    removed = delta.removed_ids["scene"]
    assert sorted(removed) == [3, 4, 5, added[0]]
    store.save_all(after)
    assert base.read_bytes() == published
    assert store.saved_files("scene", after) == [store.changes_path("scene", after), base]
    assert catalog.index_record("scene") == (after, COUNT + 30 - 4)

    refuse_rebuilds(monkeypatch)
    reader = IndexStore(tmp_path, catalog, DIM)
    index = reader.get("scene", persist=False)
    assert reader.repairs == [] and index.ntotal == COUNT + 30 - 4
    _, found = searched(reader, extra[1:], 1)
    assert found[:, 0].tolist() == added[1:]
    queries = np.concatenate([vectors[2:5], extra[:1]])  # the removed photos' own vectors
    _, found = searched(reader, queries, 10)
    assert not np.isin(found, removed).any() and (found >= 0).all()
    allowed = np.array([*removed, *added[1:6], 100, 200])  # 7 of them still there
    _, kept = searched(reader, queries, 7, allowed=allowed)
    assert (kept >= 0).all() and not np.isin(kept, removed).any() and np.isin(kept, allowed).all()
    result = checkup.examine(catalog, lambda: IndexStore(tmp_path, catalog, DIM), tmp_path)
    assert [f for f in result.findings if f.what != "missing"] == []  # the photos are made up

    monkeypatch.undo()  # the object kind is new: it is built
    region = RegionData("object", (0, 0, 5, 5), clustered(1, seed=12)[0])
    meta = ImageMeta(10, 10, "JPEG", 0.0, "mtime")
    photo = NewImage(FileStat("/o/0.jpg", 1, 1), "o0", meta, [region])
    moved, delta = catalog.apply(CatalogBatch(new=[photo]))
    store.follow(delta, after, moved)
    assert store.saved_files("scene", moved) == [store.changes_path("scene", moved), base]
    assert not store.changes_path("scene", after).exists()
    assert IndexStore(tmp_path, catalog, DIM).get("scene", persist=False).ntotal == index.ntotal


def test_changes_past_a_share_of_the_file_are_merged_into_a_new_one(
    built: tuple[Catalog, np.ndarray], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    catalog, _ = built
    store = IndexStore(tmp_path, catalog, DIM)
    probes = large._faiss().extract_index_ivf(store.get("scene", persist=True)).nprobe
    generation = catalog.vector_generation()
    extra = clustered(30, seed=13)
    added_at, delta = add_images(catalog, extra, COUNT)
    store.follow(delta, generation, added_at)
    added = delta.added_ids["scene"]
    after, delta = catalog.apply(CatalogBatch(deleted_ids=[1, 2]))
    store.follow(delta, added_at, after)
    monkeypatch.setattr(layered, "COMPACT_SHARE", COUNT)  # 32 changes are past 1/COUNT
    store.save_all(after)
    assert [p.name for p in faiss_index.index_files(tmp_path)] == [f"index-scene-g{after}.faiss"]
    index = store.get("scene", persist=True)
    assert large.is_mapped(index) and index.ntotal == COUNT + 30 - 2

    refuse_rebuilds(monkeypatch)
    reader = IndexStore(tmp_path, catalog, DIM)
    merged = reader.get("scene", persist=False)
    assert reader.repairs == [] and large.is_mapped(merged)
    assert large._faiss().extract_index_ivf(merged).nprobe == probes  # still tuned
    _, found = searched(reader, extra, 1)
    assert found[:, 0].tolist() == added
    result = checkup.examine(catalog, lambda: IndexStore(tmp_path, catalog, DIM), tmp_path)
    assert [f for f in result.findings if f.what != "missing"] == []


def test_an_id_removed_and_added_again_counts_once_and_keeps_its_new_vector(
    tmp_path: Path,
) -> None:
    """SQLite may give a removed region's id to a new one: the file's old vector stays out of
    answers, the new one is found, both survive a save and a merge."""
    vectors = clustered(COUNT, seed=0)
    table = np.vstack([np.zeros((1, DIM), np.float32), vectors, clustered(1, seed=14)])
    path = tmp_path / "index-scene-g1.faiss"
    large.build(DIM, COUNT, ann.chunks_of(vectors, np.arange(1, COUNT + 1)), 1 << 30, path)
    index = layered.Layered(faiss_index.load(path, mapped=True), path, 1)
    table[7] = clustered(1, seed=15)[0]  # id 7's new vector
    faiss_index.remove(index, [7, 8])
    faiss_index.add(index, np.array([7, COUNT + 1]), table[[7, COUNT + 1]])
    faiss_index.remove(index, [COUNT + 1])  # added, then removed: gone from the additions
    expected = sorted(set(range(1, COUNT + 1)) - {8})
    assert index.ntotal == COUNT - 1 and sorted(index.stored_ids().tolist()) == expected

    def exact(ids: np.ndarray) -> np.ndarray:
        return table[ids]

    def answers(searched_index: object) -> list[list[int]]:
        queries = np.vstack([table[7], vectors[6], vectors[7]])  # 7 new and old, 8's old
        _, found = faiss_index.search(searched_index, queries, 10, exact=exact)
        return found.tolist()

    found = answers(index)
    assert found[0][0] == 7 and 8 not in np.ravel(found)
    assert all(len(set(row)) == len(row) for row in found)  # 7 once, though in both
    _, codes_only = faiss_index.search(index, vectors[6:8], 10)  # no re-rank: the codes' order
    assert 8 not in codes_only and codes_only[0, 0] != 7  # the file's old 7 is filtered out

    changes = tmp_path / "index-scene-g2.changes"
    with open(changes, "wb") as handle:
        index.write_changes(handle)
    read = layered.read_changes(changes, lambda g: tmp_path / f"index-scene-g{g}.faiss")
    assert (
        read.ntotal == index.ntotal and read.removed.tolist() == [7, 8] and answers(read) == found
    )

    merged_path = tmp_path / "merged.faiss"
    with open(merged_path, "wb") as handle:
        assert index.write_compacted(handle) == COUNT - 1
    merged = faiss_index.load(merged_path, mapped=True)
    assert sorted(layouts.stored_ids(merged).tolist()) == expected
    assert answers(merged) == found

    whole = changes.read_bytes()
    for cut in (len(whole) - 5, 40):  # in the lists, in the removed ids
        changes.write_bytes(whole[:cut])
        with pytest.raises(RuntimeError, match="torn"):
            layered.read_changes(changes, lambda g: tmp_path / f"index-scene-g{g}.faiss")


def test_changes_whose_file_is_gone_are_rebuilt_and_said_so(
    built: tuple[Catalog, np.ndarray], tmp_path: Path
) -> None:
    catalog, _ = built
    store = IndexStore(tmp_path, catalog, DIM)
    store.get("scene", persist=True)
    generation = catalog.vector_generation()
    after, delta = add_images(catalog, clustered(5, seed=16), COUNT)
    store.follow(delta, generation, after)
    store.save_all(after)
    store.path_for("scene", generation).unlink()
    reader = IndexStore(tmp_path, catalog, DIM)
    assert reader.get("scene", persist=False).ntotal == COUNT + 5
    assert reader.repairs == [
        f"scene: index file index-scene-g{generation}.faiss is missing; rebuilt from the catalog"
    ]
    result = checkup.examine(catalog, lambda: IndexStore(tmp_path, catalog, DIM), tmp_path)
    assert any(f"index-scene-g{generation}.faiss is missing" in f.detail for f in result.findings)

    # the reader's own build maps a temporary file, gone: changes to it go into a copy
    more = clustered(3, seed=17)
    later, delta = add_images(catalog, more, COUNT + 5)
    reader.follow(delta, after, later)
    _, found = searched(reader, more, 1)
    assert found[:, 0].tolist() == delta.added_ids["scene"]


def test_a_later_writer_reopens_the_changes_and_counts_only_what_the_file_holds(
    built: tuple[Catalog, np.ndarray], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A writer resuming on a changes file follows batches and saves again; a photo set aside
    (its vectors out of the index) and then deleted is not removed twice, so the counts hold
    and nothing is rebuilt."""
    catalog, _ = built
    IndexStore(tmp_path, catalog, DIM).get("scene", persist=True)
    first = IndexStore(tmp_path, catalog, DIM)
    generation = catalog.vector_generation()
    after, delta = add_images(catalog, clustered(10, seed=18), COUNT)
    first.follow(delta, generation, after)
    first.save_all(after)

    refuse_rebuilds(monkeypatch)
    monkeypatch.setattr(large, "writable", None)  # no copy of the lists: calling it fails
    writer = IndexStore(tmp_path, catalog, DIM)
    aside = CatalogBatch(set_aside=[Move(20, FileStat("/aside/20.jpg", 1, 1))])
    set_at, delta = catalog.apply(aside)
    writer.follow(delta, after, set_at)
    gone_at, delta = catalog.apply(CatalogBatch(deleted_ids=[20, 30]))
    assert delta.removed_ids["scene"] == [30]  # 20's vector left with the set-aside
    writer.follow(delta, set_at, gone_at)
    index = writer.get("scene", persist=True)
    assert index.ntotal == catalog.region_count("scene") == COUNT + 10 - 2
    writer.save_all(gone_at)
    assert catalog.index_record("scene") == (gone_at, COUNT + 10 - 2)
    reader = IndexStore(tmp_path, catalog, DIM)
    assert reader.get("scene", persist=False).ntotal == COUNT + 10 - 2 and not reader.repairs
    result = checkup.examine(catalog, lambda: IndexStore(tmp_path, catalog, DIM), tmp_path)
    assert [f for f in result.findings if f.what != "missing"] == []
