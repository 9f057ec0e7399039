"""Indexing throughput: `searchapp index` against the encoder alone and against a naive pipeline.

python benchmarks/index_throughput.py FOLDER [--encoders cnn:efficientnet-lite0,clip:ViT-B-32]
    [--modes scene,hybrid] [--batch-size 32] [--clip-weights FILE] [--hybrid-photos 50]

For each encoder and mode, four measurements, each in a fresh process (so that its peak memory
is its own), side by side in one run:
- bound: the encoder alone on ready tensors at the batch size, on the runtime searchapp picks;
  in hybrid mode divided by the regions per photo that `searchapp index` embedded;
- ours: `searchapp index FOLDER` into a fresh library; images/s over the run, model load and
  start-up excluded (they are reported apart);
- naive: full decode, per-image preprocessing, batched encoding, all in one thread, one photo
  after another (hybrid: the same regions, cut from the full-size photo);
- the cap: the CPU time per photo of everything but the encoder (the read step, and the
  detector in hybrid mode, one photo at a time), added to the encoder's as the bound spends it.
  Where the encoder and the rest share the cores, ours cannot pass cores / (encoder + rest)
  photos/s; the cap is that, over the bound.
Hybrid mode embeds about 35 regions per photo, so it runs on the first --hybrid-photos photos
(hard-linked into a scratch folder), which keeps a CLIP run to minutes.
`clip:ViT-B-32` needs no download: without --clip-weights a randomly initialised checkpoint of
the real architecture is written to a temporary folder (the speed is the same). FOLDER is best a
folder of 12 MP phone photos: `python benchmarks/phone_photos.py /tmp/phone`.
Writes results/index_throughput.json.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench_results import scratch_folder, write_result

ROOT = Path(__file__).resolve().parents[1]
MODES = {"scene": "scene", "hybrid": "scene,object,tile"}
BOUND_SECONDS = 8.0  # encode ready batches for at least this long
PHOTO_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".heic", ".tif", ".tiff"}


def _photos(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in PHOTO_SUFFIXES)


def _encoder(name: str, clip_weights: str | None, threads: int | None = None) -> Any:
    from searchapp.encoders.base import EncoderOptions
    from searchapp.encoders.registry import create_encoder

    weights = Path(clip_weights) if clip_weights and name.startswith("clip:") else None
    return create_encoder(name, EncoderOptions(clip_weights=weights, threads=threads))


def child_bound(name: str, batch_size: int, clip_weights: str | None) -> dict[str, Any]:
    import numpy as np

    encoder = _encoder(name, clip_weights)
    size = encoder.input_size
    batch = np.random.default_rng(0).standard_normal((batch_size, 3, size, size), np.float32)
    encoder.encode(batch)  # warm-up: first-call allocations and kernel choice
    done, started, cpu_started = 0, time.perf_counter(), time.process_time()
    while time.perf_counter() - started < BOUND_SECONDS:
        encoder.encode(batch)
        done += batch_size
    return {
        "regions_per_second": done / (time.perf_counter() - started),
        "cpu_ms_per_region": (time.process_time() - cpu_started) / done * 1000,
    }


def child_work(
    name: str, folder: str, kinds: str, batch_size: int, clip_weights: str | None
) -> dict[str, Any]:
    """CPU time per photo of everything `searchapp index` does besides the encoder: the read
    step (read, hash, reduced decode, quality, pHash, cuts, preprocessing) and, in hybrid mode,
    the detector and the preprocessing of its objects. One photo at a time, on one thread: an
    idle OpenMP thread spins, and its spinning would count as work."""
    from searchapp.detect.registry import create_detector
    from searchapp.ingest.pipeline import IndexOptions, LazyModel, _prepare, _read
    from searchapp.ingest.regions import RegionOptions, object_regions
    from searchapp.records import FileStat

    encoder = _encoder(name, clip_weights, threads=1)
    options = IndexOptions(regions=RegionOptions(kinds=tuple(kinds.split(","))))
    regions = options.regions
    detector = None
    if "object" in regions.kinds:
        detector = create_detector(regions.detector, regions.detector_options, threads=1)

    def work(path: Path) -> None:
        stat = path.stat()
        file = FileStat(str(path), stat.st_size, stat.st_mtime_ns)
        result = _read(file, None, set(), LazyModel(lambda: encoder), options)
        if detector is not None and result.awaiting_detection is not None:
            loaded = result.awaiting_detection
            for cut in object_regions(loaded, detector.detect([loaded.image])[0]):
                _prepare(cut, encoder)

    photos = _photos(Path(folder))
    work(photos[0])  # warm-up: lazy imports and first-call allocations
    started = time.process_time()
    for path in photos:
        work(path)
    return {"cpu_ms_per_photo": (time.process_time() - started) / len(photos) * 1000}


def child_ours(
    name: str, folder: str, kinds: str, batch_size: int, clip_weights: str | None
) -> dict[str, Any]:
    import contextlib
    import io

    from searchapp.cli import main

    library = str(scratch_folder("searchapp-throughput-"))
    argv = ["index", folder, "--library", library, "--regions", kinds, "--encoder", name]
    argv += ["--batch-size", str(batch_size), "--json", "--quiet"]
    if clip_weights and name.startswith("clip:"):
        argv += ["--clip-weights", clip_weights]
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
        regions = lib.stats().vectors
    return {
        "images": summary["embedded"],
        "seconds": round(working, 2),
        "model_seconds": summary["model_seconds"],
        "wall_seconds": round(wall, 2),
        "images_per_second": summary["images_per_second"],  # model load left out
        "regions_per_photo": regions / max(1, summary["embedded"]),
    }


def child_naive(
    name: str, folder: str, kinds: str, batch_size: int, clip_weights: str | None
) -> dict[str, Any]:
    import numpy as np
    from PIL import Image, ImageOps

    from searchapp.ingest.load import LoadedImage
    from searchapp.ingest.regions import RegionOptions, cut_regions
    from searchapp.records import ImageMeta

    encoder = _encoder(name, clip_weights)
    # the naive pipeline cuts scenes and tiles; objects need a detector pass it would add on top
    options = RegionOptions(kinds=tuple(k for k in kinds.split(",") if k != "object"))
    photos = _photos(Path(folder))
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
            if len(pending) == batch_size:
                encoder.encode(np.stack(pending))
                regions += len(pending)
                pending = []
    if pending:
        encoder.encode(np.stack(pending))
        regions += len(pending)
    seconds = time.perf_counter() - started
    return {"images": len(photos), "seconds": seconds, "images_per_second": len(photos) / seconds}


CHILDREN = {"bound": child_bound, "ours": child_ours, "naive": child_naive, "work": child_work}


def peak_memory_mib() -> int:
    """This process's peak resident memory. The pipeline's readers are threads, so this is all
    of it; children are left out, as a fork's copy of a large process would count it twice."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)


