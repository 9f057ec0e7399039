"""Parquet shards of a Ray run: rows keep every field, whole files only, each path once."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from searchapp.errors import UsageError
from searchapp.ingest.engines.shards import ShardFolder, ShardRow
from searchapp.records import FileStat, ImageMeta, RegionData


def _write(folder: ShardFolder, rows: list[ShardRow]) -> Path:
    return folder.write_table(pa.Table.from_pylist([row.to_dict() for row in rows]))


def _row(path: str, seed: int) -> ShardRow:
    rng = np.random.default_rng(seed)
    vectors = rng.normal(size=(2, 8)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    meta = ImageMeta(
        640, 480, "JPEG", 1.5e9, "exif", camera_make="Canon", phash=b"\x00\xffab",
        gps_lat=52.37, gps_lon=4.89, regions_pending=None,
    )  # fmt: skip
    regions = [
        RegionData("scene", (0, 0, 640, 480), vectors[0], "tabby", 0.8, [("tabby", 0.8)], 3.5),
        RegionData("tile", (0, 0, 320, 320), vectors[1], None, None, [], None),
    ]
    return ShardRow(FileStat(path, 1234, 99), "ab" * 32, meta, regions)


def test_a_row_comes_back_as_written(tmp_path: Path) -> None:
    written = [
        _row("/photos/cat.jpg", 1),
        ShardRow(FileStat("/photos/bad.jpg", 5, 6), error="not an image"),
        ShardRow(FileStat("/photos/again.jpg", 7, 8), "cd" * 32),  # known bytes: hash only
        ShardRow(FileStat("/photos/caf\udce9.jpg", 9, 10), error="x"),  # a Latin-1 name
    ]
    folder = ShardFolder(tmp_path / "shards")
    _write(folder, written)
    back = list(folder.rows())
    assert [row.stat for row in back] == [row.stat for row in written]
    first = back[0]
    assert first.meta == written[0].meta and first.content_hash == written[0].content_hash
    for mine, theirs in zip(first.regions, written[0].regions, strict=True):
        assert (mine.kind, mine.bbox, mine.label, mine.labels, mine.norm) == (
            theirs.kind, theirs.bbox, theirs.label, theirs.labels, theirs.norm,
        )  # fmt: skip
        # float16 in the shard, as in the catalog
        np.testing.assert_allclose(mine.vector, theirs.vector, atol=1e-3)
    assert back[1].error == "not an image" and back[1].meta is None
    assert back[2].meta is None and back[2].regions == [] and back[2].error is None


def test_a_path_answered_twice_is_taken_once_and_partial_files_never(tmp_path: Path) -> None:
    folder = ShardFolder(tmp_path / "shards")
    shard = _write(folder, [_row("/photos/a.jpg", 1), _row("/photos/b.jpg", 2)])
    shutil.copy(shard, shard.with_name("retried.parquet"))  # a retried task's second answer
    (tmp_path / "shards" / "cut-short.partial").write_bytes(b"PAR1 killed mid-write")
    damaged = tmp_path / "shards" / "damaged.parquet"  # a disk error since it was written
    damaged.write_bytes(b"PAR1 not a parquet file")
    assert [row.stat.path for row in folder.rows()] == ["/photos/a.jpg", "/photos/b.jpg"]
    assert not damaged.exists()  # its photos go to the workers again
    folder.clear()
    assert not (tmp_path / "shards").exists()


def test_shards_of_other_options_are_not_resumed(tmp_path: Path) -> None:
    folder = ShardFolder(tmp_path / "shards")
    assert folder.keep_only_made_by("cnn, scene") == 0
    _write(folder, [_row("/photos/a.jpg", 1)])
    assert folder.keep_only_made_by("cnn, scene") == 0  # the same run again: resumed
    assert len(list(folder.rows())) == 1
    assert folder.keep_only_made_by("clip, scene+tile") == 1  # rows of another kind: gone
    assert list(folder.rows()) == []


def test_a_folder_of_someone_elses_files_is_refused_not_emptied(tmp_path: Path) -> None:
    theirs = tmp_path / "mine"
    theirs.mkdir()
    (theirs / "sales.parquet").write_bytes(b"PAR1 the user's own data")
    with pytest.raises(UsageError, match="empty folder"):
        ShardFolder(theirs).keep_only_made_by("cnn, scene")
    assert (theirs / "sales.parquet").exists()


def test_a_batch_of_known_bytes_loads_no_model() -> None:
    """Moved and copied photos: the actor answers their rows without loading its encoder (a
    model that cannot load here would fail the batch if it tried)."""
    import pickle

    from searchapp.encoders.base import EncoderOptions
    from searchapp.ingest.engines.ray_tasks import Embedder, WorkerSpec
    from searchapp.ingest.pipeline import ReadResult
    from searchapp.ingest.run_options import IndexOptions

    spec = WorkerSpec("cnn:no-such-model", EncoderOptions(), None, IndexOptions())
    known = ReadResult(FileStat("/photos/moved.jpg", 10, 1), None, "ab" * 16)
    batch = pa.table({"read": [pickle.dumps(known)]})
    rows = Embedder(spec)(batch).to_pylist()
    assert [(row["path"], row["content_hash"], row["meta"]) for row in rows] == [
        (b"/photos/moved.jpg", "ab" * 16, None)
    ]


class _Cluster:
    def __init__(self, resources: dict[str, float]):
        self.resources = resources

    def cluster_resources(self) -> dict[str, float]:
        return self.resources


@pytest.mark.parametrize("device", ["auto", "cuda"])
def test_actors_take_the_clusters_gpus_and_a_cpu_each_where_it_has_none(device: str) -> None:
    """The GPUs are the cluster's, not this machine's: a GPU asked for is checked there."""
    from dataclasses import replace

    from searchapp.encoders.base import EncoderOptions
    from searchapp.encoders.devices import DeviceUnavailableError
    from searchapp.ingest.engines.ray_engine import actor_pool, on_actors
    from searchapp.ingest.engines.ray_tasks import WorkerSpec
    from searchapp.ingest.run_options import IndexOptions

    spec = WorkerSpec("cnn:efficientnet-lite0", EncoderOptions(device=device), None, IndexOptions())
    assert actor_pool(_Cluster({"CPU": 16.0, "GPU": 2.0}), spec) == (16, 2, 2)
    assert on_actors(spec, 2) is spec  # each actor's torch takes the GPU Ray gave it
    if device == "cuda":
        with pytest.raises(DeviceUnavailableError, match="the Ray cluster has no GPU"):
            actor_pool(_Cluster({"CPU": 16.0}), spec)
        return
    assert actor_pool(_Cluster({"CPU": 16.0}), spec) == (16, 0, 16)
    # a CPU actor loads its models on the CPU, not on a GPU Ray did not count: the detector too
    pinned = on_actors(spec, 0)
    assert pinned.encoder_options.device == "cpu"
    assert pinned.options.regions.detector_options.device == "cpu"
    cpu = replace(spec, encoder_options=EncoderOptions(device="cpu"))
    assert actor_pool(_Cluster({"CPU": 16.0, "GPU": 2.0}), cpu) == (16, 0, 16)


def test_the_drivers_models_on_ray_stay_on_its_cpu_and_the_workers_get_the_device(
    tmp_path: Path,
) -> None:
    """`--engine ray --device cuda` from a head node without a GPU: the GPUs are the workers';
    the driver's own detector (for a photo an actor left pending) runs on its CPU."""
    from dataclasses import replace
    from types import SimpleNamespace

    from searchapp.encoders.base import EncoderOptions
    from searchapp.ingest.engines.ray_engine import RayIndexRun, RayOptions
    from searchapp.ingest.engines.ray_tasks import WorkerSpec
    from searchapp.ingest.pipeline import LazyModel
    from searchapp.ingest.run_options import IndexCallbacks, IndexOptions

    options = IndexOptions()
    cuda = replace(options.regions.detector_options, device="cuda")
    options = replace(options, regions=replace(options.regions, detector_options=cuda))
    loaded: list[str] = []
    port = LazyModel(lambda: loaded.append("encoder"))
    tiles = LazyModel(lambda: loaded.append("tiles"))
    spec = WorkerSpec("cnn:efficientnet-lite0", EncoderOptions(device="cuda"), None, options)
    catalog = SimpleNamespace(vector_generation=lambda: 0)  # all a run reads at its start
    run = RayIndexRun.for_library(
        catalog, lambda: None, port, tiles, spec, IndexCallbacks(), None, RayOptions(None, None),
        lambda: "cnn:tiles", tmp_path / "shards",
    )  # type: ignore[arg-type]  # fmt: skip
    assert run.options.regions.detector_options.device == "cpu"
    for_workers = run.make_spec()
    assert loaded == ["encoder", "tiles"]  # the library records its encoders first
    assert for_workers.encoder_options.device == "cuda"
    assert for_workers.options.regions.detector_options.device == "cuda"
    assert for_workers.tile_encoder == "cnn:tiles"


