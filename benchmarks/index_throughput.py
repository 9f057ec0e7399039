"""Indexing throughput: `searchapp index` against the encoder alone, a naive pipeline and a simple
threaded PIL draft() pipeline, on real 12 MP phone photos.

python benchmarks/index_throughput.py [FOLDER] [--encoders cnn:efficientnet-lite0,clip:ViT-B-32]
    [--modes scene,default] [--batch-size 32] [--clip-weights FILE] [--hybrid-photos N]
    [--repeats 3] [--bound-repeats 5] [--copies 1] [--region-vectors crops|pooled]

FOLDER defaults to ../shared/data/phone12mp: 43 real 4032x3024 phone JPEGs (EXIF orientation 6).
A folder made by benchmarks/phone_photos.py is labelled "synthetic (upscaled)" in the output and
the JSON. `--copies N` indexes N copies of every photo, each with other bytes (a few appended
after the JPEG's end, which decoders ignore: the content hash differs, the pixels and the decode
cost do not), for runs longer than 43 photos take.

Measured side by side in one run, each in a fresh process (so that its peak memory is its own):
- encoder alone: the encoder on ready tensors at the batch size, on the runtime searchapp picks,
  threaded as `searchapp index` runs it; once per encoder, warmed up, best of --bound-repeats
  repeats of 2 s or more (all repeats are reported: the spread is the machine's noise). In
  hybrid mode divided by the regions per photo that `searchapp index` embedded;
- ours: `searchapp index FOLDER` into a fresh library; photos/s with model load left out;
- naive: full decode, per-photo preprocessing, batched encoding, all in one thread;
- draft peer: what a simple pipeline gets without searchapp's machinery: a pool of one thread per
  core opens each JPEG with PIL's Image.draft() (decoded reduced, as ours decodes), applies EXIF
  orientation, cuts the same scenes and tiles and preprocesses them; the main thread encodes
  batches. No content hash, quality metrics, pHash, catalog or detector;
- the rest: the CPU time per photo of everything `searchapp index` does besides the encoder, on
  one thread, split into its parts: reading the file, the content hash (BLAKE2b), the reduced
  decode (with EXIF), quality metrics, pHash, cutting regions, preprocessing them, and in hybrid
  mode the CAM detector and cutting its objects.
ours, naive and the peer run --repeats times, interleaved, and the best is kept (all are in the
JSON). From the encoder's CPU time per photo (measured multi-threaded at the batch size, as the
encoder-alone figure spends it) and the rest's (one thread): the CPU-time bound, cores / (encoder
+ rest) photos/s, the most any pipeline could reach if the encoder and the rest share the cores
and no core ever waits. It is an estimate from two CPU times measured apart, not a measurement.
The default mode (every region kind; `hybrid` is its old name) runs on every photo, or on the
first --hybrid-photos (hard-linked into a scratch folder). After both modes of an encoder, the
issue 17 line: the default run's rate and its scene stage's (how soon every photo is searchable)
against the scene-only run's, KiB per photo on disk and peak memory. `clip:ViT-B-32` needs no
download: without --clip-weights a randomly initialised checkpoint of the real architecture is
written to a temporary folder (the speed is the same). Writes results/index_throughput.json.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
from collections import deque
from pathlib import Path
from typing import Any

from bench_results import random_vit_b32, scratch_folder, write_result

ROOT = Path(__file__).resolve().parents[1]
PHONE12MP = ROOT.parent / "shared" / "data" / "phone12mp"
MODES = {"scene": "scene", "default": "scene,object,tile", "hybrid": "scene,object,tile"}
REPEAT_SECONDS = 2.0  # each repeat of the encoder alone encodes for at least this long
WARM_SECONDS = 1.0
PHOTO_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".heic", ".tif", ".tiff"}
SYNTHETIC_MARKER = "SYNTHETIC-UPSCALED.txt"  # written by phone_photos.py
# The parts of the rest, by the names benchmarks wraps in searchapp.ingest.pipeline (a name the
# pipeline no longer has is skipped; what is not wrapped falls in "other")
REST_PARTS = {
    "read_bytes": "read the file",
    "content_hash": "content hash (BLAKE2b)",
    "decode": "reduced decode + EXIF",
    "measure": "quality metrics",
    "photo_hashes": "pHash (+ pixel hash)",
    "phash_variants": "pHash (+ pixel hash)",
    "pixel_hash": "pHash (+ pixel hash)",
    "cut_regions": "cut regions",
    "prepare": "preprocess regions",
}
DETECT, OBJECTS = "detector (CAM)", "cut objects"


def _photos(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in PHOTO_SUFFIXES)


def photo_set(folder: Path) -> str:
    """What the folder holds, for the output: real photos, or phone_photos.py's upscaled ones."""
    from PIL import Image

    photos = _photos(folder)
    synthetic = (folder / SYNTHETIC_MARKER).exists()
    if photos and not synthetic:
        with Image.open(photos[0]) as image:
            synthetic = image.getexif().get(0x010F) == "searchapp-bench"  # made by phone_photos
    if synthetic:
        return "synthetic (upscaled) by phone_photos.py, not real 12 MP photos"
    return "real photos"


