"""The region stage: objects and tiles for photos that are already searchable by their scene.

An indexing run embeds the scene of every new photo first, commits, and saves the indexes, so a
new library answers searches at scene-only speed. This stage then reads each photo waiting for
its regions (the catalog's regions_pending), decodes it at the size its regions need, and adds
their vectors, commit by commit. A killed run leaves the rest pending and the next run resumes
there; `index --regions-later` stops after the scenes and leaves the whole stage for later.

Where the encoder can (the CNN), each photo gets one pass at the encoder's region side, and every
tile and object vector is pooled from its feature map (R-MAC); the CAM detector reads its maps
from the same pass, with the classes stored with the photo's scene. Otherwise, or with
`--region-vectors crops`, each region is cut out and encoded on its own.

Photos of identical bytes wait as one: the first copy still on disk as indexed is decoded, and
its regions go to every copy. A photo changed or gone since its scene is passed over: the next
run's diff re-indexes or forgets it.
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

import numpy as np

from searchapp.detect.base import Detection, clip_box
from searchapp.detect.cam import MIN_CLASS_PROB, TOP_CLASSES, detections_from_maps
from searchapp.errors import ImageLoadError
from searchapp.ingest.encoding import LazyModel, PreparedCut, add_objects, embed, prepare
from searchapp.ingest.load import LoadedImage, decode, read_bytes
from searchapp.ingest.readers import read_ahead
from searchapp.ingest.regions import RegionOptions, cut_regions, kept_labels
from searchapp.ingest.run_options import IndexCallbacks, IndexOptions, IndexSummary
from searchapp.records import (
    BBox,
    CatalogBatch,
    Failure,
    FileStat,
    PendingImage,
    RegionData,
    RegionsAdded,
)

if TYPE_CHECKING:
    from searchapp.store.catalog import Catalog

Group = list[PendingImage]  # photos of one content, waiting for the same kinds
OUT_OF_MEMORY = "out of memory while decoding for regions; lower --workers and run index again"


@dataclass
class _Read:
    group: Group
    kinds: tuple[str, ...]
    cuts: list[PreparedCut] = field(default_factory=list)  # crops mode: the model inputs
    error: str | None = None
    path: str = ""
    awaiting_detection: LoadedImage | None = None
    pass_input: np.ndarray | None = None  # pooled mode: the region pass's input
    tiles: list[BBox] = field(default_factory=list)  # pooled mode: boxes to pool
    size: tuple[int, int] = (0, 0)  # the photo as displayed


def pooling(model: Any, regions: RegionOptions) -> bool:
    """Whether this run pools its regions from one pass per photo (the encoder's torch model
    must be there: a query-time encoder runs an ONNX tower of fixed size)."""
    pools = hasattr(model, "feature_map") and getattr(model, "model", None) is not None
    return regions.vectors == "pooled" and pools


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
            pooled = pooling(model, regions)
            side = model.region_side if pooled else regions.decode_side(model.input_size)
            loaded = decode(data, stat, min_side=side, limits=options.limits)
            made = cut_regions(loaded, regions)
            cuts = [] if pooled else [prepare(cut, model) for cut in made]
            pass_input = model.region_input(loaded.image) if pooled else None
        except ImageLoadError as exc:
            return _Read(group, kinds, error=exc.reason, path=item.path)
        except MemoryError:  # the photo keeps waiting: a run with fewer --workers may make it
            return _Read(group, kinds, error=OUT_OF_MEMORY, path=item.path)
        detect = "object" in kinds and regions.detector != "none"
        tiles = [cut.bbox for cut in made] if pooled else []
        read = _Read(group, kinds, cuts, None, item.path, loaded if detect else None)
        read.pass_input, read.tiles = pass_input, tiles
        read.size = (loaded.meta.width, loaded.meta.height)
        return read
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
        jobs = ((g, tuple(k for k in g[0].kinds if k in options.later_kinds)) for g in groups)

        def read(group: Group, kinds: tuple[str, ...]) -> _Read:
            return _read(group, kinds, self.encoder, options)

        with (
            ThreadPoolExecutor(options.workers, thread_name_prefix="regions") as pool,
            closing(read_ahead(pool, read, jobs, deque(), in_flight)) as results,
        ):
            for result in results:
                self._handle(result)
                if self.pending_cuts >= options.batch_size:
                    self._encode_pending()
                photos = sum(len(added.image_ids) for added in self.batch.regions_added)
                overdue = time.monotonic() - self.last_commit > options.commit_seconds
                if photos >= options.commit_every or (photos and overdue):
                    write(self.batch, False)
                    self.batch = CatalogBatch()
                    self.last_commit = time.monotonic()

    def _handle(self, result: _Read) -> None:
        if result.error is not None:
            reason = f"scene indexed, no objects or tiles: {result.error}"
            if self.cb.on_failure:
                self.cb.on_failure(result.path, reason)
            self.summary.failed += 1
            if result.error != OUT_OF_MEMORY:
                # the scene stays searchable; the photo stops waiting for what it cannot have,
                # and `searchapp errors` says why until the file changes
                item = next(i for i in result.group if i.path == result.path)
                stat = FileStat(item.path, item.size, item.mtime_ns)
                self.batch.failures.append(Failure(stat, reason))
                ids = [item.id for item in result.group]
                left = [k for k in result.group[0].kinds if k not in result.kinds]
                self.batch.regions_added.append(RegionsAdded(ids, [], ",".join(left) or None))
        elif result.path:
            self.to_encode.append(result)
            # a pooled photo is one pass: encode it at once, while the readers decode the next
            pooled = result.pass_input is not None
            self.pending_cuts += self.options.batch_size if pooled else max(1, len(result.cuts))
        if self.cb.on_advance:
            self.cb.on_advance(len(result.group))

    def _encode_pending(self) -> None:
        if not self.to_encode:
            return
        model = self.encoder.get()
        crops = [r for r in self.to_encode if r.pass_input is None]
        waiting = [(r.cuts, r.awaiting_detection) for r in crops if r.awaiting_detection]
        add_objects(self.detector, model, waiting)
        encoded = dict(
            zip(
                (id(r) for r in crops),
                embed(model, [r.cuts for r in crops], self.options.batch_size),
                strict=True,
            )
        )
        pooled = [r for r in self.to_encode if r.pass_input is not None]
        encoded.update(zip((id(r) for r in pooled), self._pooled(model, pooled), strict=True))
        for result in self.to_encode:
            regions = encoded[id(result)]
            left = [k for k in result.group[0].kinds if k not in result.kinds]
            ids = [item.id for item in result.group]
            self.batch.regions_added.append(RegionsAdded(ids, regions, ",".join(left) or None))
            self.summary.with_regions += len(ids)
            result.awaiting_detection = result.pass_input = None
        self.to_encode = []
        self.pending_cuts = 0

    def _pooled(self, model: Any, reads: list[_Read]) -> list[list[RegionData]]:
        """One pass per photo; tiles and objects pooled from its map."""
        if not reads:
            return []
        scene_labels = self.catalog.image_labels(r.group[0].id for r in reads)
        out = []
        for read in reads:
            assert read.pass_input is not None
            meta = read.group[0]
            loaded = read.awaiting_detection
            fmap = model.feature_map(read.pass_input, read.size)
            objects = self._objects(model, fmap, loaded, scene_labels.get(meta.id, []))
            boxes = read.tiles + [det.bbox for det in objects]
            encoded = model.pool(fmap, boxes)
            regions = [
                RegionData("tile", box, vector, None, None, kept_labels("tile", labels))
                for box, vector, labels in zip(
                    read.tiles, encoded.vectors, encoded.labels, strict=False
                )
            ]
            start = len(read.tiles)
            for det, vector, labels in zip(
                objects, encoded.vectors[start:], encoded.labels[start:], strict=True
            ):
                regions.append(RegionData("object", det.bbox, vector, det.label, det.score, labels))
            out.append(regions)
        return out

    def _objects(
        self,
        model: Any,
        fmap: Any,
        loaded: LoadedImage | None,
        scene_labels: list[tuple[str, float]],
    ) -> list[Detection]:
        """Detections in displayed pixels: the CAM detector from the pass's own map, any other
        detector on the decoded photo."""
        if loaded is None:
            return []
        regions = self.options.regions
        if regions.detector == "cam":
            top = [(n, p) for n, p in scene_labels[:TOP_CLASSES] if p >= MIN_CLASS_PROB]
            classes = [model.class_names.index(name) for name, _ in top]
            maps = model.class_maps(fmap, classes)
            names = [name for name, _ in top]
            probs = [prob for _, prob in top]
            return detections_from_maps(names, probs, maps, fmap.size, regions.detector_options)
        detector = self.detector.get()
        if detector is None:
            return []
        found = detector.detect([loaded.image])[0]
        scale, size = loaded.scale, (loaded.meta.width, loaded.meta.height)
        return [
            Detection(clip_box(tuple(v * scale for v in det.bbox), size), det.label, det.score)
            for det in found
        ]
