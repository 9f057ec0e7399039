"""The indexing run: scan, diff against the catalog, read and hash, decode what is new, encode in
batches, commit in batches.

Only files whose size or mtime changed are read. A read file's hash decides its fate before any
decoding: same bytes as before (touched), bytes of a vanished file (moved: the row follows), bytes
of another indexed file (copied: vectors cloned), or new bytes (decoded and embedded). Each commit
is one catalog transaction; the FAISS index follows the catalog in memory and is saved now and
then, so a killed run leaves at worst a stale index file, which the next open rebuilds.
"""

from __future__ import annotations

import os
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from threadpoolctl import ThreadpoolController

from searchapp.detect.registry import create_detector
from searchapp.errors import ImageLoadError
from searchapp.ingest.encoding import LazyModel as LazyModel
from searchapp.ingest.encoding import PreparedCut, embed, prepare
from searchapp.ingest.hashes import photo_hashes
from searchapp.ingest.load import content_hash, decode, read_bytes
from searchapp.ingest.quality import measure
from searchapp.ingest.readers import read_ahead
from searchapp.ingest.region_stage import RegionStage
from searchapp.ingest.regions import scene_regions
from searchapp.ingest.run_options import IndexCallbacks as IndexCallbacks
from searchapp.ingest.run_options import IndexOptions as IndexOptions
from searchapp.ingest.run_options import IndexSummary as IndexSummary
from searchapp.ingest.scan import ScanProblem, scan
from searchapp.ingest.video import is_video
from searchapp.ingest.video_stage import VideoStage
from searchapp.interrupts import held_interrupts
from searchapp.records import (
    CatalogBatch,
    Copy,
    Failure,
    FileStat,
    ImageMeta,
    KnownImage,
    Move,
    NewImage,
    RegionData,
)
from searchapp.vectors.faiss_index import IndexStore, commit_batch

if TYPE_CHECKING:
    from searchapp.store.catalog import Catalog


@dataclass
class ReadResult:
    stat: FileStat
    previous: KnownImage | None
    content_hash: str | None = None
    meta: ImageMeta | None = None
    cuts: list[PreparedCut] = field(default_factory=list)
    error: str | None = None


def read_photo(
    stat: FileStat,
    previous: KnownImage | None,
    known_hashes: set[str],
    encoder: LazyModel,
    options: IndexOptions,
) -> ReadResult:
    """Read, hash, decode at the scene's side, measure, and cut the scene's model inputs; only
    the hash where the catalog holds these bytes already."""
    try:
        data = read_bytes(stat, options.limits)
        digest = content_hash(data)
        if digest in known_hashes:
            return ReadResult(stat, previous, digest)
        model = encoder.get()
        # the scene alone: objects and tiles follow in the region stage, once all is searchable
        side = model.input_size
        loaded = decode(data, stat, min_side=side, limits=options.limits, digest=digest)
        quality = measure(loaded.image)
        phash, full_pixels = photo_hashes(loaded)
        flag = quality.flag if options.skip_low_quality else None
        meta = replace(
            loaded.meta,
            blur=quality.blur,
            brightness=quality.brightness,
            contrast=quality.contrast,
            colourfulness=quality.colourfulness,
            quality_flag=flag,
            phash=phash,
            pixel_hash=full_pixels,
            regions_pending=",".join(options.later_kinds) or None,
        )
        if flag is not None:
            return ReadResult(stat, previous, digest, replace(meta, regions_pending=None), [])
        cuts = [prepare(cut, model) for cut in scene_regions(loaded, options.regions)]
        return ReadResult(stat, previous, digest, meta, cuts)
    except ImageLoadError as exc:
        return ReadResult(stat, previous, error=exc.reason)
    except MemoryError:
        return ReadResult(stat, previous, error="out of memory while decoding; lower --workers")


def numpy_blas_at_one_thread() -> Any:
    """A context that holds numpy's BLAS to one thread. Its few small products while indexing
    (pooling, codes) woke its threads, which then spun through the next photo's decode: 70-90 ms
    of a core a photo in the region stage. FAISS's own BLAS (IVF training) keeps its threads."""
    controller = ThreadpoolController()
    paths = [
        lib.filepath
        for lib in controller.lib_controllers
        if lib.user_api == "blas" and "numpy" in lib.filepath
    ]
    return controller.select(filepath=paths).limit(limits=1)


