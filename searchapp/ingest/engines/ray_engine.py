"""Indexing on Ray Data: the local run's plan and commits, with the photos read, decoded and
embedded by a Ray cluster (this machine's cores by default).

The driver plans as a local run does (pipeline.IndexRun), then streams the photos to read
through Ray: CPU tasks read them (ray_tasks.read_batch) and an actor pool holds the encoders
(ray_tasks.Embedder; one actor per GPU where the cluster has GPUs, else per CPU). Each batch
that comes back is written as a parquet shard (shards.py) and then committed through the same
path as every local batch, so the catalog and the indexes cannot tell the engines apart. A run
killed before its end leaves its shards; the next one takes what they hold and sends Ray only
the rest. The shards go once the run has committed them all. Scheduling, retries and placement
are Ray's: a retried task's answer is taken once, by path.
"""

from __future__ import annotations

import importlib
import logging
import math
import os
import re
import signal
import urllib.parse
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from searchapp.encoders.base import EncoderOptions
from searchapp.encoders.devices import DeviceUnavailableError
from searchapp.encoders.torch_stack import first_line
from searchapp.errors import SearchappError, UsageError
from searchapp.ingest.engines.ray_tasks import WorkerSpec, bound_embedder, read_batch
from searchapp.ingest.engines.shards import ShardFolder, ShardRow
from searchapp.ingest.pipeline import IndexRun, LazyModel
from searchapp.ingest.regions import RegionOptions
from searchapp.ingest.run_options import IndexCallbacks, IndexSummary
from searchapp.records import FileStat, KnownImage

if TYPE_CHECKING:
    from searchapp.store.catalog import Catalog

# the last line of a worker's traceback that names one of our errors: module, class, message
WORKER_ERROR = re.compile(r"^(searchapp(?:\.\w+)*)\.(\w+): (.+)$")
BATCH_PHOTOS = 32  # photos a task, an actor call and a shard, at most
KNOWN_HASHES_SHIPPED = 1_000_000  # more than this and the driver alone sorts out known bytes
RAY_MISSING = (
    "`--engine ray` needs Ray Data: pip install 'searchapp[ray]' (or pip install 'ray[data]')"
)


@dataclass(frozen=True)
class RayOptions:
    address: str | None = None  # None: a new Ray of this machine's cores; "auto", HOST:PORT
    shards: Path | None = None  # default: the library's shards/ (the driver alone writes them)

    def __post_init__(self) -> None:
        # Ray Data's executor runs in the driver, which Ray Client keeps off the cluster: it
        # fails deep in Ray ('Worker' object has no attribute 'core_worker'); said here first.
        # `auto` is RAY_ADDRESS where that is set, as ray.init reads it
        given = os.environ.get("RAY_ADDRESS") if self.address == "auto" else self.address
        if given and "://" in given:
            named = "" if given == self.address else f" (RAY_ADDRESS={given})"
            host = urllib.parse.urlsplit(given).hostname or "HEAD"
            raise UsageError(
                f"--address {self.address}{named}: Ray Data does not run over Ray Client "
                "(ray://), so a run cannot be driven from off the cluster. Run the command on "
                "one of its nodes with --address auto, or submit it there as a job: ray job "
                f"submit --address http://{_bracketed(host)}:8265 -- searchapp index --engine "
                "ray --address auto PATHS --library DIR (the photos and the library at the same "
                "paths there; 8265 is the dashboard's port)"
            )


def _bracketed(host: str) -> str:
    return f"[{host}]" if ":" in host else host  # an IPv6 literal in a URL


def _connect_hint(exc: Exception, address: str | None) -> str:
    """What a token-authenticated cluster needs, where that may be why Ray could not connect:
    Ray enables a cluster's token by itself only for the cluster it finds unaided."""
    import ray.exceptions

    where = "RAY_AUTH_TOKEN or ~/.ray/auth_token"
    if isinstance(exc, ray.exceptions.AuthenticationError):
        return f" (the cluster's token goes in {where})"
    token_mode = os.environ.get("RAY_AUTH_MODE", "").lower() == "token"
    if address and not token_mode and str(exc).startswith("Failed to connect to Ray cluster"):
        return f" (if the cluster uses token authentication: RAY_AUTH_MODE=token, and {where})"
    return ""


@contextmanager
def ray_session(address: str | None, cpus: int) -> Iterator[Any]:
    """Ray, started here (and stopped after) unless this process already holds a session."""
    try:
        import ray
        import ray.data
        import ray.exceptions
    except ImportError as exc:
        raise SearchappError(RAY_MISSING) from exc
    started = not ray.is_initialized()
    # ray.init makes SIGTERM exit at once; the CLI's own handler stops a run as Ctrl-C does
    on_sigterm = signal.getsignal(signal.SIGTERM)
    if started:
        try:
            ray.init(
                # "local": a Ray of its own, never one that RAY_ADDRESS or a running cluster
                # would otherwise pick
                address=address or "local",
                num_cpus=cpus if address is None else None,
                include_dashboard=False,
                log_to_driver=False,
                logging_level=logging.ERROR,
            )
        except (ConnectionError, ValueError, RuntimeError, ray.exceptions.RayError) as exc:
            said = f"{address or 'this machine'}: {first_line(exc)}{_connect_hint(exc, address)}"
            raise SearchappError(f"Ray could not start on {said}") from exc
        finally:
            signal.signal(signal.SIGTERM, on_sigterm)
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False  # the CLI draws its own bar, from the rows taken
    logging.getLogger("ray.data").setLevel(logging.ERROR)
    try:
        yield ray
    finally:
        if started:
            ray.shutdown()
            signal.signal(signal.SIGTERM, on_sigterm)


