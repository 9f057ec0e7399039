"""The region stage: objects and tiles for photos that are already searchable by their scene.

An indexing run embeds the scene of every new photo first, commits, and saves the indexes, so a
new library answers searches at scene-only speed. This stage then reads each photo waiting for
its regions (the catalog's regions_pending), decodes it at the size its regions need, and adds
their vectors, commit by commit. A killed run leaves the rest pending and the next run resumes
there; `index --regions-later` stops after the scenes and leaves the whole stage for later.

Each region is cut out and encoded on its own by default. With `--region-vectors pooled`, where
the encoder can (the CNN), each photo gets one pass at the encoder's region side instead, and
every tile and object vector is pooled from its feature map (R-MAC); the CAM detector reads its
maps from the same pass. Either way the readers do all they can for a photo, the region pass and
the CAM detector included, one photo a thread; the main thread encodes batches of crops and
commits. The CAM detector gets the classes stored with the photo's scene, read a chunk at a time
here, so that it runs no class pass of its own.

A CLIP library puts its tiles in the CNN's space (encoders/registry.py): `tiles` is then a
second model, the tiles' cuts (or their pooled pass) go to it and the objects' to the library's
encoder; elsewhere `tiles` is the library's encoder itself.

Photos of identical bytes wait as one: the first copy still on disk as indexed is decoded, and
its regions go to every copy. A photo changed or gone since its scene is passed over: the next
run's diff re-indexes or forgets it.
"""

from __future__ import annotations

