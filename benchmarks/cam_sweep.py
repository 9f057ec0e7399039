"""How the CAM detector's thresholds were chosen: a sweep on real photos.

    python benchmarks/cam_sweep.py [FOLDER] [--thresholds 0.2,0.35,0.5] [--pads 0,0.1,0.25]
                                   [--half tuning]

For each setting, FOLDER (default ../shared/data/photos) is indexed with scene and object regions
only, and queried with one random crop of 10-30% and one of 3-10% of each photo (seeded, as in
crop_eval.py), without geometric verification, so recall@1 measures the object embeddings alone.
Only the photos of photo_split's tuning half are queried (--half): a sweep that chooses defaults
must leave the scoring half unseen. The whole folder stays indexed, as distractors.
It also reports objects per photo, and the IoU of the best box with a hand-drawn box around the
cup in scikit-image's coffee photo. Writes benchmarks/results/cam_sweep.json.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from bench_results import scratch_folder, write_result
from PIL import Image, ImageOps

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from crop_eval import BANDS, random_crop  # noqa: E402
from photo_split import HALVES, half_of, picture_key, picture_keys, relative  # noqa: E402

import searchapp.detect.cam as cam  # noqa: E402
from searchapp.detect.base import DetectorOptions, box_iou  # noqa: E402
from searchapp.encoders.base import EncoderOptions  # noqa: E402
from searchapp.ingest.pipeline import IndexOptions  # noqa: E402
from searchapp.ingest.regions import RegionOptions  # noqa: E402
from searchapp.library import Library  # noqa: E402

CUP = (165, 15, 415, 245)  # as in tests/unit/test_detect.py


def coffee_iou() -> float:
    from skimage import data

    detections = cam.CamDetector(DetectorOptions()).detect([Image.fromarray(data.coffee())])[0]
    return round(box_iou(detections[0].bbox, CUP), 3) if detections else 0.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", nargs="?", type=Path, default=ROOT.parent / "shared/data/photos")
    parser.add_argument("--thresholds", default="0.2,0.35,0.5")
    parser.add_argument("--pads", default="0,0.1,0.25")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--half", choices=(*HALVES, "all"), default="tuning", help="whose photos are queried"
    )
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/cam_sweep.json")
    args = parser.parse_args()
    folder = args.folder.resolve()
    work = scratch_folder("searchapp-cam-")
    keys = picture_keys(folder)
    options = IndexOptions(regions=RegionOptions(kinds=("scene", "object")))
    encoder_options = EncoderOptions(allow_download=False)

    queries: list[tuple[str, str, str]] = []
    rows = []
    settings = [
        (float(t), float(p)) for t in args.thresholds.split(",") for p in args.pads.split(",")
    ]
    for number, (threshold, pad) in enumerate(settings):
        cam.THRESHOLD, cam.PAD = threshold, pad
        lib = Library(work / f"lib{number}")
        started = time.perf_counter()
        lib.index(
            [str(folder)],
            encoder="cnn:efficientnet-lite0",
            encoder_options=encoder_options,
            options=options,
        )
        seconds = time.perf_counter() - started
        images = lib.catalog.all_images()
        rel_of = {i.path: relative(i.path, folder) for i in images}
        key_of = {path: keys.get(rel) or picture_key(rel) for path, rel in rel_of.items()}
        if not queries:  # the same crops for every setting
            rng = np.random.default_rng(args.seed)
            for index, image in enumerate(images):
                if args.half != "all" and half_of(rel_of[image.path]) != args.half:
                    continue
                with Image.open(image.path) as opened:
                    shown = ImageOps.exif_transpose(opened).convert("RGB")
                for band_name, band in BANDS.items():
                    crop, _ = random_crop(shown, band, rng)
                    path = work / f"q{index:04d}_{band_name[:-1]}.jpg"
                    crop.save(path, quality=90)
                    queries.append((band_name, str(path), key_of[image.path]))
        row: dict[str, object] = {"threshold": threshold, "pad": pad}
        for kinds, name in ((("scene",), "scene-only"), (("scene", "object"), "scene+object")):
            for band_name in BANDS:
                band = [q for q in queries if q[0] == band_name]
                right = sum(
                    key_of.get(lib.search(image=p, k=1, kinds=kinds, verify=False)[0].path) == key
                    for _, p, key in band
                )
                row[f"{name} {band_name}"] = round(right / len(band), 3)
        stats = lib.stats()
        row["objects_per_photo"] = round(stats.regions_by_kind.get("object", 0) / stats.images, 2)
        row["coffee_cup_iou"] = coffee_iou()
        row["index_seconds"] = round(seconds, 1)
        lib.close()
        rows.append(row)
        print(row, flush=True)

    write_result(args.out, {"folder": str(folder), "half": args.half, "settings": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