def actor_pool(ray: Any, spec: WorkerSpec) -> tuple[int, int, int]:
    """(the cluster's CPUs, the GPUs the encoders use, actors): one actor a GPU, else a CPU."""
    resources = ray.cluster_resources()
    cpus = int(resources.get("CPU", 1))
    asked = spec.encoder_options.device
    gpus = int(resources.get("GPU", 0)) if asked != "cpu" else 0
    if asked in ("cuda", "mps") and not gpus:  # this machine was not asked: it may have none
        raise DeviceUnavailableError(
            f"--device {asked}: the Ray cluster has no GPU among its resources (`ray status` "
            "lists them; a node's GPUs join with `ray start --num-gpus N`); use --device auto "
            "or cpu"
        )
    return cpus, gpus, gpus or max(1, cpus)


def _count(number: int, thing: str) -> str:
    return f"{number} {thing}" if number == 1 else f"{number} {thing}s"


def worker_error(trace: str) -> SearchappError | None:
    """Our own error that a worker raised (weights not on that node, a device it lacks), from
    the traceback text Ray passes on: Ray Data wraps it in a UserCodeException and keeps only
    the text. None where the failure is not one of ours."""
    found = None
    for line in trace.splitlines():
        match = WORKER_ERROR.match(line.strip())
        if match:
            found = match
    if found is None:
        return None
    module, name, message = found.groups()
    try:
        kind = getattr(importlib.import_module(module), name, None)
    except ImportError:
        return None
    if not (isinstance(kind, type) and issubclass(kind, SearchappError)):
        return None
    error = SearchappError(message)
    error.exit_code = kind.exit_code  # what the same error here would exit with
    return error


def on_actors(spec: WorkerSpec, gpus: int) -> WorkerSpec:
    """The spec the actors load their models by: on the CPU where Ray gives them no GPU (Ray
    no longer hides a node's GPUs from a worker given none, so `auto` would take one, an actor
    a CPU, all on one card)."""
    if gpus:
        return spec
    options = replace(spec.options, regions=detector_on_the_cpu(spec.options.regions))
    return replace(spec, encoder_options=on_the_cpu(spec.encoder_options), options=options)


def on_the_cpu(options: EncoderOptions) -> EncoderOptions:
    return replace(options, device="cpu")


def detector_on_the_cpu(regions: RegionOptions) -> RegionOptions:
    return replace(regions, detector_options=replace(regions.detector_options, device="cpu"))


def photo_tables(
    ray: Any, todo: list[FileStat], spec: WorkerSpec, known_hashes: set[str]
) -> Iterator[Any]:
    """Tables of shard rows, a batch at a time as the cluster finishes them."""
    _, gpus, actors = actor_pool(ray, spec)
    spec = on_actors(spec, gpus)
    per_batch = max(1, min(BATCH_PHOTOS, math.ceil(len(todo) / (2 * actors))))
    shipped = known_hashes if len(known_hashes) <= KNOWN_HASHES_SHIPPED else set()
    # a path travels as bytes: Arrow's strings refuse a name that is not UTF-8
    entries = [{"path": os.fsencode(s.path), "size": s.size, "mtime_ns": s.mtime_ns} for s in todo]
    dataset = ray.data.from_items(entries, override_num_blocks=math.ceil(len(todo) / per_batch))
    read = dataset.map_batches(
        read_batch,
        fn_kwargs={"spec": spec, "known_hashes": shipped},
        batch_size=per_batch,
        batch_format="pyarrow",
        num_cpus=1,
    )
    embedded = read.map_batches(
        bound_embedder(spec),
        batch_size=per_batch,
        batch_format="pyarrow",
        compute=ray.data.ActorPoolStrategy(size=actors),
        num_gpus=1 if gpus else 0,
        num_cpus=0 if gpus else 1,
    )
    yield from embedded.iter_batches(batch_size=None, batch_format="pyarrow")