import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from searchapp.detect.base import Detection
from searchapp.detect.cam import Labels, chosen_classes, class_indexes, detections_from_maps
from searchapp.encoders.devices import out_of_memory
from searchapp.errors import ImageLoadError
from searchapp.ingest.encoding import LazyModel, PreparedCut, add_objects, embed, prepare
from searchapp.ingest.load import LoadedImage, decode, read_bytes
from searchapp.ingest.readers import read_ahead
from searchapp.ingest.regions import (
    RegionCut,
    RegionOptions,
    cut_regions,
    displayed_box,
    kept_labels,
    object_regions,
    whole_tile,
)
from searchapp.ingest.run_options import IndexCallbacks, IndexOptions, IndexSummary
from searchapp.records import (
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
_ONE_DETECTOR = threading.Lock()
LABELS_CHUNK = 256  # groups whose scene classes are read from the catalog at once
OUT_OF_MEMORY = "out of memory while decoding for regions; lower --workers and run index again"
DEVICE_OUT_OF_MEMORY = (
    "the GPU ran out of memory making regions; lower --workers (fewer photos on it at once) or "
    "use --device cpu, and run index again"
)
WAITS = (OUT_OF_MEMORY, DEVICE_OUT_OF_MEMORY)  # failures the photo keeps waiting through


@dataclass
class _Job:
    group: Group
    kinds: tuple[str, ...]
    labels: Labels  # the scene's classes, for the CAM detector


@dataclass
class _Read:
    group: Group
    kinds: tuple[str, ...]
    cuts: list[PreparedCut] = field(default_factory=list)  # objects' inputs, for the encoder
    error: str | None = None
    path: str = ""
    awaiting_detection: LoadedImage | None = None  # for a detector that runs batched
    regions: list[RegionData] = field(default_factory=list)  # pooled in the reader, pass and all
    tile_cuts: list[PreparedCut] = field(default_factory=list)  # tiles' inputs, for `tiles`

    def waits(self) -> bool:
        """Whether anything is left for the main thread to encode or detect."""
        return bool(self.cuts or self.tile_cuts or self.awaiting_detection)


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


def _read(
    job: _Job, encoder: LazyModel, tiles: LazyModel, detector: LazyModel, options: IndexOptions
) -> _Read:
    group, kinds = job.group, job.kinds
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
            tile_model = tiles.get() if "tile" in kinds else model
            regions: RegionOptions = replace(options.regions, kinds=kinds)
            pooled = pooling(tile_model, regions)
            side = _side(model, tile_model, regions, pooled)
            loaded = decode(data, stat, min_side=side, limits=options.limits)
            made = cut_regions(loaded, regions)
            if tile_model is not model and "tile" in kinds:
                made.insert(0, whole_tile(loaded))
            detect = "object" in kinds and regions.detector != "none"
            cam = detect and regions.detector == "cam"
            read = _Read(group, kinds, path=item.path)
            if pooled and tile_model is model:  # the pass runs here, one photo a reader
                found = None if cam or not detect else _detected(detector, loaded)
                labels = job.labels if cam else None
                read.regions = pooled_regions(model, loaded, made, labels, found, regions)
                return read
            if pooled:  # tiles pooled in their own space; objects cut for the library's encoder
                read.regions = pooled_regions(tile_model, loaded, made, None, None, regions)
            else:
                read.tile_cuts = [prepare(cut, tile_model) for cut in made]
            if cam:  # here too, with the scene's classes where the library stores them
                boxes = detector.get().detect([loaded.image], [job.labels or None])[0]
                read.cuts = [prepare(cut, model) for cut in object_regions(loaded, boxes)]
            elif detect:
                read.awaiting_detection = loaded
        except ImageLoadError as exc:
            return _Read(group, kinds, error=exc.reason, path=item.path)
        except MemoryError:  # the photo keeps waiting: a run with fewer --workers may make it
            return _Read(group, kinds, error=OUT_OF_MEMORY, path=item.path)
        except Exception as exc:  # ONNX Runtime and PyTorch report a failed allocation so
            if not out_of_memory(exc):
                raise
            on_gpu = any(device in str(exc).lower() for device in ("cuda", "mps"))
            error = DEVICE_OUT_OF_MEMORY if on_gpu else OUT_OF_MEMORY
            return _Read(group, kinds, error=error, path=item.path)
        return read
    return _Read(group, kinds)  # every copy changed or went since its scene


def regions_of_one(
    item: PendingImage,
    labels: Labels,
    encoder: LazyModel,
    tiles: LazyModel,
    detector: LazyModel,
    options: IndexOptions,
) -> tuple[list[RegionData] | None, str | None]:
    """One photo's objects and tiles, read and encoded here, as the stage makes them for a
    group: for an engine that works a batch of photos at a time (engines/ray_engine.py).
    (regions, None); (None, reason) where it failed; (None, None) where the file changed."""
    kinds = tuple(kind for kind in item.kinds if kind in options.later_kinds)
    read = _read(_Job([item], kinds, labels), encoder, tiles, detector, options)
    if read.error is not None or not read.path:
        return None, read.error
    if not read.waits():
        return read.regions, None
    model = encoder.get()
    if read.awaiting_detection is not None:
        add_objects(detector, model, [(read.cuts, read.awaiting_detection)])
    found = embed(model, [read.cuts], options.batch_size)[0]
    tiled = embed(tiles.get(), [read.tile_cuts], options.batch_size)[0] if read.tile_cuts else []
    return [*read.regions, *tiled, *found], None


def _side(model: Any, tile_model: Any, regions: RegionOptions, pooled: bool) -> int:
    """The shorter side to decode a photo at for its regions: the pooled pass's, or what the
    cuts need at each encoder's input size."""
    if pooled and tile_model is model:
        return int(model.region_side)
    others = replace(regions, kinds=tuple(k for k in regions.kinds if k != "tile"))
    side = others.decode_side(model.input_size)
    tiled = replace(regions, kinds=("tile",)) if "tile" in regions.kinds else others
    wanted = tile_model.region_side if pooled else tiled.decode_side(tile_model.input_size)
    return max(side, int(wanted))


def _detected(detector: LazyModel, loaded: LoadedImage) -> list[Detection]:
    """Another detector's boxes on the decoded photo, in displayed pixels. One reader at a time:
    a torchvision detector runs on all of PyTorch's threads, as it did on the main thread."""
    found = detector.get()
    if found is None:
        return []
    with _ONE_DETECTOR:
        boxes = found.detect([loaded.image])[0]
    return [Detection(displayed_box(loaded, det.bbox), det.label, det.score) for det in boxes]


def pooled_regions(
    model: Any,
    loaded: LoadedImage,
    tiles: list[RegionCut],
    labels: Labels | None,
    found: list[Detection] | None,
    regions: RegionOptions,
) -> list[RegionData]:
    """One pass over the photo; every tile and object pooled from its map. Objects are the
    CAM detector's, from the same map, given `labels` (the scene's classes), or `found`, another
    detector's boxes in displayed pixels; neither: no objects."""
    size = (loaded.meta.width, loaded.meta.height)
    fmap = model.feature_map(model.region_input(loaded.image), size)
    objects: list[Detection] = found or []
    if labels is not None:
        chosen = chosen_classes(labels)
        classes = class_indexes(chosen, model.class_names, lambda k: model.class_logits(fmap, k))
        maps = model.class_maps(fmap, classes)
        names, probs = [name for name, _ in chosen], [prob for _, prob in chosen]
        objects = detections_from_maps(names, probs, maps, size, regions.detector_options)
    boxes = [cut.bbox for cut in tiles]
    encoded = model.pool(fmap, boxes + [det.bbox for det in objects])
    made = [
        RegionData("tile", box, vector, None, None, kept_labels("tile", named))
        for box, vector, named in zip(boxes, encoded.vectors, encoded.labels, strict=False)
    ]
    for det, vector, named in zip(
        objects, encoded.vectors[len(boxes) :], encoded.labels[len(boxes) :], strict=True
    ):
        made.append(RegionData("object", det.bbox, vector, det.label, det.score, named))
    return made


class RegionStage:
    def __init__(
        self,
        catalog: Catalog,
        encoder: LazyModel,
        tiles: LazyModel,
        detector: LazyModel,
        options: IndexOptions,
        callbacks: IndexCallbacks,
        summary: IndexSummary,
    ):
        self.catalog = catalog
        self.encoder = encoder
        self.tiles = tiles  # the tiles' encoder: the library's own, or a CLIP library's CNN
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

        def read(job: _Job) -> _Read:
            return _read(job, self.encoder, self.tiles, self.detector, options)

        with (
            ThreadPoolExecutor(options.workers, thread_name_prefix="regions") as pool,
            closing(read_ahead(pool, read, self._jobs(groups), deque(), in_flight)) as results,
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

    def _jobs(self, groups: list[Group]) -> Iterator[tuple[_Job]]:
        """Each group with the kinds this run makes and its scene's classes, read a chunk of
        groups at a time on this thread (the catalog's connections stay here)."""
        later = self.options.later_kinds
        cam = "object" in later and self.options.regions.detector == "cam"
        for start in range(0, len(groups), LABELS_CHUNK):
            chunk = groups[start : start + LABELS_CHUNK]
            labels = self.catalog.image_labels(group[0].id for group in chunk) if cam else {}
            for group in chunk:
                kinds = tuple(k for k in group[0].kinds if k in later)
                yield (_Job(group, kinds, labels.get(group[0].id, [])),)

    def _handle(self, result: _Read) -> None:
        if result.error is not None:
            reason = f"scene indexed, no objects or tiles: {result.error}"
            if self.cb.on_failure:
                self.cb.on_failure(result.path, reason)
            self.summary.failed += 1
            if result.error not in WAITS:
                # the scene stays searchable; the photo stops waiting for what it cannot have,
                # and `searchapp errors` says why until the file changes
                item = next(i for i in result.group if i.path == result.path)
                stat = FileStat(item.path, item.size, item.mtime_ns)
                self.batch.failures.append(Failure(stat, reason))
                ids = [item.id for item in result.group]
                left = [k for k in result.group[0].kinds if k not in result.kinds]
                self.batch.regions_added.append(RegionsAdded(ids, [], ",".join(left) or None))
        elif result.path and result.waits():
            self.to_encode.append(result)
            self.pending_cuts += max(1, len(result.cuts) + len(result.tile_cuts))
        elif result.path:  # pooled in the reader with nothing left to encode, or no regions
            self._add(result, result.regions)
        if self.cb.on_advance:
            self.cb.on_advance(len(result.group))

    def _encode_pending(self) -> None:
        """Encode the crops of the photos read so far, and add their regions to the batch."""
        if not self.to_encode:
            return
        model = self.encoder.get()
        waiting = [(r.cuts, r.awaiting_detection) for r in self.to_encode if r.awaiting_detection]
        add_objects(self.detector, model, waiting)
        size = self.options.batch_size
        objects = embed(model, [r.cuts for r in self.to_encode], size)
        tile_cuts = [r.tile_cuts for r in self.to_encode]
        # a run with no tiles to cut loads no second model
        tiles: list[list[RegionData]] = [[] for _ in tile_cuts]
        if any(tile_cuts):
            tiles = embed(self.tiles.get(), tile_cuts, size)
        for result, found, tiled in zip(self.to_encode, objects, tiles, strict=True):
            self._add(result, [*result.regions, *tiled, *found])
            result.awaiting_detection = None
        self.to_encode = []
        self.pending_cuts = 0

    def _add(self, result: _Read, regions: list[RegionData]) -> None:
        left = [k for k in result.group[0].kinds if k not in result.kinds]
        ids = [item.id for item in result.group]
        self.batch.regions_added.append(RegionsAdded(ids, regions, ",".join(left) or None))
        self.summary.with_regions += len(ids)