def _problem_stat(path: str) -> FileStat:
    """A stat for a scan problem's row in the failures table: a folder we cannot list, or a
    broken link (zeros if it went meanwhile)."""
    try:
        st = os.lstat(path)
    except OSError:
        return FileStat(path, 0, 0)
    return FileStat(path, st.st_size, st.st_mtime_ns)


class IndexRun:
    def __init__(
        self,
        catalog: Catalog,
        indexes: Callable[[], IndexStore],  # built lazily: its dim is known once the encoder is
        encoder: LazyModel,
        options: IndexOptions,
        callbacks: IndexCallbacks,
        only: set[str] | None = None,
        tiles: LazyModel | None = None,
    ):
        self.only = only  # restrict the run to these paths (used by reindex)
        self.catalog = catalog
        self.indexes = indexes
        self.encoder = encoder
        self.tiles = tiles or encoder  # the tiles' encoder, where it is not the library's
        regions = options.regions
        self.detector = LazyModel(
            lambda: create_detector(regions.detector, regions.detector_options)
        )
        self.options = options
        self.cb = callbacks
        self.summary = IndexSummary()
        self.batch = CatalogBatch()
        self.batch_images = 0
        self.last_commit = time.monotonic()
        self.last_save = time.monotonic()
        self.claimed: set[int] = set()  # image ids already taken by a move
        self.doomed: set[int] = set()  # image ids the uncommitted batch deletes
        self.to_encode: list[ReadResult] = []
        self.pending_cuts = 0  # model inputs waiting in to_encode
        self.generation = catalog.vector_generation()

    # ---- plan ------------------------------------------------------------------------------

    def _plan(
        self, roots: list[str]
    ) -> tuple[list[tuple[FileStat, KnownImage | None]], dict[str, KnownImage]]:
        problems: list[ScanProblem] = []
        entries = list(scan(roots, problems.append))
        if self.only is not None:
            entries = [entry for entry in entries if entry.stat.path in self.only]
        # a folder we could not read keeps its rows; a broken link is no folder
        unreachable = [p.path for p in problems if not os.path.islink(p.path)]
        for problem in problems:
            if os.path.lexists(problem.path):  # kept for `searchapp errors` until mended
                self.record_failure(_problem_stat(problem.path), problem.reason, None)
            else:  # a mistyped folder argument: said now, not kept
                self._fail_note(problem.path, problem.reason)
        live_roots = self._live(roots)
        known = self.catalog.images_under(live_roots) if live_roots else {}
        known_failures = self.catalog.failures_under(live_roots) if live_roots else {}
        seen: set[str] = set()
        work: list[tuple[FileStat, KnownImage | None]] = []
        for entry in entries:
            stat = entry.stat
            seen.add(stat.path)
            previous = known.get(stat.path)
            if previous and previous.same_file(stat) and previous.frames_until is None:
                self.summary.unchanged += 1
                continue  # a video a killed run left half-sampled goes on below
            failure = known_failures.get(stat.path)
            if failure and (failure.size, failure.mtime_ns) == (stat.size, stat.mtime_ns):
                self.summary.failed += 1  # still failing; listed by `searchapp errors`
                continue
            if entry.unsupported:
                self.record_failure(stat, entry.unsupported, previous)
                continue
            work.append((stat, previous))

        def shielded(path: str) -> bool:  # under a folder we could not list: keep its rows
            return any(path == u or path.startswith(u.rstrip("/") + "/") for u in unreachable)

        missing = {
            path: image for path, image in known.items() if path not in seen and not shielded(path)
        }
        self.batch.cleared_failures += [
            path for path in known_failures if path not in seen and not shielded(path)
        ]
        if self.cb.on_plan:
            self.cb.on_plan(len(entries), len(work))
        return work, missing

    @staticmethod
    def _live(roots: list[str]) -> list[str]:
        return [
            os.path.abspath(os.path.expanduser(r))
            for r in roots
            if os.path.exists(os.path.expanduser(r))
        ]

    # ---- outcomes --------------------------------------------------------------------------

    def _fail_note(self, path: str, reason: str) -> None:
        if self.cb.on_failure:
            self.cb.on_failure(path, reason)

    def note(self, path: str, what: str) -> None:
        """A line about a file that was indexed all the same (a video's variable frame rate)."""
        if self.cb.on_note:
            self.cb.on_note(path, what)

    def commit_now(self) -> None:
        self._commit()

    def record_failure(self, stat: FileStat, reason: str, previous: KnownImage | None) -> None:
        self.summary.failed += 1
        self._fail_note(stat.path, reason)
        if previous is not None:  # the file changed into something unreadable: old vectors go
            self._doom(previous.id)
        if "vanished" not in reason:
            self.batch.failures.append(Failure(stat, reason))
        self.batch_images += 1

    def _doom(self, image_id: int) -> None:
        self.batch.deleted_ids.append(image_id)
        self.doomed.add(image_id)

    def resolve_known(
        self,
        stat: FileStat,
        previous: KnownImage | None,
        digest: str,
        missing: dict[str, KnownImage],
    ) -> bool:
        """Handle a file whose bytes the catalog already holds. False: it must be decoded."""
        if previous is not None and previous.content_hash == digest:
            self.batch.touched.append(Move(previous.id, stat))
            self.summary.unchanged += 1
            return True
        candidates = self.catalog.images_by_hash([digest]).get(digest, [])
        for candidate in candidates:
            if candidate.path in missing and candidate.id not in self.claimed:
                self.claimed.add(candidate.id)
                if previous is not None:
                    self._doom(previous.id)
                self.batch.moves.append(Move(candidate.id, stat))
                self.summary.moved += 1
                return True
        for candidate in candidates:
            usable = candidate.id not in self.doomed and candidate.id not in self.claimed
            if usable and (previous is None or candidate.id != previous.id):
                replaces = previous.id if previous is not None else None
                if replaces is not None:
                    self.doomed.add(replaces)
                self.batch.copies.append(Copy(candidate.id, stat, replaces))
                self.summary.reused += 1
                self._count_new(previous)
                return True
        return False

    def _count_new(self, previous: KnownImage | None) -> None:
        if previous is None:
            self.summary.new += 1
        else:
            self.summary.changed += 1

    def _encode_pending(self) -> None:
        if not self.to_encode:
            return
        model = self.encoder.get()
        encoded = embed(model, [result.cuts for result in self.to_encode], self.options.batch_size)
        for result, regions in zip(self.to_encode, encoded, strict=True):
            assert result.content_hash is not None and result.meta is not None
            self.add_embedded(
                result.stat, result.content_hash, result.meta, regions, result.previous
            )
        self.to_encode = []
        self.pending_cuts = 0

    def add_embedded(
        self,
        stat: FileStat,
        digest: str,
        meta: ImageMeta,
        regions: list[RegionData],
        previous: KnownImage | None,
    ) -> None:
        """A photo read and embedded, here or by an engine's workers, into the batch."""
        replaces = previous.id if previous is not None else None
        if replaces is not None:
            self.doomed.add(replaces)
        self.batch.new.append(NewImage(stat, digest, meta, regions, replaces))
        self._count_new(previous)
        if regions:
            self.summary.embedded += 1
        else:  # flagged by --skip-low-quality: listed, never encoded
            self.summary.low_quality += 1
        self.batch_images += 1

    def _commit(self, force_save: bool = False) -> None:
        self._encode_pending()
        with held_interrupts():  # the catalog and the indexes move as one
            self.write(self.batch, force_save)
            self.batch = CatalogBatch()
            self.batch_images = 0
            self.doomed.clear()

    def write(self, batch: CatalogBatch, force_save: bool = False) -> None:
        """Commit a batch (either stage's), and save the indexes when asked or due."""
        with held_interrupts():
            if not batch.is_empty():
                self.generation = commit_batch(self.catalog, self.indexes, batch, self.generation)
            self.last_commit = time.monotonic()
            due = time.monotonic() - self.last_save > self.options.index_save_seconds
            # a library that has never stored a vector has no encoder, hence no index to save
            if (force_save or due) and self.catalog.encoder_identity() is not None:
                self.indexes().save_all(self.generation)
                self.last_save = time.monotonic()

    def _maybe_commit(self) -> None:
        pending = self.batch_images + len(self.to_encode)
        # Encode once a batch of model inputs is waiting: with tiles that is every photo or two,
        # which keeps memory flat and the encoder busy while the readers decode.
        if self.pending_cuts >= self.options.batch_size:
            self._encode_pending()
        overdue = time.monotonic() - self.last_commit > self.options.commit_seconds
        if pending >= self.options.commit_every or (pending and overdue):
            self._commit()

    # ---- the run ---------------------------------------------------------------------------

    def run(self, roots: list[str]) -> IndexSummary:
        with numpy_blas_at_one_thread():
            return self._run(roots)

    def _run(self, roots: list[str]) -> IndexSummary:
        started = time.monotonic()
        try:
            work, missing = self._plan(roots)
            known_hashes = self.catalog.all_hashes() if work else set()
            self._process(work, missing, known_hashes)
            for image in missing.values():
                if image.id not in self.claimed:
                    self._doom(image.id)
                    self.summary.deleted += 1
            self._commit(force_save=True)  # every new photo is searchable by its scene now
            self.summary.scene_seconds = time.monotonic() - started
            self.summary.scene_model_seconds = self.encoder.seconds
            if self.options.later_kinds and not self.options.regions_later:
                stage = RegionStage(
                    self.catalog,
                    self.encoder,
                    self.tiles,
                    self.detector,
                    self.options,
                    self.cb,
                    self.summary,
                )
                stage.run(roots, self.write)
        except KeyboardInterrupt:
            self.summary.interrupted = True
            self.to_encode = []  # decoded but not encoded: the next run redoes them
            self._commit(force_save=True)
        finally:
            self.summary.seconds = time.monotonic() - started
            tiles = self.tiles.seconds if self.tiles is not self.encoder else 0.0
            self.summary.model_seconds = self.encoder.seconds + self.detector.seconds + tiles
            if not self.summary.scene_seconds:  # interrupted before the scenes were done
                self.summary.scene_seconds = self.summary.seconds
                self.summary.scene_model_seconds = self.encoder.seconds
        live = self._live(roots)
        if self.options.later_kinds and live:
            self.summary.regions_pending = len(self.catalog.awaiting_regions(live))
        return self.summary

    def _process(
        self,
        work: list[tuple[FileStat, KnownImage | None]],
        missing: dict[str, KnownImage],
        known_hashes: set[str],
    ) -> None:
        videos = [item for item in work if is_video(item[0].path)]
        work = [item for item in work if not is_video(item[0].path)]
        if work:
            self._photos(work, missing, known_hashes)
        if videos:
            self._commit()  # the photos' batch first: the videos write theirs one by one
            stage = VideoStage(self, known_hashes, missing)
            stage.run_all(videos, lambda: self.cb.on_advance(1) if self.cb.on_advance else None)

    def _photos(
        self,
        work: list[tuple[FileStat, KnownImage | None]],
        missing: dict[str, KnownImage],
        known_hashes: set[str],
    ) -> None:
        in_flight = max(4, self.options.workers * 4)
        queue = ((stat, previous, known_hashes) for stat, previous in work)
        retry: deque[tuple[Any, ...]] = deque()

        def read(stat: FileStat, previous: KnownImage | None, hashes: set[str]) -> ReadResult:
            return read_photo(stat, previous, hashes, self.encoder, self.options)

        with (
            ThreadPoolExecutor(self.options.workers, thread_name_prefix="decode") as pool,
            closing(read_ahead(pool, read, queue, retry, in_flight)) as results,
        ):
            for result in results:
                self._handle(result, missing, retry)
                self._maybe_commit()

    def _handle(
        self,
        result: ReadResult,
        missing: dict[str, KnownImage],
        retry: deque[tuple[Any, ...]],
    ) -> None:
        if result.error is not None:
            self.record_failure(result.stat, result.error, result.previous)
        elif result.meta is None:
            assert result.content_hash is not None
            if not self.resolve_known(result.stat, result.previous, result.content_hash, missing):
                retry.append((result.stat, result.previous, set()))  # decode after all
                return
            self.batch_images += 1
        else:
            self.to_encode.append(result)
            self.pending_cuts += max(1, len(result.cuts))
        if self.cb.on_advance:
            self.cb.on_advance(1)