def _encoder(
    name: str, clip_weights: str | None, threads: int | None = None, device: str = "cpu"
) -> Any:
    from searchapp.encoders.base import EncoderOptions
    from searchapp.encoders.registry import create_encoder

    weights = Path(clip_weights) if clip_weights and name.startswith("clip:") else None
    options = EncoderOptions(clip_weights=weights, threads=threads, device=device)
    return create_encoder(name, options)


# ---- children: each runs in a fresh process ---------------------------------------------------


def child_bound(spec: dict[str, Any]) -> dict[str, Any]:
    """The encoder alone on ready tensors: warmed up, then spec["repeats"] timed repeats."""
    import numpy as np

    encoder = _encoder(spec["encoder"], spec["clip_weights"], device=spec.get("device", "cpu"))
    size, batch_size = encoder.input_size, spec["batch_size"]
    batch = np.random.default_rng(0).standard_normal((batch_size, 3, size, size), np.float32)
    started = time.perf_counter()
    encoder.encode(batch)  # first-call allocations and kernel choice
    while time.perf_counter() - started < WARM_SECONDS:
        encoder.encode(batch)
    repeats = []
    for _ in range(spec["repeats"]):
        done, started, cpu_started = 0, time.perf_counter(), time.process_time()
        while done < 2 * batch_size or time.perf_counter() - started < REPEAT_SECONDS:
            encoder.encode(batch)
            done += batch_size
        repeats.append(
            {
                "regions_per_second": done / (time.perf_counter() - started),
                "cpu_ms_per_region": (time.process_time() - cpu_started) / done * 1000,
            }
        )
    return {"runtime": getattr(encoder, "runtime", "?"), "repeats": repeats}