def test_a_workers_own_error_is_said_as_ours_not_as_rays_wrapper() -> None:
    """Ray Data passes a worker's exception on as text inside a UserCodeException (the text
    below is the shape of one, from an actor whose encoder name no registry knows)."""
    from searchapp.errors import UnknownNameError
    from searchapp.ingest.engines.ray_engine import worker_error

    trace = (
        "ray::MapWorker(MapBatches(read_batch)->MapBatches(BoundEmbedder)).submit() (pid=2320)\n"
        '  File "/work/main/searchapp/encoders/registry.py", line 40, in split_name\n'
        "    raise UnknownNameError(\n"
        "searchapp.errors.UnknownNameError: unknown encoder cnn:x; valid: cnn:efficientnet-lite0\n"
        "\nThe above exception was the direct cause of the following exception:\n"
        "ray.exceptions.UserCodeException: UDF failed to process a data block.\n"
    )
    found = worker_error(trace)
    assert found is not None
    assert str(found) == "unknown encoder cnn:x; valid: cnn:efficientnet-lite0"
    assert found.exit_code == UnknownNameError.exit_code
    device = "searchapp.encoders.devices.DeviceUnavailableError: --device cuda: no GPU here"
    assert worker_error(device) is not None and worker_error(device).exit_code == 2  # type: ignore[union-attr]
    assert worker_error("ValueError: not ours") is None
    assert worker_error("searchapp.nothing.Here: a module that is not there") is None
    assert worker_error("searchapp.errors.chunks: not an error class") is None
