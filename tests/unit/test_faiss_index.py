"""The FAISS layer against an exact numpy reference, and its repair of lost or stale files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from searchapp.records import CatalogBatch, FileStat, ImageMeta, NewImage, RegionData
from searchapp.store.catalog import Catalog
from searchapp.vectors import ann, faiss_index
from searchapp.vectors.faiss_index import IndexStore

DIM = 16


def unit_rows(rng: np.random.Generator, n: int) -> np.ndarray:
    rows = rng.normal(size=(n, DIM)).astype(np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def test_search_matches_exact_numpy_reference() -> None:
    """The index keeps fp16 codes; for the float16 vectors the catalog stores it is exact."""
    rng = np.random.default_rng(0)
    vectors = unit_rows(rng, 500).astype(np.float16).astype(np.float32)
    ids = np.arange(1000, 1500, dtype=np.int64)
    index = ann.exact_index(DIM)
    faiss_index.add(index, ids, vectors)
    queries = unit_rows(rng, 5)
    scores, found = faiss_index.search(index, queries, 10)
    exact = queries @ vectors.T
    for row in range(5):
        expected = np.sort(exact[row])[::-1][:10]
        np.testing.assert_allclose(scores[row], expected, atol=1e-5)
        np.testing.assert_allclose(exact[row][found[row] - 1000], scores[row], atol=1e-5)
    faiss_index.remove(index, [1000, 1001])
    assert index.ntotal == 498


def add_images(catalog: Catalog, rng: np.random.Generator, count: int, start: int = 0) -> None:
    batch = CatalogBatch()
    for i in range(start, start + count):
        meta = ImageMeta(10, 10, "JPEG", 0.0, "mtime")
        region = RegionData("scene", (0, 0, 10, 10), unit_rows(rng, 1)[0])
        batch.new.append(NewImage(FileStat(f"/p/{i}.jpg", 1, 1), f"h{i}", meta, [region]))
    catalog.apply(batch)


@pytest.fixture
def store(tmp_path: Path):  # type: ignore[no-untyped-def]
    catalog = Catalog(f"sqlite:///{tmp_path / 'c.db'}")
    add_images(catalog, np.random.default_rng(1), 20)
    yield IndexStore(tmp_path, catalog, DIM)
    catalog.close()


def reopen(store: IndexStore) -> IndexStore:
    return IndexStore(store.directory, store.catalog, DIM)


def test_first_open_builds_and_saves(store: IndexStore) -> None:
    index = store.get("scene", persist=True)
    assert index.ntotal == 20
    generation = store.catalog.vector_generation()
    assert store.path_for("scene", generation).exists()
    again = reopen(store)
    assert again.get("scene", persist=True).ntotal == 20
    assert again.repairs == []


@pytest.mark.parametrize("damage", ["missing", "corrupt", "truncated"])
def test_damaged_file_is_rebuilt_from_the_catalog(store: IndexStore, damage: str) -> None:
    store.get("scene", persist=True)
    path = store.path_for("scene", store.catalog.vector_generation())
    if damage == "missing":
        path.unlink()
    elif damage == "corrupt":
        path.write_bytes(b"not a faiss index at all")
    else:
        path.write_bytes(path.read_bytes()[:200])
    fresh = reopen(store)
    index = fresh.get("scene", persist=True)
    assert index.ntotal == 20
    assert len(fresh.repairs) == 1 and "rebuilt" in fresh.repairs[0]


def test_stale_file_is_rebuilt_and_vectors_equal_the_catalog(store: IndexStore) -> None:
    store.get("scene", persist=True)
    add_images(store.catalog, np.random.default_rng(2), 5, start=100)  # index file not updated
    fresh = reopen(store)
    index = fresh.get("scene", persist=False)
    assert index.ntotal == 25 and "stale" in fresh.repairs[0]
    ids, vectors = next(store.catalog.region_vectors("scene", DIM))
    np.testing.assert_array_equal(np.stack([index.reconstruct(int(i)) for i in ids]), vectors)


def test_delta_applies_only_on_its_base_generation(store: IndexStore) -> None:
    store.get("scene", persist=True)
    base = store.catalog.vector_generation()
    rng = np.random.default_rng(3)
    batch = CatalogBatch()
    meta = ImageMeta(10, 10, "JPEG", 0.0, "mtime")
    region = RegionData("scene", (0, 0, 10, 10), unit_rows(rng, 1)[0])
    batch.new.append(NewImage(FileStat("/p/new.jpg", 1, 1), "hn", meta, [region]))
    new_generation, delta = store.catalog.apply(batch)
    added = (np.asarray(delta.added_ids["scene"]), np.stack(delta.added_vectors["scene"]))
    store.apply_delta("scene", added, [], base, new_generation)
    assert store.get("scene", persist=True).ntotal == 21
    # an index opened after the commit must not take the same delta twice
    late = reopen(store)
    late.apply_delta("scene", added, [], base, new_generation)
    assert late.get("scene", persist=True).ntotal == 21


def test_batches_another_writer_interleaves_rebuild_once_at_the_save(
    store: IndexStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On PostgreSQL two writers' batches interleave: each sees a gap in the generations at
    almost every batch. Its indexes are made anew once, when saved, not at every gap."""
    rebuilt: list[str] = []
    plain = IndexStore.rebuild_from_catalog

    def counted(self: IndexStore, kind: str, *, persist: bool = True) -> object:
        rebuilt.append(kind)
        return plain(self, kind, persist=persist)

    monkeypatch.setattr(IndexStore, "rebuild_from_catalog", counted)
    store.get("scene", persist=True)
    rebuilt.clear()
    ours = store.catalog.vector_generation()
    rng = np.random.default_rng(4)
    for n in range(3):
        add_images(store.catalog, rng, 2, start=100 + 10 * n)  # the other writer's batch
        batch = CatalogBatch()
        meta = ImageMeta(10, 10, "JPEG", 0.0, "mtime")
        region = RegionData("scene", (0, 0, 10, 10), unit_rows(rng, 1)[0])
        batch.new.append(NewImage(FileStat(f"/ours/{n}.jpg", 1, 1), f"o{n}", meta, [region]))
        generation, delta = store.catalog.apply(batch)
        store.follow(delta, ours, generation)
        ours = generation
    assert rebuilt == []  # three gaps, no rebuild yet
    store.save_all(ours)
    assert rebuilt == ["scene"]
    fresh = reopen(store)
    saved = fresh.get("scene", persist=False)
    assert saved.ntotal == 20 + 3 * 3 and not fresh.repairs  # saved at the catalog's state
    # a search in the writer's own process after a gap reads the catalog as it is
    add_images(store.catalog, rng, 1, start=200)
    generation, delta = store.catalog.apply(CatalogBatch())
    store.follow(delta, ours, generation + 1)  # a gap
    assert store.get("scene", persist=False).ntotal == 20 + 3 * 3 + 1


def test_a_reader_maps_the_file_and_a_later_write_gets_a_writable_copy(store: IndexStore) -> None:
    store.get("scene", persist=True)  # saved
    reader = reopen(store)
    mapped = reader.get("scene", persist=False)
    assert "scene" in reader._mapped and mapped.ntotal == 20
    query = unit_rows(np.random.default_rng(5), 1)
    before = faiss_index.search(mapped, query, 3)
    base = store.catalog.vector_generation()
    batch = CatalogBatch()
    meta = ImageMeta(10, 10, "JPEG", 0.0, "mtime")
    region = RegionData("scene", (0, 0, 10, 10), query[0])
    batch.new.append(NewImage(FileStat("/p/w.jpg", 1, 1), "hw", meta, [region]))
    new_generation, delta = store.catalog.apply(batch)
    reader.follow(delta, base, new_generation)
    written = reader.get("scene", persist=False)
    assert "scene" not in reader._mapped and written.ntotal == 21
    scores, ids = faiss_index.search(written, query, 3)
    assert ids[0][0] == delta.added_ids["scene"][0] and scores[0][0] > before[0][0][0]