def child_rest(spec: dict[str, Any]) -> dict[str, Any]:
    """CPU time per photo of everything `searchapp index` does besides the encoder: its read
    step (searchapp.ingest.pipeline.read_photo) and, in hybrid mode, the detector and the
    preprocessing of its objects, split into parts by timers around the functions the read step
    calls. One photo
    at a time, on one thread: an idle OpenMP thread spins, and its spinning would count as work."""
    from searchapp.detect.registry import create_detector
    from searchapp.encoders.registry import tile_encoder_name
    from searchapp.ingest import pipeline, region_stage
    from searchapp.ingest.pipeline import IndexOptions, LazyModel, numpy_blas_at_one_thread
    from searchapp.ingest.regions import RegionOptions, object_regions
    from searchapp.records import FileStat, PendingImage

    encoder = _encoder(spec["encoder"], spec["clip_weights"], threads=1)
    options = IndexOptions(regions=RegionOptions(kinds=tuple(spec["kinds"].split(","))))
    regions = options.regions
    detector = None
    if "object" in regions.kinds:
        detector = create_detector(regions.detector, regions.detector_options, threads=1)
    cpu: dict[str, float] = {}
    busy = [False]

    def timed(label: str, original: Any) -> Any:
        @functools.wraps(original)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if busy[0]:
                return original(*args, **kwargs)
            busy[0] = True
            started = time.thread_time()
            try:
                return original(*args, **kwargs)
            finally:
                cpu[label] = cpu.get(label, 0.0) + time.thread_time() - started
                busy[0] = False

        return wrapper

    for name, label in REST_PARTS.items():
        for module in (pipeline, region_stage):  # the scene stage's read, then the region stage's
            if hasattr(module, name):
                setattr(module, name, timed(label, getattr(module, name)))
    if detector is not None:  # the region stage's readers call it, and cut its objects
        detector.detect = timed(DETECT, detector.detect)  # type: ignore[method-assign]
        region_stage.object_regions = timed(OBJECTS, object_regions)  # type: ignore[attr-defined]
    labels_seconds = [0.0]  # the scene's classes: the encoder's work, not the rest's
    # a CLIP library's tiles go to the CNN (registry.TILE_ENCODERS), as `searchapp index` does
    tiles_name = tile_encoder_name(spec["encoder"])
    tile_model = _encoder(tiles_name, None) if tiles_name else encoder
    tiles = LazyModel(lambda: tile_model)

    def work(path: Path) -> None:
        stat = path.stat()
        file = FileStat(str(path), stat.st_size, stat.st_mtime_ns)
        model = LazyModel(lambda: encoder)
        result = pipeline.read_photo(file, None, set(), model, options)
        if result.error is not None or result.content_hash is None:
            raise SystemExit(f"{path}: {result.error}")
        if not options.later_kinds:
            return
        kinds = options.later_kinds
        waiting = PendingImage(0, file.path, file.size, file.mtime_ns, result.content_hash, kinds)
        started = time.thread_time()
        encoded = encoder.encode(result.cuts[0].array[None]) if detector is not None else None
        labels = encoded.labels[0] if encoded is not None and encoded.labels else []
        labels_seconds[0] += time.thread_time() - started
        job = region_stage._Job([waiting], kinds, labels)
        read = region_stage._read(job, model, tiles, LazyModel(lambda: detector), options)
        if read.error is not None:
            raise SystemExit(f"{path}: {read.error}")

    photos = _photos(Path(spec["folder"]))
    work(photos[0])  # warm-up: lazy imports and first-call allocations
    cpu.clear()
    labels_seconds[0] = 0.0
    started = time.process_time()
    with numpy_blas_at_one_thread():  # as `searchapp index` runs
        for path in photos:
            work(path)
    total = (time.process_time() - started - labels_seconds[0]) / len(photos) * 1000
    parts = {label: seconds / len(photos) * 1000 for label, seconds in cpu.items()}
    parts["other"] = total - sum(parts.values())
    return {"cpu_ms_per_photo": total, "parts_cpu_ms_per_photo": parts}


def child_ours(spec: dict[str, Any]) -> dict[str, Any]:
    import contextlib
    import io

    from searchapp.cli import main

    library = str(scratch_folder("searchapp-throughput-"))
    argv = ["index", spec["folder"], "--library", library, "--regions", spec["kinds"]]
    argv += ["--encoder", spec["encoder"], "--batch-size", str(spec["batch_size"])]
    argv += ["--json", "--quiet", "--device", spec.get("device", "cpu")]
    if spec.get("region_vectors"):
        argv += ["--region-vectors", spec["region_vectors"]]
    if spec["clip_weights"] and spec["encoder"].startswith("clip:"):
        argv += ["--clip-weights", spec["clip_weights"]]
    out = io.StringIO()
    started = time.perf_counter()
    with contextlib.redirect_stdout(out):
        code = main(argv)
    wall = time.perf_counter() - started
    if code != 0:
        raise SystemExit(f"searchapp index exited {code}")
    summary = json.loads(out.getvalue())
    working = summary["seconds"] - summary["model_seconds"]
    from searchapp.library import Library

    with Library(Path(library)) as lib:
        stats = lib.stats()
    return {
        "images": summary["embedded"],
        "scene_images_per_second": summary.get("scene_images_per_second"),
        "bytes_per_photo": round(stats.bytes_on_disk / max(1, stats.images)),
        "seconds": round(working, 2),
        "model_seconds": summary["model_seconds"],
        "wall_seconds": round(wall, 2),
        "images_per_second": summary["images_per_second"],  # model load left out
        "regions_per_photo": stats.vectors / max(1, summary["embedded"]),
    }


