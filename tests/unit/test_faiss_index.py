"""The FAISS layer against an exact numpy reference, and its repair of lost or stale files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from searchapp.records import CatalogBatch, FileStat, ImageMeta, Move, NewImage, RegionData
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


def holds_the_catalog(index: object, catalog: Catalog) -> None:
    ids, vectors = next(catalog.region_vectors("scene", DIM))
    assert index.ntotal == len(ids)  # type: ignore[attr-defined]
    found = np.stack([index.reconstruct(int(i)) for i in ids])  # type: ignore[attr-defined]
    np.testing.assert_array_equal(found, vectors)


def no_rebuilds(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*_: object, **__: object) -> None:
        raise AssertionError("rebuilt the kind from every vector")

    monkeypatch.setattr(IndexStore, "rebuild_from_catalog", refuse)


def some_batches(catalog: Catalog) -> None:
    """What a run commits between two saves: photos added, deleted and set aside."""
    add_images(catalog, np.random.default_rng(2), 5, start=100)
    doomed = [image.id for image in catalog.all_images()[:2]]
    catalog.apply(CatalogBatch(deleted_ids=doomed))
    add_images(catalog, np.random.default_rng(5), 3, start=200)
    aside, back = catalog.all_images()[:2]
    catalog.apply(CatalogBatch(set_aside=[Move(aside.id, FileStat("/aside/0.jpg", 1, 1))]))
    catalog.apply(CatalogBatch(set_aside=[Move(back.id, FileStat("/aside/1.jpg", 1, 1))]))
    catalog.apply(CatalogBatch(restored=[Move(back.id, FileStat("/p/back.jpg", 1, 1))]))


@pytest.mark.parametrize("persist", [False, True], ids=["reader", "writer"])
def test_a_file_some_batches_behind_catches_up_from_the_change_log(
    store: IndexStore, monkeypatch: pytest.MonkeyPatch, persist: bool
) -> None:
    """A search while a run commits (reader), or the run after a killed one (writer), opens a
    file older than the catalog: it applies the batches since, and rebuilds nothing."""
    store.get("scene", persist=True)
    some_batches(store.catalog)
    no_rebuilds(monkeypatch)
    fresh = reopen(store)
    index = fresh.get("scene", persist=persist)
    assert fresh.repairs == [] and index.ntotal == 20 + 5 - 2 + 3 - 1
    holds_the_catalog(index, store.catalog)
    generation = store.catalog.vector_generation()
    saved = store.catalog.index_record("scene")
    # a writer saves what it caught up, and the log's rows that file holds go
    assert saved == ((generation, 25) if persist else (generation - 6, 20))
    assert store.catalog.changes_since("scene", saved[0], DIM) is not None  # type: ignore[index]
    with store.catalog.engine.connect() as conn:
        logged = conn.exec_driver_sql("SELECT count(*) FROM vector_changes").scalar_one()
    assert logged == (0 if persist else 6)  # a run each: added, deleted, added, aside x2, back


def test_a_file_older_than_the_change_log_is_rebuilt(store: IndexStore) -> None:
    """Batches from before the log began (a catalog made before revision 0014) are not in it."""
    store.get("scene", persist=True)
    add_images(store.catalog, np.random.default_rng(2), 5, start=100)
    store.catalog.set_setting("vectors.logged_since", str(store.catalog.vector_generation()))
    fresh = reopen(store)
    index = fresh.get("scene", persist=False)
    assert "stale" in fresh.repairs[0]
    holds_the_catalog(index, store.catalog)


def test_a_catch_up_that_misses_a_change_is_rebuilt(store: IndexStore) -> None:
    """A change the log does not hold (here: a region deleted behind its back) shows as a count
    that differs from the catalog's, and the kind is rebuilt."""
    store.get("scene", persist=True)
    add_images(store.catalog, np.random.default_rng(2), 5, start=100)
    with store.catalog.engine.begin() as conn:
        conn.exec_driver_sql("DELETE FROM regions WHERE id = 1")
    fresh = reopen(store)
    index = fresh.get("scene", persist=False)
    assert "stale" in fresh.repairs[0]
    holds_the_catalog(index, store.catalog)


def test_a_save_that_overtakes_a_catch_up_sends_the_reader_to_the_new_file(
    store: IndexStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The writer saved (and pruned the log) while a reader read the log for the file before:
    the reader opens the new file instead of trusting a log that lost rows."""
    store.get("scene", persist=True)
    # a photo deleted and one added: the count stays, so only the record can tell
    store.catalog.apply(CatalogBatch(deleted_ids=[store.catalog.all_images()[0].id]))
    add_images(store.catalog, np.random.default_rng(2), 1, start=100)
    plain = Catalog.changes_since
    writer = reopen(store)

    def overtaken(catalog: Catalog, kind: str, generation: int, *args: object) -> object:
        monkeypatch.setattr(Catalog, "changes_since", plain)  # the writer's own open is plain
        writer.get("scene", persist=True)  # lands between the reader's reads: saves, prunes
        return plain(catalog, kind, generation, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(Catalog, "changes_since", overtaken)
    fresh = reopen(store)
    index = fresh.get("scene", persist=False)
    assert store.catalog.index_record("scene") == (store.catalog.vector_generation(), 20)
    assert fresh.repairs == []
    holds_the_catalog(index, store.catalog)


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


def test_a_region_id_the_catalog_gives_again_is_caught_up_as_the_new_region(
    store: IndexStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQLite gives the highest id back once its row is deleted: the file's region 20 goes, and
    the new photo's region 20 comes, in that order."""
    store.get("scene", persist=True)
    last = max(image.id for image in store.catalog.all_images())
    store.catalog.apply(CatalogBatch(deleted_ids=[last]))
    add_images(store.catalog, np.random.default_rng(7), 1, start=300)
    assert max(next(store.catalog.region_vectors("scene", DIM))[0]) == 20  # the same id again
    no_rebuilds(monkeypatch)
    fresh = reopen(store)
    index = fresh.get("scene", persist=False)
    assert fresh.repairs == [] and index.ntotal == 20
    holds_the_catalog(index, store.catalog)
