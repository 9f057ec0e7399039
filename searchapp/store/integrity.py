"""Catalog integrity: database errors as users should read them, the damage marker that stops
every write to a catalog found damaged, and the SQL reads and mends of `searchapp check`.

Part of the storage layer (Catalog inherits IntegrityChecks), kept apart so each module stays
readable.
"""

from __future__ import annotations

import contextlib
import shutil
from pathlib import Path

from sqlalchemy import Engine, delete, func, select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DatabaseError

from searchapp.errors import DamagedCatalogError, DiskFullError, LibraryBusyError, SearchappError
from searchapp.records import KnownImage
from searchapp.store.tables import images, known_columns, labels, regions

WRITES = frozenset({"INSERT", "UPDATE", "DELETE", "REPLACE", "CREATE", "DROP", "ALTER", "ANALYZE"})
# "no such table": a catalog without searchapp's tables, such as an empty recovery put in place
DAMAGE_SIGNS = (
    "not a database",
    "malformed",
    "database disk image",
    "file is encrypted",
    "no such table",
)


FULL_CODES = frozenset({"SQLITE_FULL", "SQLITE_IOERR_SHMSIZE"})
NO_ROOM = 1 << 20  # free bytes below which an I/O error on the catalog's disk is a full disk


def _no_room(url: str) -> bool:
    database = sqlite_file(url)
    if database is None:
        return False
    try:
        return shutil.disk_usage(database.parent).free < NO_ROOM
    except OSError:
        return False


def sqlite_file(url: str) -> Path | None:
    """The database file of a SQLite URL; None for another database or an in-memory one."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return Path(str(parsed.database))


def damage_marker(url: str) -> Path | None:
    """Written beside a SQLite catalog found damaged; while it is there nothing writes to the
    catalog. `searchapp check` removes it once SQLite's integrity check passes again."""
    database = sqlite_file(url)
    return database.with_name(database.name + ".damaged") if database else None


def translate_error(exc: DatabaseError, url: str) -> SearchappError:
    """A database error as the user should read it, with the fix; a damaged catalog is marked so
    that no later command writes to it."""
    detail = str(exc.orig) if exc.orig is not None else str(exc)
    text = detail.lower()
    where = sqlite_file(url) or url
    # with a few KiB left, SQLite cannot even map its shared memory: only "disk I/O error"
    code = getattr(exc.orig, "sqlite_errorname", "")
    no_room = "disk i/o error" in text and _no_room(url)
    if "disk is full" in text or "disk full" in text or code in FULL_CODES or no_room:
        return DiskFullError(
            f"disk full while writing the catalog {where}; nothing of this batch was kept. Free "
            "some space and run the same command again to resume"
        )
    if "locked" in text:
        return LibraryBusyError(
            f"the catalog {where} is locked by another process; wait for it to finish"
        )
    if any(sign in text for sign in DAMAGE_SIGNS):
        return damaged(url, detail)
    return SearchappError(f"cannot use the catalog {where}: {detail}")


def damaged(url: str, detail: str) -> DamagedCatalogError:
    marker = damage_marker(url)
    database = sqlite_file(url) or url
    if marker is not None:
        # on a read-only or full disk the error below still stops this command
        with contextlib.suppress(OSError):
            marker.write_text(f"{detail}\n")
    return DamagedCatalogError(
        f"the catalog {database} is damaged ({detail}); searchapp will not write to it. Your "
        f"photos are untouched. Recover what SQLite can: `sqlite3 {database} .dump | sqlite3 "
        "recovered.db` (or .recover in place of .dump); if `sqlite3 recovered.db 'select "
        "count(*) from images'` counts your photos, move catalog.db and its -wal and -shm files "
        "aside, put recovered.db in as catalog.db and run `searchapp check --repair`. Otherwise "
        "index the photos into a new library (--library NEWDIR)"
    )


class IntegrityChecks:
    engine: Engine
    url: str

    def integrity_problems(self) -> list[str]:
        """SQLite's full integrity check: [] when the catalog is sound. Other databases keep
        their own; they report nothing here."""
        if self.engine.dialect.name != "sqlite":
            return []
        with self.engine.connect() as conn:
            rows = [str(row[0]) for row in conn.exec_driver_sql("PRAGMA integrity_check")]
        return [] if rows == ["ok"] else rows

    def orphans(self) -> tuple[int, int]:
        """(regions whose photo is gone, labels whose region is gone): left by a write that a
        backend without cascades did not finish."""
        with self.engine.connect() as conn:
            lost_regions = conn.execute(
                select(func.count())
                .select_from(regions)
                .where(regions.c.image_id.not_in(select(images.c.id)))
            ).scalar_one()
            lost_labels = conn.execute(
                select(func.count())
                .select_from(labels)
                .where(labels.c.region_id.not_in(select(regions.c.id)))
            ).scalar_one()
        return int(lost_regions), int(lost_labels)

    def delete_orphans(self) -> None:
        with self.engine.begin() as conn:
            # regions first: their labels are then orphans too
            conn.execute(delete(regions).where(regions.c.image_id.not_in(select(images.c.id))))
            conn.execute(delete(labels).where(labels.c.region_id.not_in(select(regions.c.id))))

    def images_without_scene(self) -> list[KnownImage]:
        """Photos with no scene region, and videos with no frame: no search can find them."""
        scenes = select(regions.c.image_id).where(regions.c.kind.in_(("scene", "frame")))
        query = select(*known_columns()).where(images.c.id.not_in(scenes))
        with self.engine.connect() as conn:
            return [KnownImage(*row) for row in conn.execute(query)]

    def set_aside_photos(self) -> list[KnownImage]:
        query = select(*known_columns()).where(images.c.set_aside.is_(True))
        with self.engine.connect() as conn:
            return [KnownImage(*row) for row in conn.execute(query)]