def _cut_options(kinds: str) -> Any:
    """Scenes and tiles as ours cuts them; objects would need a detector pass on top."""
    from searchapp.ingest.regions import RegionOptions

    return RegionOptions(kinds=tuple(k for k in kinds.split(",") if k != "object"))


def child_naive(spec: dict[str, Any]) -> dict[str, Any]:
    import numpy as np
    from PIL import Image, ImageOps

    from searchapp.ingest.load import LoadedImage
    from searchapp.ingest.regions import cut_regions
    from searchapp.records import ImageMeta

    encoder = _encoder(spec["encoder"], spec["clip_weights"])
    options = _cut_options(spec["kinds"])
    photos = _photos(Path(spec["folder"]))
    pending: list[np.ndarray] = []
    regions = 0
    started = time.perf_counter()
    for path in photos:
        with Image.open(path) as opened:
            image = ImageOps.exif_transpose(opened).convert("RGB")  # full decode
        meta = ImageMeta(
            width=image.width, height=image.height, format="JPEG", taken_at=0.0,
            taken_source="mtime",
        )  # fmt: skip
        loaded = LoadedImage(image=image, meta=meta, content_hash="")
        for cut in cut_regions(loaded, options):
            pending.append(encoder.preprocess(cut.image))
            if len(pending) == spec["batch_size"]:
                encoder.encode(np.stack(pending))
                regions += len(pending)
                pending = []
    if pending:
        encoder.encode(np.stack(pending))
        regions += len(pending)
    seconds = time.perf_counter() - started
    return {"images": len(photos), "seconds": seconds, "images_per_second": len(photos) / seconds}


def child_draft(spec: dict[str, Any]) -> dict[str, Any]:
    """A simple threaded pipeline: PIL's draft() decode in a pool, batched encoder."""
    from concurrent.futures import ThreadPoolExecutor

    import numpy as np
    from PIL import Image, ImageOps

    from searchapp.ingest.load import LoadedImage
    from searchapp.ingest.regions import cut_regions
    from searchapp.records import ImageMeta

    encoder = _encoder(spec["encoder"], spec["clip_weights"])
    options = _cut_options(spec["kinds"])
    side = options.decode_side(encoder.input_size)  # the size ours decodes at for these kinds
    photos = _photos(Path(spec["folder"]))
    workers = os.cpu_count() or 1

    def read(path: Path) -> list[np.ndarray]:
        with Image.open(path) as opened:
            width, height = opened.size
            if opened.getexif().get(0x0112, 1) in (5, 6, 7, 8):
                width, height = height, width
            opened.draft("RGB", (side, side))  # JPEG: decoded at 1/2, 1/4 or 1/8 in the DCT
            image = ImageOps.exif_transpose(opened).convert("RGB")
        meta = ImageMeta(width=width, height=height, format="JPEG", taken_at=0.0,
                         taken_source="mtime")  # fmt: skip
        loaded = LoadedImage(image=image, meta=meta, content_hash="")
        return [encoder.preprocess(cut.image) for cut in cut_regions(loaded, options)]

    batch_size, regions = spec["batch_size"], 0
    started = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        queue = iter(photos)
        in_flight: deque[Any] = deque()
        batch: list[np.ndarray] = []
        while True:
            while len(in_flight) < 4 * workers and (path := next(queue, None)) is not None:
                in_flight.append(pool.submit(read, path))
            if not in_flight:
                break
            batch += in_flight.popleft().result()
            while len(batch) >= batch_size:
                encoder.encode(np.stack(batch[:batch_size]))
                regions, batch = regions + batch_size, batch[batch_size:]
        if batch:
            encoder.encode(np.stack(batch))
            regions += len(batch)
    seconds = time.perf_counter() - started
    return {
        "images": len(photos),
        "seconds": seconds,
        "images_per_second": len(photos) / seconds,
        "regions_per_photo": regions / len(photos),
        "decode_side": side,
        "reader_threads": workers,
    }


