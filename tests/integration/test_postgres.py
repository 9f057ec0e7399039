"""The catalog on a real PostgreSQL server: the same migrations both ways, paths compared as
SQLite compares them, and several writers at once where SQLite has one."""

from __future__ import annotations

import multiprocessing
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import insert, select

from searchapp.records import CatalogBatch, FileStat, ImageMeta, NewImage, RegionData
from searchapp.store.catalog import Catalog, _alembic_config
from searchapp.store.tables import images

DIM = 32


def _catalog_url(db_url: str | None, tmp_path: Path) -> str:
    return db_url or f"sqlite:///{tmp_path / 'c.db'}"


def _photo(path: str, seed: int, objects: int = 0) -> NewImage:
    rng = np.random.default_rng(seed)
    meta = ImageMeta(64, 48, "JPEG", 1.6e9 + seed, "exif", "Make", "Model")
    regions = [RegionData("scene", (0, 0, 64, 48), rng.standard_normal(DIM).astype(np.float32))]
    regions += [
        RegionData("object", (0, 0, 8 + i, 8 + i), rng.standard_normal(DIM).astype(np.float32))
        for i in range(objects)
    ]
    return NewImage(FileStat(path, 1, 1), f"hash-{path}", meta, regions)


@pytest.mark.both_catalogs
def test_models_match_the_migrations_and_every_migration_goes_down_and_up(
    db_url: str | None, tmp_path: Path
) -> None:
    from alembic import command
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from searchapp.store.models import metadata

    catalog = Catalog(_catalog_url(db_url, tmp_path))
    with catalog.engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), metadata) == []
        command.downgrade(_alembic_config(conn), "base")
        command.upgrade(_alembic_config(conn), "head")
        conn.commit()
        assert compare_metadata(MigrationContext.configure(conn), metadata) == []
    catalog.close()


@pytest.mark.both_catalogs
def test_a_folder_is_its_own_paths_whatever_the_server_collation(
    db_url: str | None, tmp_path: Path
) -> None:
    """A linguistic collation (the test server's is ICU en-US) sorts '#' between '/' and '0',
    which put /p/root#1/... under the folder /p/root before migration 0013."""
    catalog = Catalog(_catalog_url(db_url, tmp_path))
    paths = ["/p/root/a.jpg", "/p/root/deep/b.jpg", "/p/root#1/c.jpg", "/p/root-x/d.jpg"]
    batch = CatalogBatch()
    batch.new.extend(_photo(path, i) for i, path in enumerate(paths))
    catalog.apply(batch)
    assert sorted(catalog.images_under(["/p/root"])) == ["/p/root/a.jpg", "/p/root/deep/b.jpg"]
    # ORDER BY path is byte order, as on SQLite ('#' < '-' < '/')
    with catalog.engine.connect() as conn:
        ordered = conn.execute(select(images.c.path).order_by(images.c.path)).scalars().all()
    assert ordered == sorted(paths)
    catalog.close()


def test_a_second_writer_commits_while_the_first_holds_its_transaction(
    postgres_server, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    """Where SQLite's one write lock would keep the second waiting (then 'locked'), the
    server lets the second write while the first's rows are uncommitted."""
    url = postgres_server.new_database()
    first, second = Catalog(url), Catalog(url)
    with first.engine.begin() as held:
        held.execute(
            insert(images).values(
                path="/p/held.jpg", size=1, mtime_ns=1, content_hash="h", width=1, height=1,
                format="JPEG", taken_at=0.0, taken_source="mtime", indexed_at=0.0,
            )
        )  # fmt: skip
        done = threading.Event()

        def write() -> None:
            batch = CatalogBatch()
            batch.new.append(_photo("/p/second.jpg", 1))
            second.apply(batch)
            done.set()

        writer = threading.Thread(target=write)
        writer.start()
        assert done.wait(30), "the second writer waited for the first's transaction"
        writer.join()
    assert {image.path for image in first.all_images()} == {"/p/held.jpg", "/p/second.jpg"}
    assert first.vector_generation() == 1
    first.close()
    second.close()


def _write_batches(url: str, writer: int, batches: int, fit_at: int, start: Any) -> None:
    catalog = Catalog(url)
    catalog.codec_fit_at = fit_at
    start.wait(60)  # all four begin together, so that their batches overlap
    for b in range(batches):
        batch = CatalogBatch()
        batch.new.extend(
            _photo(f"/w{writer}/{b}-{i}.jpg", 1000 * writer + 10 * b + i, objects=6)
            for i in range(4)
        )
        catalog.apply(batch)
    catalog.close()


def test_writers_in_several_processes_at_once_leave_one_consistent_catalog(
    postgres_server,
) -> None:  # type: ignore[no-untyped-def]
    """Four processes write at once, and one of them fits the object basis on the way (all
    are due to): every photo is there, generations count every batch, and every object vector
    reads back through the one basis, none left in float16 beside it."""
    url = postgres_server.new_database()
    Catalog(url).close()  # migrated once, before the writers
    writers, batches, fit_at = 4, 5, 60
    context = multiprocessing.get_context("spawn")
    start = context.Barrier(writers)
    processes = [
        context.Process(target=_write_batches, args=(url, w, batches, fit_at, start))
        for w in range(writers)
    ]
    for process in processes:
        process.start()
    for process in processes:
        process.join(120)
        if process.is_alive():
            process.terminate()
    assert [process.exitcode for process in processes] == [0] * writers
    catalog = Catalog(url)
    assert len(catalog.all_images()) == writers * batches * 4
    assert catalog.vector_generation() == writers * batches  # one for each batch, none lost
    codec = catalog.region_codec("object")
    assert codec is not None
    decoded = np.concatenate([vectors for _, vectors in catalog.region_vectors("object", DIM)])
    assert decoded.shape == (writers * batches * 4 * 6, codec.dim)
    # each decoded object is its original's projection: float16 bytes read as codes would not be
    originals = {
        (w, b, i): _photo(f"/w{w}/{b}-{i}.jpg", 1000 * w + 10 * b + i, objects=6)
        for w in range(writers)
        for b in range(batches)
        for i in range(4)
    }
    projected = np.concatenate(
        [
            codec.project(np.stack([r.vector for r in photo.regions if r.kind == "object"]))
            for photo in originals.values()
        ]
    )
    norms = np.linalg.norm(decoded, axis=1)
    assert np.all(np.abs(norms - 1) < 0.05)
    best = (decoded @ (projected / np.linalg.norm(projected, axis=1, keepdims=True)).T).max(1)
    assert np.all(best > 0.95)
    catalog.close()