def run_child(kind: str, *args: str) -> dict[str, Any]:
    result = subprocess.run(
        [sys.executable, __file__, "--child", kind, *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    if result.returncode != 0:
        raise SystemExit(f"{kind} failed:\n{result.stderr[-3000:]}")
    data: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return data


def random_vit_b32(folder: Path) -> str:
    """A randomly initialised ViT-B-32 checkpoint in open_clip's layout: real shapes, real
    speed, no download."""
    import open_clip
    import torch

    torch.manual_seed(0)
    model = open_clip.create_model("ViT-B-32", pretrained=None)
    path = folder / "vit-b-32-random.pt"
    torch.save(model.state_dict(), path)
    return str(path)


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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path, nargs="?")
    parser.add_argument("--encoders", default="cnn:efficientnet-lite0,clip:ViT-B-32")
    parser.add_argument("--modes", default="scene,hybrid")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--clip-weights")
    parser.add_argument("--hybrid-photos", type=int, default=50)
    parser.add_argument("--child", choices=sorted(CHILDREN), help=argparse.SUPPRESS)
    parser.add_argument("rest", nargs="*", help=argparse.SUPPRESS)
    parser.add_argument(
        "--out", type=Path, default=ROOT / "benchmarks" / "results" / "index_throughput.json"
    )
    args = parser.parse_args()
    if args.child:
        values = [str(args.folder), *args.rest]
        name, *others = values
        typed: list[Any] = [name, *others]
        if args.child == "bound":
            typed = [name, int(others[0]), others[1] or None]
        else:
            typed = [name, others[0], others[1], int(others[2]), others[3] or None]
        measured = CHILDREN[args.child](*typed)
        print(json.dumps({**measured, "peak_memory_mib": peak_memory_mib()}))
        return 0
    if args.folder is None or not args.folder.is_dir():
        parser.error("FOLDER: a folder of photos (python benchmarks/phone_photos.py /tmp/phone)")
    photos = _photos(args.folder)
    scratch = scratch_folder("searchapp-throughput-")
    clip_weights = args.clip_weights
    rows = []
    print(f"{len(photos)} photos in {args.folder}; batch {args.batch_size}; {os.cpu_count()} cores")
    for name in args.encoders.split(","):
        if name.startswith("clip:") and not clip_weights:
            clip_weights = random_vit_b32(scratch)
        weights = clip_weights or ""
        for mode in args.modes.split(","):
            kinds = MODES[mode]
            folder = args.folder if mode == "scene" else subset(photos, args.hybrid_photos, scratch)
            common = [str(folder), kinds, str(args.batch_size), weights]
            bound = run_child("bound", name, str(args.batch_size), weights)
            ours = run_child("ours", name, *common)
            naive = run_child("naive", name, *common)
            work = run_child("work", name, *common)
            bound_images = bound["regions_per_second"] / ours["regions_per_photo"]
            # If every core did useful work all the time: the encoder's CPU time per photo (as
            # the bound spends it) plus everything else's, shared by all the cores
            encoder_ms = bound["cpu_ms_per_region"] * ours["regions_per_photo"]
            best_images = (os.cpu_count() or 1) * 1000 / (encoder_ms + work["cpu_ms_per_photo"])
            row = {
                "encoder": name,
                "mode": mode,
                "photos": len(_photos(folder)),
                "regions_per_photo": round(ours["regions_per_photo"], 2),
                "bound_images_per_second": round(bound_images, 2),
                "ours_images_per_second": round(ours["images_per_second"], 2),
                "naive_images_per_second": round(naive["images_per_second"], 2),
                "ours_over_bound": round(ours["images_per_second"] / bound_images, 3),
                "ours_over_naive": round(ours["images_per_second"] / naive["images_per_second"], 2),
                "encoder_cpu_ms_per_photo": round(encoder_ms, 1),
                "other_cpu_ms_per_photo": round(work["cpu_ms_per_photo"], 1),
                "cap_over_bound": round(best_images / bound_images, 3),
                "ours_seconds": ours["seconds"],
                "ours_model_seconds": ours["model_seconds"],
                "ours_wall_seconds": ours["wall_seconds"],
                "ours_peak_memory_mib": ours["peak_memory_mib"],
                "naive_peak_memory_mib": naive["peak_memory_mib"],
            }
            rows.append(row)
            print(
                f"{name:<24} {mode:<7} bound {bound_images:6.1f}/s  ours "
                f"{ours['images_per_second']:6.1f}/s  naive {naive['images_per_second']:6.1f}/s  "
                f"ours/bound {row['ours_over_bound']:.2f} (cap {row['cap_over_bound']:.2f})  "
                f"ours/naive {row['ours_over_naive']:.2f}  peak {row['ours_peak_memory_mib']} MiB"
                f"  | CPU ms/photo: encoder {encoder_ms:.0f}, rest {work['cpu_ms_per_photo']:.0f}",
                flush=True,
            )
    result = {
        "folder": str(args.folder),
        "photos": len(photos),
        "batch_size": args.batch_size,
        "runs": rows,
    }
    write_result(args.out, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