CHILDREN = {
    "bound": child_bound,
    "ours": child_ours,
    "naive": child_naive,
    "draft": child_draft,
    "rest": child_rest,
}


def peak_memory_mib() -> int:
    """This process's peak resident memory. The pipeline's readers are threads, so this is all
    of it; children are left out, as a fork's copy of a large process would count it twice."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)


def run_child(kind: str, spec: dict[str, Any]) -> dict[str, Any]:
    result = subprocess.run(
        [sys.executable, __file__, "--child", kind, "--spec", json.dumps(spec)],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    if result.returncode != 0:
        raise SystemExit(f"{kind} failed:\n{result.stderr[-3000:]}")
    data: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return data


# ---- the run ----------------------------------------------------------------------------------


def subset(photos: list[Path], count: int, scratch: Path) -> Path:
    folder = scratch / f"first-{count}"
    if not folder.exists():
        folder.mkdir()
        for path in photos[:count]:
            try:
                os.link(path, folder / path.name)
            except OSError:  # another file system
                shutil.copy2(path, folder / path.name)
    return folder


def copies(photos: list[Path], count: int, scratch: Path) -> Path:
    """`count` copies of every photo whose bytes differ after the JPEG's end-of-image marker,
    where decoders stop reading: a new content hash, the same pixels and decode cost. Named so
    that the first len(photos) files are one copy of each."""
    folder = scratch / f"copies-{count}"
    folder.mkdir()
    for copy in range(count):
        for path in photos:
            tail = f"searchapp benchmark copy {copy}".encode()
            (folder / f"c{copy:02d}-{path.name}").write_bytes(path.read_bytes() + tail)
    return folder


def spread(values: list[float]) -> str:
    return f"{min(values):.1f}-{max(values):.1f}" if len(values) > 1 else f"{values[0]:.1f}"


def measure_mode(
    name: str,
    mode: str,
    folder: Path,
    bound: dict[str, Any],
    args: argparse.Namespace,
    weights: str,
) -> dict[str, Any]:
    spec = {
        "encoder": name,
        "folder": str(folder),
        "kinds": MODES[mode],
        "batch_size": args.batch_size,
        "clip_weights": weights,
        "region_vectors": args.region_vectors,
        "device": args.device,
    }
    runs: dict[str, list[dict[str, Any]]] = {"ours": [], "naive": [], "draft": []}
    for _ in range(args.repeats):  # interleaved: a slow spell of the machine hits all three
        for kind in runs:
            runs[kind].append(run_child(kind, spec))
    rest = run_child("rest", spec)
    best = {kind: max(r, key=lambda m: m["images_per_second"]) for kind, r in runs.items()}
    rates = {kind: [m["images_per_second"] for m in r] for kind, r in runs.items()}
    regions = best["ours"]["regions_per_photo"]
    bound_regions = max(r["regions_per_second"] for r in bound["repeats"])
    encoder_cpu_per_region = min(r["cpu_ms_per_region"] for r in bound["repeats"])
    bound_images = bound_regions / regions
    encoder_ms = encoder_cpu_per_region * regions
    rest_ms = rest["cpu_ms_per_photo"]
    cores = os.cpu_count() or 1
    if spec["device"] == "cpu":  # the encoder's and the rest's CPU time share the cores
        cpu_bound = cores * 1000 / (encoder_ms + rest_ms)
    else:  # the encoder on the device; the cores do the rest: the slower of the two bounds
        cpu_bound = min(bound_images, cores * 1000 / rest_ms)
    ours, naive, draft = (best[k]["images_per_second"] for k in ("ours", "naive", "draft"))
    return {
        "encoder": name,
        "mode": mode,
        "photos": len(_photos(folder)),
        "regions_per_photo": round(regions, 2),
        "encoder_alone_images_per_second": round(bound_images, 2),
        "ours_images_per_second": round(ours, 2),
        "naive_images_per_second": round(naive, 2),
        "draft_peer_images_per_second": round(draft, 2),
        "draft_peer_regions_per_photo": round(best["draft"]["regions_per_photo"], 2),
        "repeats_images_per_second": {k: [round(v, 2) for v in r] for k, r in rates.items()},
        "ours_over_encoder_alone": round(ours / bound_images, 3),
        "ours_over_naive": round(ours / naive, 2),
        "ours_over_draft_peer": round(ours / draft, 2),
        "encoder_cpu_ms_per_photo": round(encoder_ms, 1),
        "rest_cpu_ms_per_photo": round(rest_ms, 1),
        "rest_parts_cpu_ms_per_photo": {
            k: round(v, 2) for k, v in rest["parts_cpu_ms_per_photo"].items()
        },
        "cpu_time_bound_images_per_second": round(cpu_bound, 2),
        "cpu_time_bound_over_encoder_alone": round(cpu_bound / bound_images, 3),
        "ours_over_cpu_time_bound": round(ours / cpu_bound, 3),
        "ours_seconds": best["ours"]["seconds"],
        "ours_model_seconds": best["ours"]["model_seconds"],
        "ours_wall_seconds": best["ours"]["wall_seconds"],
        "ours_peak_memory_mib": best["ours"]["peak_memory_mib"],
        "ours_scene_stage_images_per_second": best["ours"]["scene_images_per_second"],
        "ours_kib_per_photo": round(best["ours"]["bytes_per_photo"] / 1024, 1),
        "naive_peak_memory_mib": best["naive"]["peak_memory_mib"],
        "draft_peer_peak_memory_mib": best["draft"]["peak_memory_mib"],
    }


def print_row(row: dict[str, Any], bound: dict[str, Any], repeats: int, cores: int) -> None:
    regions = row["regions_per_photo"]
    bound_rates = [r["regions_per_second"] for r in bound["repeats"]]
    rates = row["repeats_images_per_second"]
    alone = row["encoder_alone_images_per_second"]
    per_photo = f" = {alone:.2f} photos/s at {regions:.1f} regions each" if regions > 1 else ""
    print(f"{row['encoder']} {row['mode']}: {row['photos']} photos, {regions:.1f} regions each")
    print(f"  encoder alone (batch {bound['batch_size']}, {bound['runtime']}"
          f", best of {len(bound_rates)} after warm-up): {max(bound_rates):.1f} regions/s"
          f"{per_photo} (repeats {spread(bound_rates)} regions/s)")  # fmt: skip
    print(f"  ours, searchapp index:            {row['ours_images_per_second']:6.2f} photos/s "
          f"(best of {repeats}: {spread(rates['ours'])}) = {row['ours_over_encoder_alone']:.2f} "
          f"of the encoder alone, peak {row['ours_peak_memory_mib']} MiB")  # fmt: skip
    print(f"  naive, full decode, one thread:   {row['naive_images_per_second']:6.2f} photos/s "
          f"({spread(rates['naive'])}); ours/naive {row['ours_over_naive']:.2f}")  # fmt: skip
    print(f"  draft peer, PIL draft() in {cores} threads + batched encoder: "
          f"{row['draft_peer_images_per_second']:.2f} photos/s ({spread(rates['draft'])}); "
          f"ours/peer {row['ours_over_draft_peer']:.2f}")  # fmt: skip
    if row["draft_peer_regions_per_photo"] < regions:
        print(f"    (naive and the peer embed scenes and tiles, no objects: "
              f"{row['draft_peer_regions_per_photo']:.1f} regions per photo)")  # fmt: skip
    if row.get("device", "cpu") != "cpu":
        print(f"  bound: the slower of the encoder alone on {row['device']} and {cores} cores "
              f"doing the rest ({row['rest_cpu_ms_per_photo']:.0f} ms a photo, one thread) = "
              f"{row['cpu_time_bound_images_per_second']:.2f} photos/s; ours reaches "
              f"{row['ours_over_cpu_time_bound']:.2f} of it")  # fmt: skip
    else:
        print_cpu_bound(row, cores)
    parts = ", ".join(f"{k} {v:.1f}" for k, v in row["rest_parts_cpu_ms_per_photo"].items())
    print(f"  the rest, CPU ms per photo on one thread: {parts}", flush=True)


def print_cpu_bound(row: dict[str, Any], cores: int) -> None:
    print(f"  CPU-time bound: {cores} cores / (encoder {row['encoder_cpu_ms_per_photo']:.0f} ms, "
          f"as the encoder alone spends it + rest {row['rest_cpu_ms_per_photo']:.0f} ms, one "
          f"thread) = {row['cpu_time_bound_images_per_second']:.2f} photos/s = "
          f"{row['cpu_time_bound_over_encoder_alone']:.2f} of the encoder alone; ours reaches "
          f"{row['ours_over_cpu_time_bound']:.2f} of it")  # fmt: skip
    if row["cpu_time_bound_over_encoder_alone"] > 1:
        print(
            "  (the CPU-time bound is above the encoder alone: the encoder alone left cores idle)"
        )


def print_staged(name: str, by_mode: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Issue 17's figures: a default run (every region kind) against a scene-only run."""
    scene = by_mode["scene"]
    full = next(row for mode, row in by_mode.items() if mode != "scene")
    only = scene["ours_images_per_second"]
    row = {
        "encoder": name,
        "scene_only_images_per_second": only,
        "default_images_per_second": full["ours_images_per_second"],
        "default_over_scene_only": round(full["ours_images_per_second"] / only, 3),
        "scene_stage_images_per_second": full["ours_scene_stage_images_per_second"],
        "scene_stage_over_scene_only": round(
            (full["ours_scene_stage_images_per_second"] or 0) / only, 3
        ),
        "kib_per_photo": {
            "scene only": scene["ours_kib_per_photo"],
            "default": full["ours_kib_per_photo"],
        },
        "peak_memory_mib": {
            "scene only": scene["ours_peak_memory_mib"],
            "default": full["ours_peak_memory_mib"],
        },
        "regions_per_photo": full["regions_per_photo"],
    }
    print(f"{name}: default run {row['default_images_per_second']:.2f} photos/s = "
          f"{row['default_over_scene_only']:.3f} of scene-only {only:.2f}; its scene stage "
          f"{row['scene_stage_images_per_second']:.2f} photos/s = "
          f"{row['scene_stage_over_scene_only']:.3f} of scene-only; "
          f"{row['kib_per_photo']['default']} KiB/photo (scene-only "
          f"{row['kib_per_photo']['scene only']}); peak {row['peak_memory_mib']['default']} MiB "
          f"(scene-only {row['peak_memory_mib']['scene only']})", flush=True)  # fmt: skip
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path, nargs="?", default=PHONE12MP)
    parser.add_argument("--encoders", default="cnn:efficientnet-lite0,clip:ViT-B-32")
    parser.add_argument("--modes", default="scene,default")
    parser.add_argument(
        "--batch-size", type=int, help="index --batch-size (default: the device's, 32 on a CPU)"
    )
    parser.add_argument("--clip-weights")
    parser.add_argument(
        "--hybrid-photos", type=int, default=0, help="default mode on the first N only (0: all)"
    )
    parser.add_argument("--repeats", type=int, default=3, help="runs of ours, naive and peer")
    parser.add_argument("--bound-repeats", type=int, default=5, help="repeats of the encoder")
    parser.add_argument("--copies", type=int, default=1, help="index N byte-distinct copies")
    parser.add_argument(
        "--region-vectors", choices=("crops", "pooled"), help="ours: index --region-vectors"
    )
    parser.add_argument(
        "--devices",
        default="cpu",
        help="ours on each, side by side: cpu,cuda (a GPU run needs a CUDA build of torch)",
    )
    parser.add_argument("--child", choices=sorted(CHILDREN), help=argparse.SUPPRESS)
    parser.add_argument("--spec", help=argparse.SUPPRESS)
    parser.add_argument(
        "--out", type=Path, default=ROOT / "benchmarks" / "results" / "index_throughput.json"
    )
    args = parser.parse_args()
    if args.child:
        measured = CHILDREN[args.child](json.loads(args.spec))
        print(json.dumps({**measured, "peak_memory_mib": peak_memory_mib()}))
        return 0
    from searchapp.encoders.devices import index_batch

    devices = args.devices.split(",")
    if not args.folder.is_dir() or not _photos(args.folder):
        parser.error(f"{args.folder}: no photos (default: {PHONE12MP}, see its MANIFEST.md)")
    source = _photos(args.folder)
    kind = photo_set(args.folder)
    scratch = scratch_folder("searchapp-throughput-")
    folder = copies(source, args.copies, scratch) if args.copies > 1 else args.folder
    photos = _photos(folder)
    described = f"{len(source)} {kind} in {args.folder}"
    if args.copies > 1:
        described += f", {args.copies} byte-distinct copies of each ({len(photos)} files)"
    cores = os.cpu_count() or 1
    batches = {device: args.batch_size or index_batch(device) for device in devices}
    shown = ", ".join(f"{batches[d]} on {d}" for d in devices)
    print(f"{described}; batch {shown}; {cores} cores", flush=True)
    clip_weights = args.clip_weights
    rows, bounds = [], {}
    staged: list[dict[str, Any]] = []
    for name in args.encoders.split(","):
        if name.startswith("clip:") and not clip_weights:
            clip_weights = random_vit_b32(scratch)
        weights = clip_weights or ""
        for device in devices:  # the encoder alone on each device, as ours runs there
            spec = {
                "encoder": name,
                "batch_size": batches[device],
                "clip_weights": weights,
                "repeats": args.bound_repeats,
                "device": device,
            }
            key = name if device == "cpu" else f"{name} on {device}"
            bounds[key] = {**run_child("bound", spec), "batch_size": batches[device]}
        for mode in args.modes.split(","):
            few = args.hybrid_photos and mode != "scene"
            mode_folder = subset(photos, args.hybrid_photos, scratch) if few else folder
            for device in devices:  # the naive and peer pipelines stay on CPU
                bound = bounds[name if device == "cpu" else f"{name} on {device}"]
                on = argparse.Namespace(**{**vars(args), "device": device})
                on.batch_size = batches[device]
                row = {
                    **measure_mode(name, mode, mode_folder, bound, on, weights),
                    "device": device,
                }
                rows.append(row)
                print(f"device {device}:", flush=True)
                print_row(row, bound, args.repeats, cores)
        first = devices[0]
        by_mode = {r["mode"]: r for r in rows if r["encoder"] == name and r["device"] == first}
        if "scene" in by_mode and len(by_mode) > 1:
            staged.append(print_staged(name, by_mode))
    result = {
        "folder": str(args.folder),
        "photo_set": kind,
        "photos": len(source),
        "copies": args.copies,
        "batch_size": batches,
        "repeats": args.repeats,
        "region_vectors": args.region_vectors or "crops",
        "encoder_alone": {
            name: {
                "runtime": b["runtime"],
                "regions_per_second_best": round(
                    max(r["regions_per_second"] for r in b["repeats"]), 1
                ),
                "regions_per_second_median": round(
                    statistics.median(r["regions_per_second"] for r in b["repeats"]), 1
                ),
                "repeats": b["repeats"],
            }
            for name, b in bounds.items()
        },
        "runs": rows,
        "default_against_scene_only": staged,
    }
    write_result(args.out, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
