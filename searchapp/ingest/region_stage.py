"""The region stage: objects and tiles for photos that are already searchable by their scene.

An indexing run embeds the scene of every new photo first, commits, and saves the indexes, so a
new library answers searches at scene-only speed. This stage then reads each photo waiting for
its regions (the catalog's regions_pending), decodes it at the size its regions need, and adds
their vectors, commit by commit. A killed run leaves the rest pending and the next run resumes
there; `index --regions-later` stops after the scenes and leaves the whole stage for later.

Photos of identical bytes wait as one: the first copy still on disk as indexed is decoded, and
its regions go to every copy. A photo changed or gone since its scene is passed over: the next
run's diff re-indexes or forgets it.
"""

from __future__ import annotations

import os
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from searchapp.errors import ImageLoadError
from searchapp.ingest.encoding import LazyModel, PreparedCut, add_objects, embed, prepare
from searchapp.ingest.load import LoadedImage, decode, read_bytes
from searchapp.ingest.regions import RegionOptions, cut_regions
from searchapp.ingest.run_options import IndexCallbacks, IndexOptions, IndexSummary
from searchapp.records import CatalogBatch, FileStat, PendingImage, RegionsAdded

if TYPE_CHECKING:
    from searchapp.store.catalog import Catalog

Group = list[PendingImage]  # photos of one content, waiting for the same kinds


@dataclass
class _Read:
    group: Group
    kinds: tuple[str, ...]
    cuts: list[PreparedCut] = field(default_factory=list)
    error: str | None = None
    path: str = ""
    awaiting_detection: LoadedImage | None = None


def groups_of(pending: list[PendingImage], kinds: tuple[str, ...]) -> list[Group]:
    """Pending photos by content and kinds, in catalog order; those asking for none of `kinds`
    (a run with other --regions) are left for a run that makes them."""
    grouped: dict[tuple[str, tuple[str, ...]], Group] = {}
    for item in pending:
        if set(item.kinds) & set(kinds):
            grouped.setdefault((item.content_hash, item.kinds), []).append(item)
    return list(grouped.values())


def _read(group: Group, kinds: tuple[str, ...], encoder: LazyModel, options: IndexOptions) -> _Read:
    for item in group:  # the first copy still as it was indexed
        try:
            st = os.stat(item.path)
        except OSError:
            continue
        if (st.st_size, st.st_mtime_ns) != (item.size, item.mtime_ns):
            continue
        stat = FileStat(item.path, item.size, item.mtime_ns)
        try:
            data = read_bytes(stat, options.limits)
            model = encoder.get()
            regions: RegionOptions = replace(options.regions, kinds=kinds)
            side = regions.decode_side(model.input_size)
            loaded = decode(data, stat, min_side=side, limits=options.limits)
            cuts = [prepare(cut, model) for cut in cut_regions(loaded, regions)]
        except ImageLoadError as exc:
            return _Read(group, kinds, error=exc.reason, path=item.path)
        except MemoryError:
            return _Read(group, kinds, error="out of memory while decoding; lower --workers")
        detect = "object" in kinds and regions.detector != "none"
        return _Read(group, kinds, cuts, None, item.path, loaded if detect else None)
    return _Read(group, kinds)  # every copy changed or went since its scene


class RegionStage:
    def __init__(
        self,
        catalog: Catalog,
        encoder: LazyModel,
        detector: LazyModel,
        options: IndexOptions,
        callbacks: IndexCallbacks,
        summary: IndexSummary,
    ):
        self.catalog = catalog
        self.encoder = encoder
        self.detector = detector
        self.options = options
        self.cb = callbacks
        self.summary = summary
        self.batch = CatalogBatch()
        self.to_encode: list[_Read] = []
        self.pending_cuts = 0
        self.last_commit = time.monotonic()

    def run(self, roots: list[str], write: Callable[[CatalogBatch, bool], None]) -> None:
        """Make the regions of every photo under `roots` that waits for them; `write` commits a
        batch (and saves the indexes when its flag is set or a save is due)."""
        live = [os.path.abspath(os.path.expanduser(r)) for r in roots]
        groups = groups_of(self.catalog.awaiting_regions(live), self.options.later_kinds)
        if not groups:
            return
        if self.cb.on_regions:
            self.cb.on_regions(sum(len(group) for group in groups))
        try:
            self._process(groups, write)
        except KeyboardInterrupt:
            self.to_encode = []  # the next run redoes them
            write(self.batch, True)
            raise
        self._encode_pending()
        write(self.batch, True)

    def _process(self, groups: list[Group], write: Callable[[CatalogBatch, bool], None]) -> None:
        options = self.options
        in_flight = max(4, options.workers * 4)
        queue = iter(groups)
        with ThreadPoolExecutor(options.workers, thread_name_prefix="regions") as pool:
            pending: deque[Future[_Read]] = deque()

            def fill() -> None:
                while len(pending) < in_flight:
                    group = next(queue, None)
                    if group is None:
                        return
                    kinds = tuple(k for k in group[0].kinds if k in options.later_kinds)
                    pending.append(pool.submit(_read, group, kinds, self.encoder, options))

            try:
                fill()
                while pending:
                    self._handle(pending.popleft().result())
                    fill()
                    if self.pending_cuts >= options.batch_size:
                        self._encode_pending()
                    photos = sum(len(added.image_ids) for added in self.batch.regions_added)
                    overdue = time.monotonic() - self.last_commit > options.commit_seconds
                    if photos >= options.commit_every or (photos and overdue):
                        write(self.batch, False)
                        self.batch = CatalogBatch()
                        self.last_commit = time.monotonic()
            except BaseException:
                for future in pending:
                    future.cancel()
                raise

    def _handle(self, result: _Read) -> None:
        if result.error is not None:
            # the scene stays searchable; the photo stops waiting for regions it cannot have
            if self.cb.on_failure:
                self.cb.on_failure(result.path, f"no objects or tiles: {result.error}")
            ids = [item.id for item in result.group]
            self.batch.regions_added.append(RegionsAdded(ids, [], None))
        elif result.path:
            self.to_encode.append(result)
            self.pending_cuts += max(1, len(result.cuts))
        if self.cb.on_advance:
            self.cb.on_advance(len(result.group))

    def _encode_pending(self) -> None:
        if not self.to_encode:
            return
        model = self.encoder.get()
        waiting = [(r.cuts, r.awaiting_detection) for r in self.to_encode if r.awaiting_detection]
        add_objects(self.detector, model, waiting)
        encoded = embed(model, [r.cuts for r in self.to_encode], self.options.batch_size)
        for result, regions in zip(self.to_encode, encoded, strict=True):
            left = [k for k in result.group[0].kinds if k not in result.kinds]
            ids = [item.id for item in result.group]
            self.batch.regions_added.append(RegionsAdded(ids, regions, ",".join(left) or None))
            self.summary.with_regions += len(ids)
            result.awaiting_detection = None
        self.to_encode = []
        self.pending_cuts = 0