class RayIndexRun(IndexRun):
    """IndexRun whose photos are read and embedded on Ray; plan and commits stay its own."""

    def __init__(
        self,
        catalog: Catalog,
        *args: Any,
        spec: Callable[[], WorkerSpec],  # called once there are photos to embed
        ray_options: RayOptions,
        shards: Path,
        **kwargs: Any,
    ):
        super().__init__(catalog, *args, **kwargs)
        self.make_spec = spec
        self.ray_options = ray_options
        self.shards = ShardFolder(shards)

    @classmethod
    def for_library(
        cls,
        catalog: Catalog,
        indexes: Callable[[], Any],
        port: LazyModel,
        tiles: LazyModel,
        spec: WorkerSpec,  # the library's encoder and options, as a worker is to use them
        callbacks: IndexCallbacks,
        only: set[str] | None,
        engine: RayOptions,
        tile_encoder_name: Callable[[], str | None],
        shards: Path,
    ) -> RayIndexRun:
        """A library's run on Ray. `port` and `tiles` are this machine's copies of the
        encoders, on its CPU: loaded first, once there are photos to embed, so that a new
        library records its encoders before any worker starts."""

        def worker_spec() -> WorkerSpec:
            port.get()
            if "tile" in spec.options.regions.kinds:
                tiles.get()  # records a CLIP library's tiles' CNN
            return replace(spec, tile_encoder=tile_encoder_name())

        # a photo an actor left pending is finished here, its detector on this machine's CPU
        here = replace(spec.options, regions=detector_on_the_cpu(spec.options.regions))
        return cls(
            catalog,
            indexes,
            port,
            here,
            callbacks,
            only=only,
            tiles=tiles,
            spec=worker_spec,
            ray_options=engine,
            shards=engine.shards or shards,
        )

    def run(self, roots: list[str]) -> IndexSummary:
        summary = super().run(roots)
        if not summary.interrupted:
            # every row of this run's files is committed; a row of a file outside its folders
            # (a killed run over others) is redone by a run over them
            self.shards.clear()
        return summary

    def _photos(
        self,
        work: list[tuple[FileStat, KnownImage | None]],
        missing: dict[str, KnownImage],
        known_hashes: set[str],
    ) -> None:
        previous = {stat.path: (stat, known) for stat, known in work}
        taken: set[str] = set()
        later: list[tuple[FileStat, KnownImage | None]] = []

        def take(row: ShardRow) -> None:
            planned = previous.get(row.stat.path)
            if planned is None or planned[0] != row.stat or row.stat.path in taken:
                return  # changed since that shard, or a retried task's second answer
            taken.add(row.stat.path)
            self._take(row, planned[1], missing, known_hashes, later)
            self._maybe_commit()

        spec = self.make_spec()
        dropped = self.shards.keep_only_made_by(spec.maker())
        if dropped:
            self.note(
                str(self.shards.directory), f"{dropped} shards of another run's options removed"
            )
        for row in self.shards.rows():  # what a killed run left
            take(row)
        self.summary.from_shards = len(taken)
        todo = [stat for stat, _ in work if stat.path not in taken]
        if todo:
            with ray_session(self.ray_options.address, self.options.workers) as ray:
                cpus, gpus, actors = actor_pool(ray, spec)
                where = self.ray_options.address or "a local Ray"
                embed = "1 actor embeds" if actors == 1 else f"{actors} actors embed"
                self.note(
                    "ray",
                    f"{where}: {_count(cpus, 'CPU')}, {_count(gpus, 'GPU')} for the encoders; "
                    f"{embed} {_count(len(todo), 'photo')}",
                )
                try:
                    for table in photo_tables(ray, todo, spec, known_hashes):
                        self.shards.write_table(table)
                        for row in table.to_pylist():
                            take(ShardRow.from_dict(row))
                except ray.exceptions.RayError as exc:
                    kept = len(self.shards.files())
                    ours = worker_error(str(exc))
                    failure = SearchappError(
                        f"Ray failed: {f'a worker: {ours}' if ours else first_line(exc)}. The "
                        f"{kept} shards written so far stay in {self.shards.directory}: run the "
                        "same command again to resume"
                    )
                    failure.exit_code = ours.exit_code if ours else failure.exit_code
                    raise failure from exc
        if later:  # known bytes the catalog could not reuse after all: decoded here
            super()._photos(later, missing, set())

    def _take(
        self,
        row: ShardRow,
        previous: KnownImage | None,
        missing: dict[str, KnownImage],
        known_hashes: set[str],
        later: list[tuple[FileStat, KnownImage | None]],
    ) -> None:
        """A shard row into the batch, as the local run takes a read and encoded photo."""
        if row.error is not None:
            self.record_failure(row.stat, row.error, previous)
        elif row.meta is None or row.content_hash in known_hashes:
            assert row.content_hash is not None
            if self.resolve_known(row.stat, previous, row.content_hash, missing):
                self.batch_images += 1
            elif row.meta is None:
                later.append((row.stat, previous))
                return  # advanced when decoded
            else:
                self._add_new(row, previous)
        else:
            self._add_new(row, previous)
        if self.cb.on_advance:
            self.cb.on_advance(1)

    def _add_new(self, row: ShardRow, previous: KnownImage | None) -> None:
        assert row.content_hash is not None and row.meta is not None
        self.add_embedded(row.stat, row.content_hash, row.meta, row.regions, previous)
        if row.regions and self.options.later_kinds and row.meta.regions_pending is None:
            self.summary.with_regions += 1  # its objects and tiles came with it
