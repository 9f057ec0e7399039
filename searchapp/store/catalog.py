"""The catalog: the only module that speaks SQL.

It owns the engine, applies migrations on open, and exposes plain records. The catalog is the
source of truth; FAISS index files are caches rebuilt from the vectors kept here.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Iterator
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import (
    Engine,
    Integer,
    Text,
    cast,
    create_engine,
    delete,
    event,
    func,
    select,
    update,
)
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DatabaseError, OperationalError, ProgrammingError

from searchapp.errors import (
    SchemaTooNewError,
)
from searchapp.records import (
    CatalogBatch,
    EncoderIdentity,
    Filters,
    KnownFailure,
    KnownImage,
    PendingImage,
    VectorDelta,
)
from searchapp.store.dupe_reads import DupeReads
from searchapp.store.explore_rows import ExploreRows
from searchapp.store.integrity import (
    WRITES,
    IntegrityChecks,
    damage_marker,
    damaged,
    translate_error,
)
from searchapp.store.reads import SearchReads, filter_conditions
from searchapp.store.tables import (
    ROOTS_PER_QUERY,
    chunks,
    failures,
    images,
    known_columns,
    labels,
    regions,
    set_aside_images,
    settings,
    under,
)
from searchapp.store.vector_log import VectorLog
from searchapp.store.vector_rows import CODEC_SETTING, TILE_CODEC_SETTING, TILE_ENCODER_SETTING
from searchapp.store.writes import CatalogWrites


def _script_location() -> str:
    return str(resources.files("searchapp.migrations"))


def newest_revision() -> str:
    versions = resources.files("searchapp.migrations").joinpath("versions")
    names = [p.name for p in versions.iterdir() if p.name[:4].isdigit() and p.name.endswith(".py")]
    return max(names)[:4]


def _alembic_config(connection: Connection) -> Any:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", _script_location())
    cfg.attributes["connection"] = connection
    return cfg


def _upsert(conn: Connection) -> Any:
    """INSERT ... ON CONFLICT for the connection's database (SQLite and PostgreSQL both)."""
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as postgresql_insert

        return postgresql_insert(settings)
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return sqlite_insert(settings)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")  # readers never block on the writer
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


