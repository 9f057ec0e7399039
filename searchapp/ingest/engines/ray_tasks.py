"""What runs on Ray's workers: the local pipeline's own stages, a batch of photos at a time.

`read_batch` is a CPU task: read, hash, decode at the scene's side, measure, cut the scene's
model inputs (pipeline.read_photo). `Embedder` is the actor that holds the encoders and the
detector: it embeds the scenes, then makes each photo's objects and tiles as the region stage
does (region_stage.regions_of_one; its decode runs here, since the pooled pass and the CAM
detector need the model and the scene's classes). Its answer is a table of shard rows.
"""

from __future__ import annotations

import os
import pickle
from dataclasses import dataclass, replace
from typing import Any

from searchapp.detect.registry import create_detector
from searchapp.encoders.base import EncoderOptions
from searchapp.encoders.registry import create_encoder
from searchapp.ingest.encoding import LazyModel, embed
from searchapp.ingest.engines.shards import ShardRow
from searchapp.ingest.pipeline import ReadResult, read_photo
from searchapp.ingest.region_stage import regions_of_one
from searchapp.ingest.run_options import IndexOptions
from searchapp.records import FileStat, PendingImage, RegionData


@dataclass(frozen=True)
class WorkerSpec:
    """What a worker needs to make the same vectors as the library's own run."""

    encoder: str  # the library's encoder, by registry name
    encoder_options: EncoderOptions
    tile_encoder: str | None  # a CLIP library's tiles' CNN; None: the library's encoder
    options: IndexOptions

    def maker(self) -> str:
        """What decides a shard row's regions and vectors, as text: shards made otherwise
        (another encoder, other region options) are not resumed from."""
        made = (self.encoder, self.tile_encoder, self.encoder_options.clip_weights)
        regions, options = self.options.regions, self.options
        return repr(
            (made, regions, options.limits, options.skip_low_quality, options.regions_later)
        )


_READERS: dict[WorkerSpec, LazyModel] = {}  # a worker process serves many read tasks


def _reader_model(spec: WorkerSpec) -> LazyModel:
    """The encoder whose preprocessing the read tasks apply, on the CPU: one a process."""
    if spec not in _READERS:
        options = replace(spec.encoder_options, device="cpu")
        _READERS[spec] = LazyModel(lambda: create_encoder(spec.encoder, options))
    return _READERS[spec]


def read_batch(batch: Any, spec: WorkerSpec, known_hashes: set[str]) -> Any:
    """File entries (path, size, mtime_ns) to read results, pickled for the encoder's actor."""
    import pyarrow as pa

    model = _reader_model(spec)
    read = []
    for entry in batch.to_pylist():
        stat = FileStat(os.fsdecode(entry["path"]), entry["size"], entry["mtime_ns"])
        result = read_photo(stat, None, known_hashes, model, spec.options)
        read.append(pickle.dumps(result, protocol=pickle.HIGHEST_PROTOCOL))
    return pa.table({"read": pa.array(read, pa.binary())})


class Embedder:
    """The actor: encoders and detector loaded once, then a table of shard rows a batch."""

    def __init__(self, spec: WorkerSpec):
        options = spec.encoder_options
        self.options = spec.options
        self.encoder = LazyModel(lambda: create_encoder(spec.encoder, options))
        self.tiles = self.encoder
        if spec.tile_encoder is not None:
            tile_name = spec.tile_encoder
            self.tiles = LazyModel(lambda: create_encoder(tile_name, options))
        regions = spec.options.regions
        self.detector = LazyModel(
            lambda: create_detector(regions.detector, regions.detector_options)
        )

    def __call__(self, batch: Any) -> Any:
        import pyarrow as pa

        blobs = batch.column("read").to_pylist()
        results: list[ReadResult] = [pickle.loads(blob) for blob in blobs]
        fresh = [r for r in results if r.error is None and r.meta is not None]
        # a batch of known bytes only (moved, copied) needs no model: none is loaded for it
        scenes = (
            embed(self.encoder.get(), [r.cuts for r in fresh], self.options.batch_size)
            if fresh
            else []
        )
        made = {id(r): regions for r, regions in zip(fresh, scenes, strict=True)}
        rows = [self._row(r, made.get(id(r), [])).to_dict() for r in results]
        return pa.Table.from_pylist(rows)

    def _row(self, result: ReadResult, scene: list[RegionData]) -> ShardRow:
        meta = result.meta
        if result.error is not None or meta is None:
            return ShardRow(result.stat, result.content_hash, None, [], result.error)
        assert result.content_hash is not None
        if not meta.regions_pending or self.options.regions_later or not scene:
            return ShardRow(result.stat, result.content_hash, meta, scene)
        stat = result.stat
        kinds = tuple(meta.regions_pending.split(","))
        item = PendingImage(0, stat.path, stat.size, stat.mtime_ns, result.content_hash, kinds)
        labels = next((r.labels for r in scene if r.kind == "scene"), [])
        later, _ = regions_of_one(
            item, labels, self.encoder, self.tiles, self.detector, self.options
        )
        if later is None:  # failed or changed: left pending, for the library's region stage
            return ShardRow(stat, result.content_hash, meta, scene)
        done = replace(meta, regions_pending=None)
        return ShardRow(stat, result.content_hash, done, [*scene, *later])


def bound_embedder(spec: WorkerSpec) -> type[Embedder]:
    """Embedder with `spec` bound into the class Ray ships, not passed as constructor arguments
    (Ray warns that those cannot be recovered for an actor restarted after their owner lost
    them)."""

    class BoundEmbedder(Embedder):
        def __init__(self) -> None:
            super().__init__(spec)

    return BoundEmbedder
