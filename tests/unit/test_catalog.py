"""Catalog schema: migrations on fresh and old catalogs, models in step with migrations, refusal
of a newer schema."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest
from sqlalchemy import create_engine, event

from searchapp.errors import SchemaTooNewError
from searchapp.store.catalog import Catalog, _alembic_config
from searchapp.store.models import metadata


def test_fresh_catalog_is_at_head_in_wal_mode(tmp_path: Path) -> None:
    catalog = Catalog(f"sqlite:///{tmp_path / 'c.db'}")
    assert catalog.schema_revision() == "0014"
    catalog.close()
    with sqlite3.connect(tmp_path / "c.db") as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_revisions_are_named_after_their_files_so_the_fast_open_check_holds(
    tmp_path: Path,
) -> None:
    from alembic.script import ScriptDirectory

    from searchapp.store.catalog import newest_revision

    catalog = Catalog(f"sqlite:///{tmp_path / 'c.db'}")
    with catalog.engine.connect() as conn:
        script = ScriptDirectory.from_config(_alembic_config(conn))
    catalog.close()
    for revision in script.walk_revisions():
        assert Path(str(revision.path)).name.startswith(f"{revision.revision}_")
    assert newest_revision() == script.get_current_head()


def test_models_match_migrations(tmp_path: Path) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    catalog = Catalog(f"sqlite:///{tmp_path / 'c.db'}")
    with catalog.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
    catalog.close()
    assert diff == []


def test_upgrade_keeps_data_of_an_old_catalog(tmp_path: Path) -> None:
    from alembic import command

    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = create_engine(url)
    with engine.begin() as conn:
        command.upgrade(_alembic_config(conn), "0001")
    with sqlite3.connect(tmp_path / "old.db") as conn:
        conn.execute(
            "INSERT INTO images (id, path, size, mtime_ns, content_hash, width, height, format,"
            " taken_at, taken_source, indexed_at) VALUES"
            " (1, '/p/back\\xe9.jpg', 10, 5, 'h1', 4, 3, 'JPEG', 1.0, 'mtime', ?)",
            (time.time(),),
        )
        conn.execute(
            "INSERT INTO regions (id, image_id, kind, x0, y0, x1, y1, vector)"
            " VALUES (7, 1, 'scene', 0, 0, 4, 3, x'0000')"
        )
        conn.execute("INSERT INTO settings (key, value) VALUES ('vectors.generation', '6')")
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert "region_labels" not in tables
    engine.dispose()

    catalog = Catalog(url)  # opening migrates
    assert catalog.schema_revision() == "0014"
    # 0009 stores paths losslessly (searchapp.paths): a backslash already there reads the same
    assert [image.path for image in catalog.all_images()] == ["/p/back\\xe9.jpg"]
    assert catalog.region_count("scene") == 1
    # 0014's change log starts at the generation it found: files from before are rebuilt
    assert catalog.get_setting("vectors.logged_since") == "6"
    assert catalog.changes_since("scene", 5, 2) is None
    catalog.close()
    with sqlite3.connect(tmp_path / "old.db") as conn:
        assert conn.execute("SELECT count(*) FROM region_labels").fetchone()[0] == 0


def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    Catalog(f"sqlite:///{tmp_path / 'c.db'}").close()
    with sqlite3.connect(tmp_path / "c.db") as conn:
        conn.execute("UPDATE alembic_version SET version_num = '9999_future'")
    with pytest.raises(SchemaTooNewError, match="upgrade searchapp"):
        Catalog(f"sqlite:///{tmp_path / 'c.db'}")


def test_downgrading_0010_keeps_the_regions(tmp_path: Path) -> None:
    """Dropping regions_pending must not copy the images table: dropping the old copy would
    cascade to every region."""
    from alembic import command

    url = f"sqlite:///{tmp_path / 'c.db'}"
    Catalog(url).close()
    with sqlite3.connect(tmp_path / "c.db") as conn:
        conn.execute(
            "INSERT INTO images (id, path, size, mtime_ns, content_hash, width, height, format,"
            " taken_at, taken_source, indexed_at, regions_pending) VALUES"
            " (1, '/p/a.jpg', 10, 5, 'h1', 4, 3, 'JPEG', 1.0, 'mtime', 1.0, 'tile')"
        )
        conn.execute(
            "INSERT INTO regions (id, image_id, kind, x0, y0, x1, y1, vector)"
            " VALUES (7, 1, 'scene', 0, 0, 4, 3, x'0000')"
        )
    engine = create_engine(url)

    @event.listens_for(engine, "connect")
    def _foreign_keys(dbapi_connection, _record):  # type: ignore[no-untyped-def]
        dbapi_connection.execute("PRAGMA foreign_keys=ON")  # as the catalog's connections do

    with engine.begin() as conn:
        command.downgrade(_alembic_config(conn), "0009")
    engine.dispose()
    with sqlite3.connect(tmp_path / "c.db") as conn:
        assert conn.execute("SELECT count(*) FROM regions").fetchone()[0] == 1
        columns = {row[1] for row in conn.execute("PRAGMA table_info(images)")}
    assert "regions_pending" not in columns


def test_downgrading_0011_keeps_the_regions_and_their_labels(tmp_path: Path) -> None:
    """Dropping regions.norm must not copy the regions table: the cascade would empty the
    labels and map points with it."""
    from alembic import command

    url = f"sqlite:///{tmp_path / 'c.db'}"
    Catalog(url).close()
    with sqlite3.connect(tmp_path / "c.db") as conn:
        conn.execute(
            "INSERT INTO images (id, path, size, mtime_ns, content_hash, width, height, format,"
            " taken_at, taken_source, indexed_at) VALUES"
            " (1, '/p/a.jpg', 10, 5, 'h1', 4, 3, 'JPEG', 1.0, 'mtime', 1.0)"
        )
        conn.execute(
            "INSERT INTO regions (id, image_id, kind, x0, y0, x1, y1, vector, norm)"
            " VALUES (7, 1, 'scene', 0, 0, 4, 3, x'0000', 12.5)"
        )
        conn.execute("INSERT INTO region_labels VALUES (7, 0, 'tabby', 0.9)")
    engine = create_engine(url)

    @event.listens_for(engine, "connect")
    def _foreign_keys(dbapi_connection, _record):  # type: ignore[no-untyped-def]
        dbapi_connection.execute("PRAGMA foreign_keys=ON")

    with engine.begin() as conn:
        command.downgrade(_alembic_config(conn), "0010")
    engine.dispose()
    with sqlite3.connect(tmp_path / "c.db") as conn:
        assert conn.execute("SELECT count(*) FROM region_labels").fetchone()[0] == 1
        columns = {row[1] for row in conn.execute("PRAGMA table_info(regions)")}
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert "norm" not in columns
    assert "map_points" not in tables


def test_words_matched_through_labels_leave_a_set_aside_photo_out(tmp_path: Path) -> None:
    """`dupes --apply` sets copies aside, out of search: their vectors leave the indexes, and
    a word query matched against stored labels (the CNN's) must not find them either."""
    import numpy as np

    from searchapp.records import (
        CatalogBatch,
        FileStat,
        Filters,
        ImageMeta,
        Move,
        NewImage,
        RegionData,
    )

    catalog = Catalog(f"sqlite:///{tmp_path / 'c.db'}")
    batch = CatalogBatch()
    for name in ("dog", "dog_copy"):
        region = RegionData("scene", (0, 0, 10, 10), np.ones(4, np.float32) / 2, "dog", 0.9)
        region.labels.append(("dog", 0.9))
        meta = ImageMeta(10, 10, "JPEG", 0.0, "mtime")
        batch.new.append(NewImage(FileStat(f"/p/{name}.jpg", 1, 1), name, meta, [region]))
    catalog.apply(batch)
    copy = catalog.image_by_path("/p/dog_copy.jpg")
    assert copy is not None and len(catalog.label_scores(["dog"], ["scene"], Filters())) == 2
    catalog.apply(CatalogBatch(set_aside=[Move(copy.id, FileStat("/aside/dog_copy.jpg", 1, 1))]))
    found = catalog.label_scores(["dog"], ["scene"], Filters())
    assert list(found) == [1]  # the kept photo's region; the copy's (2) is set aside
    catalog.close()