class Catalog(CatalogWrites, SearchReads, DupeReads, ExploreRows, IntegrityChecks, VectorLog):
    def __init__(self, url: str, *, migrate: bool = True):
        self.url = url
        self._codecs = {}
        self.engine: Engine = create_engine(url, future=True)
        if self.engine.dialect.name == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas)
        marker = damage_marker(url)
        self.damaged = marker is not None and marker.exists()
        if self.damaged:  # nothing may write to it, whatever the caller: one guard for all
            event.listen(self.engine, "before_cursor_execute", self._refuse_writes)
        try:
            self._check_and_migrate(migrate and not self.damaged)
        except DatabaseError as exc:
            self.engine.dispose()
            raise translate_error(exc, url) from exc

    def mark_sound(self) -> bool:
        """After an integrity check passed: remove the damage marker and allow writes again.
        Whether there was a marker."""
        marker = damage_marker(self.url)
        was = self.damaged or (marker is not None and marker.exists())
        if marker is not None:
            marker.unlink(missing_ok=True)
        if self.damaged:
            event.remove(self.engine, "before_cursor_execute", self._refuse_writes)
            self.damaged = False
            self._check_and_migrate(True)  # skipped while marked: an empty replacement has none
        return was

    def refuse_if_damaged(self) -> None:
        """Before a command that writes: a catalog marked damaged stops it at once."""
        if self.damaged:
            marker = damage_marker(self.url)
            detail = marker.read_text().strip() if marker and marker.exists() else "marked"
            raise damaged(self.url, f"it failed an integrity check: {detail}")

    def _refuse_writes(self, _conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        verb = statement.lstrip().split(None, 1)[0].upper() if statement.strip() else ""
        if verb in WRITES:
            self.refuse_if_damaged()

    # ---- schema ----------------------------------------------------------------------------

    def _check_and_migrate(self, migrate: bool) -> None:
        if self._at_newest_revision():
            return  # the common case, answered without importing Alembic (~100 ms)
        from alembic import command
        from alembic.runtime.migration import MigrationContext
        from alembic.script import ScriptDirectory

        with self.engine.connect() as conn:
            current = MigrationContext.configure(conn).get_current_revision()
            script = ScriptDirectory.from_config(_alembic_config(conn))
            head = script.get_current_head()
            known = {rev.revision for rev in script.walk_revisions()}
            if current is not None and current not in known:
                raise SchemaTooNewError(
                    f"the catalog {self.url} has schema revision {current}, newer than this "
                    f"searchapp knows (head {head}); upgrade searchapp "
                    "(pip install -U searchapp) to open it"
                )
            if current != head and migrate:
                command.upgrade(_alembic_config(conn), "head")
                conn.commit()

    def _at_newest_revision(self) -> bool:
        """Whether the catalog is at the newest migration. Revisions are named after their
        files' numeric prefixes (tests/unit/test_catalog.py holds every file to that)."""
        try:
            with self.engine.connect() as conn:
                current = conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar()
        except (OperationalError, ProgrammingError):  # SQLite's and PostgreSQL's words for it
            return False  # a new catalog: no version table yet
        return current is not None and current == newest_revision()

    def schema_revision(self) -> str | None:
        from alembic.runtime.migration import MigrationContext

        with self.engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()

    def close(self) -> None:
        self.engine.dispose()

    # ---- settings --------------------------------------------------------------------------

    def _get(self, conn: Connection, key: str) -> str | None:
        return conn.execute(select(settings.c.value).where(settings.c.key == key)).scalar()

    def _set(self, conn: Connection, key: str, value: str) -> None:
        # one statement, so that two writers setting a new key at once both succeed
        conn.execute(
            _upsert(conn)
            .values(key=key, value=value)
            .on_conflict_do_update(index_elements=[settings.c.key], set_={"value": value})
        )

    def _next_generation(self, conn: Connection) -> int:
        """Count the vector generation up by one in one statement: writers at once on
        PostgreSQL each get their own number (the row stays locked until they commit)."""
        bumped = cast(cast(settings.c.value, Integer) + 1, Text)
        statement = (
            _upsert(conn)
            .values(key="vectors.generation", value="1")
            .on_conflict_do_update(index_elements=[settings.c.key], set_={"value": bumped})
        )
        conn.execute(statement)  # no RETURNING: SQLite before 3.35 lacks it
        return int(self._get(conn, "vectors.generation") or 0)

    def get_setting(self, key: str) -> str | None:
        with self.engine.connect() as conn:
            return self._get(conn, key)

    def set_setting(self, key: str, value: str) -> None:
        try:
            with self.engine.begin() as conn:
                self._set(conn, key, value)
        except DatabaseError as exc:
            raise translate_error(exc, self.url) from exc

    def encoder_identity(self) -> EncoderIdentity | None:
        raw = self.get_setting("encoder")
        return EncoderIdentity(**json.loads(raw)) if raw else None

    def set_encoder_identity(self, identity: EncoderIdentity) -> None:
        self.set_setting("encoder", json.dumps(identity.__dict__, sort_keys=True))

    def vector_generation(self) -> int:
        return int(self.get_setting("vectors.generation") or 0)

    def index_record(self, kind: str) -> tuple[int, int] | None:
        """(generation, count) of the last index file saved for a region kind."""
        raw = self.get_setting(f"index.{kind}")
        if not raw:
            return None
        data = json.loads(raw)
        return int(data["generation"]), int(data["count"])

    def set_index_record(self, kind: str, generation: int, count: int) -> None:
        """Record the kind's file of `generation`; the change log's rows it holds go with it."""
        record = json.dumps({"generation": generation, "count": count})
        try:
            with self.engine.begin() as conn:
                self._set(conn, f"index.{kind}", record)
                self._prune_log(conn, kind, generation)
        except DatabaseError as exc:
            raise translate_error(exc, self.url) from exc

    # ---- reads for the diff ----------------------------------------------------------------

    def images_under(self, roots: list[str]) -> dict[str, KnownImage]:
        found: dict[str, KnownImage] = {}
        with self.engine.connect() as conn:
            for some in chunks(roots, ROOTS_PER_QUERY):
                query = select(*known_columns()).where(under(images.c.path, some))
                found.update((row.path, KnownImage(*row)) for row in conn.execute(query))
        return found

    def images_by_hash(self, hashes: Iterable[str]) -> dict[str, list[KnownImage]]:
        found: dict[str, list[KnownImage]] = {}
        wanted = sorted(set(hashes))
        with self.engine.connect() as conn:
            for chunk in chunks(wanted):
                query = select(*known_columns()).where(images.c.content_hash.in_(chunk))
                for row in conn.execute(query):
                    found.setdefault(row.content_hash, []).append(KnownImage(*row))
        return found

    def awaiting_regions(self, roots: list[str] | None = None) -> list[PendingImage]:
        """Photos in search (under `roots`, if given) whose region stage has not run, by id."""
        query = (
            select(
                images.c.id,
                images.c.path,
                images.c.size,
                images.c.mtime_ns,
                images.c.content_hash,
                images.c.regions_pending,
            )
            .where(images.c.regions_pending.is_not(None), images.c.set_aside.is_(False))
            .order_by(images.c.id)
        )
        found: dict[int, PendingImage] = {}
        with self.engine.connect() as conn:
            for some in [None] if roots is None else chunks(roots, ROOTS_PER_QUERY):
                within = query if some is None else query.where(under(images.c.path, some))
                for row in conn.execute(within):
                    kinds = tuple(row.regions_pending.split(","))
                    found[row.id] = PendingImage(*row[:5], kinds=kinds)
        return [found[image_id] for image_id in sorted(found)]

    def failures_under(self, roots: list[str]) -> dict[str, KnownFailure]:
        query = select(failures.c.path, failures.c.size, failures.c.mtime_ns, failures.c.reason)
        found: dict[str, KnownFailure] = {}
        with self.engine.connect() as conn:
            for some in chunks(roots, ROOTS_PER_QUERY):
                rows = conn.execute(query.where(under(failures.c.path, some)))
                found.update((row.path, KnownFailure(*row)) for row in rows)
        return found

    def all_failures(self) -> list[KnownFailure]:
        query = select(
            failures.c.path, failures.c.size, failures.c.mtime_ns, failures.c.reason
        ).order_by(failures.c.path)
        with self.engine.connect() as conn:
            return [KnownFailure(*row) for row in conn.execute(query)]

    def all_hashes(self) -> set[str]:
        with self.engine.connect() as conn:
            return set(conn.execute(select(images.c.content_hash)).scalars())

    def all_images(self) -> list[KnownImage]:
        """Every image in search (not those set aside by `dupes --move-to`)."""
        query = select(*known_columns()).where(images.c.set_aside.is_(False)).order_by(images.c.id)
        with self.engine.connect() as conn:
            return [KnownImage(*row) for row in conn.execute(query)]

    # ---- the one write path ----------------------------------------------------------------

    def apply(self, batch: CatalogBatch) -> tuple[int, VectorDelta]:
        """Write a batch in one transaction; return the new vector generation and the delta."""
        try:
            self._batch_settings = {}
            result = self._apply(batch)
            self._analyze_if_grown()
            if result[1].recoded:
                self._compact()
            return result
        except DatabaseError as exc:
            raise translate_error(exc, self.url) from exc
        finally:
            self._batch_settings = None
            self.forget_layout()  # a basis fitted by a rolled-back batch is not there

    def _compact(self) -> None:
        """Give back the pages that re-encoding the objects and tiles emptied (once, when the
        basis is fitted, on a library of a few dozen photos: a fraction of a second)."""
        if self.engine.dialect.name == "sqlite":
            try:
                with self.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
                    c.exec_driver_sql("VACUUM")
            except DatabaseError:  # no room for the copy, say: the pages stay, nothing is lost
                pass

    def _analyze_if_grown(self) -> None:
        """Refresh SQLite's planner statistics whenever the images table has doubled. Without
        them a folder filter walks every region instead of the path index (84 -> 2 ms, 100k)."""
        if self.engine.dialect.name != "sqlite":
            return
        with self.engine.connect() as conn:
            count = int(conn.execute(select(func.count()).select_from(images)).scalar_one())
            analyzed = int(self._get(conn, "catalog.analyzed_rows") or 0)
        if count >= 1000 and count >= 2 * analyzed:
            with self.engine.begin() as conn:
                conn.exec_driver_sql("ANALYZE")
                self._set(conn, "catalog.analyzed_rows", str(count))

    def _apply(self, batch: CatalogBatch) -> tuple[int, VectorDelta]:
        delta = VectorDelta()
        now = time.time()
        with self.engine.begin() as conn:
            doomed = list(batch.deleted_ids)
            doomed += [item.replaces_id for item in batch.new if item.replaces_id is not None]
            doomed += [item.replaces_id for item in batch.copies if item.replaces_id is not None]
            # the basis first: on PostgreSQL its lock is taken before this writer holds any
            # row a fitter would wait on (a delete first could deadlock with it)
            self._fit_codec_if_due(conn, batch, delta)
            self._delete_images(conn, doomed, delta)
            for move in batch.touched:
                conn.execute(
                    update(images)
                    .where(images.c.id == move.image_id)
                    .values(path=move.stat.path, size=move.stat.size, mtime_ns=move.stat.mtime_ns)
                )
            # a photo found again in the library (moved back by hand, say) is no longer aside
            for moves, aside in (
                (batch.moves, False),
                (batch.set_aside, True),
                (batch.restored, False),
            ):
                for move in moves:
                    self._place(conn, move, aside, delta)
            owned = []
            for item in batch.new:
                image_id = self._insert_image(conn, item.stat, item.content_hash, item.meta, now)
                owned += [(image_id, region) for region in item.regions]
            self._insert_regions(conn, owned, delta)
            for copy in batch.copies:
                self._clone_image(conn, copy.source_id, copy.stat, now, delta)
            for added in batch.regions_added:
                self._add_regions(conn, added, delta)
            for frames in batch.frames_added:
                self._add_frames(conn, frames, delta)
            self._write_failures(conn, batch, now)
            if delta.added_ids or delta.removed_ids or delta.recoded:
                generation = self._next_generation(conn)
                self._log_changes(conn, generation, delta)
            else:
                generation = int(self._get(conn, "vectors.generation") or 0)
        return generation, delta

    def remove_all_vectors(self) -> None:
        """Drop every image and region (used when switching encoders); failures are kept."""
        with self.engine.begin() as conn:
            conn.execute(delete(labels))
            conn.execute(delete(regions))
            conn.execute(delete(images))
            # a new encoder: new bases, and its own choice of tile encoder
            done = (CODEC_SETTING, TILE_CODEC_SETTING, TILE_ENCODER_SETTING)
            conn.execute(delete(settings).where(settings.c.key.in_(done)))
            self.forget_layout()
            self._restart_log(conn, self._next_generation(conn))

    # ---- vectors and hits ------------------------------------------------------------------

    def region_vectors(
        self, kind: str, dim: int, chunk_rows: int = 20000
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield (ids int64, vectors float32) for every region of a kind, in chunks: `dim`
        wide, or the codec's width for a kind stored coded (vector_dim)."""
        query = (
            select(regions.c.id, regions.c.vector)
            .where(regions.c.kind == kind, regions.c.image_id.not_in(set_aside_images()))
            .order_by(regions.c.id)
        )
        with self.engine.connect() as conn:
            result = conn.execution_options(stream_results=True).execute(query)
            while rows := result.fetchmany(chunk_rows):
                ids = np.fromiter((row.id for row in rows), dtype=np.int64, count=len(rows))
                blob = b"".join(row.vector for row in rows)
                yield ids, self.decode_vectors(kind, blob, len(rows), dim)

    def region_count(self, kind: str) -> int:
        with self.engine.connect() as conn:
            query = (
                select(func.count())
                .select_from(regions)
                .where(regions.c.kind == kind, regions.c.image_id.not_in(set_aside_images()))
            )
            return int(conn.execute(query).scalar_one())

    def counts(self) -> tuple[int, int, dict[str, int], int, int]:
        """(images in search, images set aside, regions in search by kind, failures, images
        waiting for the region stage)."""

        def count(query: Any) -> int:
            return int(conn.execute(query).scalar_one())

        with self.engine.connect() as conn:
            n_images = count(select(func.count()).select_from(images))
            n_aside = count(select(func.count()).select_from(set_aside_images().subquery()))
            by_kind = {
                row.kind: int(row.n)
                for row in conn.execute(
                    select(regions.c.kind, func.count().label("n"))
                    .where(regions.c.image_id.not_in(set_aside_images()))
                    .group_by(regions.c.kind)
                )
            }
            n_failures = count(select(func.count()).select_from(failures))
        return n_images - n_aside, n_aside, by_kind, n_failures, self.count_awaiting_regions()

    def count_awaiting_regions(self, filters: Filters | None = None) -> int:
        """Photos in search (that pass `filters`, if given) whose region stage has not run (a
        partial index finds them)."""
        query = select(func.count()).select_from(images)
        query = query.where(images.c.regions_pending.is_not(None), images.c.set_aside.is_(False))
        if filters is not None:
            query = query.where(*filter_conditions(filters))
        with self.engine.connect() as conn:
            return int(conn.execute(query).scalar_one())

    def size_bytes(self) -> int:
        """The catalog's size: SQLite's files with its journal, or a server's database."""
        if self.engine.dialect.name == "postgresql":
            with self.engine.connect() as conn:
                query = "SELECT pg_database_size(current_database())"
                return int(conn.exec_driver_sql(query).scalar_one())
        path = self.database_path()
        if path is None:
            return 0
        files = (Path(str(path) + suffix) for suffix in ("", "-wal", "-shm"))
        return sum(file.stat().st_size for file in files if file.exists())

    def database_path(self) -> Path | None:
        database = self.engine.url.database
        if self.engine.dialect.name == "sqlite" and database and database != ":memory:":
            return Path(database)
        return None
