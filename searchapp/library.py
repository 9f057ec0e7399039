"""A library: a directory holding the catalog and the FAISS indexes, plus the encoder it uses.

Writers hold an exclusive lock on `write.lock`; a second writer is told the library is busy.
Readers take no lock: SQLite's WAL lets them read while a writer works. An index file the writer
has not saved since its last batches is caught up in memory from the catalog's change log (and
rebuilt from the catalog where the log cannot say).
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from searchapp.checkup import Checkup, examine, mend
from searchapp.dupes.find import DupeOptions, DupeReport, find_duplicates
from searchapp.dupes.moves import MoveOutcome, apply_moves, plan_moves, undo_moves
from searchapp.encoders.base import EncoderOptions, ImageEncoder
from searchapp.encoders.registry import AUTO, create_encoder, split_name
from searchapp.errors import (
    ImageLoadError,
    LibraryBusyError,
    SearchappError,
    UsageError,
)
from searchapp.ingest.engines.ray_engine import RayIndexRun, RayOptions, on_the_cpu
from searchapp.ingest.engines.ray_tasks import WorkerSpec
from searchapp.ingest.hashes import photo_hashes
from searchapp.ingest.load import load_image
from searchapp.ingest.pipeline import IndexCallbacks, IndexOptions, IndexRun, LazyModel
from searchapp.ingest.pipeline import IndexSummary as IndexSummary
from searchapp.ingest.quality import measure
from searchapp.ingest.regions import REGION_KINDS
from searchapp.library_encoders import LibraryEncoders
from searchapp.library_explore import LibraryExplore
from searchapp.library_photos import PhotoViews, roots_covering
from searchapp.library_tags import LibraryTags
from searchapp.query.filters import build_filters
from searchapp.query.search import Query, SearchResults, search
from searchapp.query.terms import terms_from
from searchapp.records import (
    CatalogBatch,
    EncoderIdentity,
    FileStat,
    KnownFailure,
    LibraryStats,
)
from searchapp.store.catalog import Catalog
from searchapp.store.dupe_reads import HashUpdate
from searchapp.vectors.faiss_index import IndexStore, commit_batch
from searchapp.vectors.layouts import index_files

if TYPE_CHECKING:
    pass

DEFAULT_LIBRARY = Path("indexes") / "default"
LIBRARY_ENV = "SEARCHAPP_LIBRARY"
HASH_DECODE_SIDE = 256  # a pHash needs 32 px; a reduced JPEG decode this large is cheap


def default_library_dir() -> Path:
    return Path(os.environ.get(LIBRARY_ENV) or DEFAULT_LIBRARY)


def catalog_url(directory: Path | str | None, db_url: str | None = None) -> str:
    """The catalog a library opens: --db, else catalog.db in the library folder."""
    folder = Path(directory) if directory else default_library_dir()
    return db_url or f"sqlite:///{(folder / 'catalog.db').absolute()}"


class WriteLock:
    def __init__(self, directory: Path):
        self.path = directory / "write.lock"
        self._handle: Any = None

    def acquire(self) -> None:
        handle = open(self.path, "a+")  # noqa: SIM115 - held open for the lock's lifetime
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            handle.close()
            raise LibraryBusyError(
                f"library {self.path.parent} is busy: {holder} is writing to it. Wait for it to "
                "finish (searching works meanwhile), or use another --library"
            ) from None
        with contextlib.suppress(OSError):  # who holds it is a courtesy; a full disk refuses it
            handle.seek(0)
            handle.truncate()
            handle.write(f"searchapp pid {os.getpid()}")
            handle.flush()
        self._handle = handle

    def release(self) -> None:
        if self._handle is not None:
            fcntl.flock(self._handle.fileno(), fcntl.LOCK_UN)
            self._handle.close()
            self._handle = None

    @property
    def held(self) -> bool:
        return self._handle is not None

    def holder(self) -> str | None:
        """Who holds the lock, where another process does ("searchapp pid N"); else None."""
        if self.held or not self.path.exists():
            return None
        with open(self.path) as handle:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                return handle.read().strip() or "another process"
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
        return None


class Library(LibraryEncoders, PhotoViews, LibraryExplore, LibraryTags):
    def __init__(
        self, directory: Path | str | None = None, db_url: str | None = None, *, create: bool = True
    ):
        self.directory = Path(directory) if directory else default_library_dir()
        if not create and db_url is None and not (self.directory / "catalog.db").exists():
            # a read must not leave an empty library behind a mistyped --library
            raise SearchappError(
                f"no library at {self.directory}: index photos into it first "
                f"(`searchapp index PATH --library {self.directory}`), or pass the --library "
                f"you indexed into (or set {LIBRARY_ENV})"
            )
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise SearchappError(
                f"cannot create the library folder {self.directory}: {exc.strerror}; "
                "pass --library DIR with a writable folder"
            ) from exc
        self.db_url = catalog_url(self.directory, db_url)
        self.lock: WriteLock = WriteLock(self.directory)
        self.catalog = Catalog(self.db_url)
        self._indexes: IndexStore | None = None
        self._encoder: ImageEncoder | None = None
        self._tile_encoder: ImageEncoder | None = None
        self._identity: EncoderIdentity | None = None

    # ---- lifecycle -------------------------------------------------------------------------

    def close(self) -> None:
        self.lock.release()
        self.catalog.close()

    def __enter__(self) -> Library:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextlib.contextmanager
    def writing(self) -> Iterator[None]:
        self.catalog.refuse_if_damaged()
        already = self.lock.held
        if not already:
            self.lock.acquire()
        try:
            yield
        finally:
            if not already:
                self.lock.release()

    def forget_loaded(self) -> None:
        """Another writer changed the library (an index run on a thread of a server): the next
        search loads the identity and the index files afresh."""
        self._indexes = None
        self._identity = None
        self.catalog.forget_layout()

    def indexes(self) -> IndexStore:
        if self._indexes is None:
            self._indexes = IndexStore(self.directory, self.catalog, self.require_identity().dim)
        return self._indexes

    def search(
        self,
        text: str | list[str] | None = None,
        *,
        image: str | Path | list[str | Path] | None = None,
        like: str | Path | list[str | Path] | None = None,
        minus: str | Path | list[str | Path] | None = None,
        weights: list[float] | None = None,
        k: int = 10,
        include_self: bool = False,
        kinds: tuple[str, ...] = REGION_KINDS,
        verify: bool = True,
        **filters: Any,
    ) -> SearchResults:
        """Search by words, example images, indexed photos, or a weighted mix of them.

        Filters: after, before (YYYY-MM-DD), folder, camera, min_width, min_pixels,
        formats ("jpeg,png"), min_score. Terms are weighted in the order text, image, like, minus.
        """

        query = Query(
            terms=terms_from(text=text, image=image, like=like, minus=minus, weights=weights),
            filters=build_filters(**filters),
            k=k,
            kinds=kinds,
            include_self=include_self,
            verify=verify,
        )
        return search(self, query)

    # ---- operations ------------------------------------------------------------------------

    def index(
        self,
        paths: list[str],
        *,
        encoder: str | None = None,
        encoder_options: EncoderOptions | None = None,
        options: IndexOptions | None = None,
        callbacks: IndexCallbacks | None = None,
        only: set[str] | None = None,
        tags: Path | None = None,
        engine: RayOptions | None = None,
    ) -> IndexSummary:
        """Index what changed under the paths; `tags` names a file of zero-shot tags for a
        CLIP library (library_tags.py); `engine` runs the photos' reading and embedding on Ray
        (ingest/engines/ray_engine.py), the local threads' work otherwise."""

        require_existing_paths(paths)
        encoder_options = encoder_options or EncoderOptions()
        with self.writing():
            recorded = self.encoder_identity
            if recorded and encoder not in (None, AUTO, recorded.name) and not self._holds_photos():
                # a first run that stored no photo (a bad flag, no readable file) chose nothing
                self._forget_encoder()
            recorded_file = self.catalog.get_setting("encoder.weights_file") or None
            if recorded and recorded_file and encoder_options.clip_weights is None:
                # the weights file this library was made with, as a search uses it
                encoder_options = dataclasses.replace(
                    encoder_options, clip_weights=Path(recorded_file)
                )
            name, _ = self.resolve_encoder_name(encoder, encoder_options)
            if tags is not None:
                self.use_tag_file(tags, name)
            # on Ray the cluster's devices are the workers'; this machine's models stay on its
            # CPU (it may have no GPU): they record the encoders, tag, and finish a straggler
            here = encoder_options if engine is None else on_the_cpu(encoder_options)
            port = LazyModel(lambda: self.encoder(name, here))
            tiles = LazyModel(lambda: self.tile_encoder(here))
            options = options or IndexOptions()
            callbacks = callbacks or IndexCallbacks()
            if engine is None:
                run = IndexRun(
                    self.catalog, self.indexes, port, options, callbacks, only=only, tiles=tiles
                )
            else:
                spec = WorkerSpec(name, encoder_options, None, options)
                run = RayIndexRun.for_library(
                    self.catalog, self.indexes, port, tiles, spec, callbacks, only, engine,
                    lambda: self.tile_encoder_name(), self.directory / "shards",
                )  # fmt: skip
            summary = run.run(paths)
            if not summary.interrupted:
                summary.tagged = self.tag_photos(here, callbacks.on_tag_prompts)
            return summary

    def reindex(
        self,
        encoder: str | None,
        *,
        encoder_options: EncoderOptions | None = None,
        options: IndexOptions | None = None,
        callbacks: IndexCallbacks | None = None,
    ) -> IndexSummary:
        """Re-embed every indexed photo with another encoder (or resume an interrupted switch)."""

        encoder_options = encoder_options or EncoderOptions()
        with self.writing():
            pending = self.catalog.get_setting("reindex.pending")
            loading = 0.0  # the summary reports model loading apart from the rate
            if encoder is not None:
                split_name(encoder)
                # Load the new model before a vector goes: without its weights (offline, a
                # wrong --clip-weights), the library must stay as it was, searchable.
                started = time.monotonic()
                replacement = create_encoder(encoder, encoder_options)
                loading = time.monotonic() - started
                paths = sorted(image.path for image in self.catalog.all_images())
                if pending:
                    paths = sorted(set(paths) | set(json.loads(pending)))
                self.catalog.set_setting("reindex.pending", json.dumps(paths))
                self.catalog.remove_all_vectors()
                self._forget_encoder()
                self._adopt(replacement, encoder_options)
            elif pending:
                paths = json.loads(pending)
            else:
                raise SearchappError("nothing to reindex; pass --encoder NAME to switch encoders")
            summary = self.index(
                roots_covering(paths),
                encoder=encoder,
                encoder_options=encoder_options,
                options=options,
                callbacks=callbacks,
                only=set(paths),
            )
            if not summary.interrupted:
                self.catalog.set_setting("reindex.pending", "")
            summary.seconds += loading
            summary.model_seconds += loading
            return summary

    def rebuild_index(self) -> int:
        with self.writing():
            self.indexes().rebuild_all(list(REGION_KINDS))
            return sum(self.catalog.region_count(kind) for kind in REGION_KINDS)

    def check(self, repair: bool = False, forget_deleted_copies: bool = False) -> Checkup:
        """Is the library consistent (checkup.py); with `repair`, mend what needs no encoder
        and look again, holding the write lock throughout so that no run changes what was
        found before it is mended."""

        def store() -> IndexStore | None:  # asked after the integrity check, not before
            return self.indexes() if self.encoder_identity is not None else None

        if not repair:
            return examine(self.catalog, store, self.directory, writer=self.lock.holder)
        with self.writing():
            found = examine(self.catalog, store, self.directory)
            try:
                mended = found.mended + mend(
                    self.catalog, store, self._commit, found, forget_deleted_copies
                )
            finally:
                self._save_indexes()
            again = examine(self.catalog, store, self.directory)
        again.mended = mended + again.mended
        return again

    def check_indexes(self) -> list[str]:
        """Open every index, repairing stale ones (saved when we may write); report repairs."""
        if self.encoder_identity is None:
            return []
        store = self.indexes()
        try:
            self.lock.acquire()
            persist = True
        except (LibraryBusyError, OSError):  # busy, or a read-only or full disk
            persist = False
        try:
            for kind in REGION_KINDS:
                try:
                    store.get(kind, persist=persist)
                except SearchappError as exc:  # disk full, say: a reader needs no file
                    store.get(kind, persist=False)
                    store.repairs.append(f"{kind}: searching from memory, not saved ({exc})")
        finally:
            if persist:
                self.lock.release()
        return list(dict.fromkeys(store.repairs))  # a kind retried from memory notes once

    def backfill_hashes(self, on_progress: Callable[[int, int], None] | None = None) -> int:
        """Compute the duplicate hashes that photos indexed by an older searchapp lack. Needs the
        write lock; a file that cannot be read now keeps NULLs (it is found by exact tiers only)."""

        missing = self.catalog.images_without_phash()
        if not missing:
            return 0
        with self.writing():
            updates: list[HashUpdate] = []
            for done, image in enumerate(missing, 1):
                try:
                    stat = FileStat(image.path, image.size, image.mtime_ns)
                    loaded = load_image(stat, min_side=HASH_DECODE_SIDE)
                except ImageLoadError:
                    continue
                phash, full_pixels = photo_hashes(loaded)
                colour = measure(loaded.image).colourfulness
                updates.append(HashUpdate(image.id, phash, full_pixels, colour))
                if len(updates) >= 256:
                    self.catalog.set_hashes(updates)
                    updates = []
                if on_progress:
                    on_progress(done, len(missing))
            self.catalog.set_hashes(updates)
        return len(missing)

    def dupes(
        self,
        options: DupeOptions | None = None,
        *,
        keep: set[str] | None = None,
        on_check: Callable[[int, int], None] | None = None,
    ) -> DupeReport:
        """Duplicate groups of the library (see searchapp.dupes.find for the tiers)."""

        identity = self.encoder_identity
        return find_duplicates(
            self.catalog,
            identity.dim if identity else None,
            options or DupeOptions(),
            keep_paths={os.path.abspath(path) for path in keep or set()},
            on_check=on_check,
        )

    def move_duplicates(
        self, paths: list[str], folder: Path, on_progress: Callable[[int, int], None] | None = None
    ) -> MoveOutcome:
        """Move these photos below `folder`, journalled; the catalog follows."""

        with self.writing():
            try:
                plan = plan_moves(paths, folder)
                return apply_moves(self.catalog, self._commit, plan, folder, on_progress)
            finally:
                self._save_indexes()

    def undo_moves(
        self, journal: Path, on_progress: Callable[[int, int], None] | None = None
    ) -> MoveOutcome:

        with self.writing():
            try:
                return undo_moves(self.catalog, self._commit, journal, on_progress)
            finally:
                self._save_indexes()

    def _commit(self, batch: CatalogBatch) -> None:
        """Write a batch outside an indexing run; the loaded indexes follow it."""
        commit_batch(self.catalog, self.indexes, batch, self.catalog.vector_generation())

    def _save_indexes(self) -> None:
        if self._indexes is not None:
            self._indexes.save_all(self.catalog.vector_generation())

    def failures(self) -> list[KnownFailure]:
        return self.catalog.all_failures()

    def stats(self) -> LibraryStats:
        n_images, n_aside, by_kind, n_failures, n_pending = self.catalog.counts()
        catalog_bytes = self.catalog.size_bytes()
        index_bytes = sum(
            p.stat().st_size if p.exists() else 0  # a save may remove one meanwhile
            for p in index_files(self.directory)
            if p.suffix in (".faiss", ".changes")  # not a save's or a build's temporary file
        )
        quality, low_quality = self.catalog.quality_summary()
        return LibraryStats(
            images=n_images,
            regions_by_kind=by_kind,
            vectors=sum(by_kind.values()),
            failures=n_failures,
            encoder=self.encoder_identity,
            bytes_on_disk=catalog_bytes + index_bytes,
            catalog_bytes=catalog_bytes,
            index_bytes=index_bytes,
            quality=quality,
            low_quality=low_quality,
            set_aside=n_aside,
            regions_pending=n_pending,
            tile_encoder=self.catalog.tile_identity(),
            videos=self.catalog.video_count(),
        )


def require_existing_paths(paths: list[str]) -> None:
    """Refuse a run none of whose paths exist (a typo, a drive not mounted); one missing path
    beside others is a line in the report instead."""
    missing = [path for path in paths if not os.path.exists(os.path.expanduser(path))]
    if missing and len(missing) == len(paths):
        more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
        named = ", ".join(missing[:3]) + more
        raise UsageError(f"nothing to index: {named}: no such file or folder")


def open_library(directory: Path | str | None = None, db_url: str | None = None) -> Library:
    return Library(directory, db_url)
