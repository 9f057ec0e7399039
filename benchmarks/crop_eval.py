"""Crop-to-source recall: scene-only against hybrid (scene + objects + tiles), side by side.

    python benchmarks/crop_eval.py [FOLDER] [--crops 2] [--seed 0]

FOLDER defaults to ../shared/data/photos. Two libraries are built from it with the offline CNN:
scene-only, to time it, and hybrid. The region-kind configurations are then compared on the hybrid
library by restricting the kinds a search may match, which gives the same scene vectors as a
scene-only library. Each configuration is queried with and without geometric verification.
For every indexed photo, random crops covering 3-10% and 10-30% of its area (aspect 3:4 to 4:3)
are cut from the displayed photo, saved as JPEG and used as --image queries. A query is right at
rank r if one of the top r photos is its source, or a photo of the same picture: identical bytes,
or a group that ../shared/data/MANIFEST.md names (the EXIF orientation set, copies/ beside their
stitch/ and scale/ originals, and imagededup's files of one UKBench number: ukbench00120* and
ukbench09380.*, whose base_images/ukbench09380.jpg has the same pixels as the formats_images ones).

Writes benchmarks/results/crop_eval.json.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
from bench_results import scratch_folder, write_result
from PIL import Image, ImageOps

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from searchapp.encoders.base import EncoderOptions  # noqa: E402
from searchapp.ingest.pipeline import IndexOptions  # noqa: E402
from searchapp.ingest.regions import RegionOptions, TileOptions  # noqa: E402
from searchapp.library import Library  # noqa: E402

BANDS = {"3-10%": (0.03, 0.10), "10-30%": (0.10, 0.30)}
CONFIGS = {
    "scene-only": ("scene",),
    "scene+tile": ("scene", "tile"),
    "scene+object": ("scene", "object"),
    "hybrid": ("scene", "object", "tile"),
}
VERIFIED = ("scene-only", "hybrid")
BUILDS = {"scene-only": ("scene",), "hybrid": ("scene", "object", "tile")}


def same_picture_key(path: str, root: Path, content_hash: str) -> str:
    """Group key: photos with one key are the same picture (see the module docstring)."""
    rel = os.path.relpath(path, root)
    if rel.startswith("exif/orientation/"):
        return "exif-orientation"
    matched = re.match(r"boofcv/(copies|stitch|scale)/(.+)\.jpg$", rel)
    if matched:
        return "boofcv:" + matched.group(2)
    ukbench = re.match(r"imagededup/.*ukbench(\d+)", rel)
    if ukbench:  # the manifest's ukbench00120* and ukbench09380.* groups; a number is a picture
        return "ukbench" + ukbench.group(1)
    return content_hash


def random_crop(image: Image.Image, band: tuple[float, float], rng: np.random.Generator):  # type: ignore[no-untyped-def]
    width, height = image.size
    area = rng.uniform(*band) * width * height
    aspect = np.exp(rng.uniform(np.log(3 / 4), np.log(4 / 3)))
    w = int(min(width, round(np.sqrt(area * aspect))))
    h = int(min(height, round(area / max(w, 1))))
    x0 = int(rng.integers(0, width - w + 1))
    y0 = int(rng.integers(0, height - h + 1))
    return image.crop((x0, y0, x0 + w, y0 + h)), (x0, y0, x0 + w, y0 + h)


def build(
    folder: Path, work: Path, name: str, kinds: tuple[str, ...], tiles: TileOptions
) -> tuple[Library, dict]:  # type: ignore[type-arg]
    lib = Library(work / name)
    options = IndexOptions(regions=RegionOptions(kinds=kinds, tiles=tiles))
    summary = lib.index(
        [str(folder)],
        encoder="cnn:efficientnet-lite0",
        encoder_options=EncoderOptions(allow_download=False),
        options=options,
    )
    stats = lib.stats()
    per_photo = {kind: count / stats.images for kind, count in stats.regions_by_kind.items()}
    info = {
        "images": stats.images,
        "index_seconds": round(summary.seconds, 1),
        "images_per_second": round(summary.images_per_second, 2),
        "regions_per_photo": {k: round(v, 2) for k, v in per_photo.items()},
        "bytes_per_photo": int(stats.bytes_on_disk / max(stats.images, 1)),
    }
    return lib, info


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", nargs="?", type=Path, default=ROOT.parent / "shared/data/photos")
    parser.add_argument("--crops", type=int, default=2, help="crops per photo and band")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--scales", help="tile scales, e.g. 0.5,0.333 (default: the library's)")
    parser.add_argument("--min-tile", type=int, help="smallest tile side in pixels")
    parser.add_argument("--max-tiles", type=int, help="tiles per photo at most")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/crop_eval.json")
    parser.add_argument("--details", type=Path, help="write every query's top 5 here (JSON)")
    args = parser.parse_args()
    folder = args.folder.resolve()
    work = scratch_folder("searchapp-crops-")

    tiles = TileOptions()
    if args.scales:
        tiles = replace(tiles, scales=tuple(float(s) for s in args.scales.split(",")))
    if args.min_tile:
        tiles = replace(tiles, min_tile_px=args.min_tile)
    if args.max_tiles:
        tiles = replace(tiles, max_tiles=args.max_tiles)
    libraries, infos = {}, {}
    for name, kinds in BUILDS.items():
        started = time.perf_counter()
        libraries[name], infos[name] = build(folder, work, name, kinds, tiles)
        print(f"indexed {name}: {infos[name]} ({time.perf_counter() - started:.0f} s)")
    libraries["scene-only"].close()
    hybrid = libraries["hybrid"]

    images = hybrid.catalog.all_images()
    key_of = {img.path: same_picture_key(img.path, folder, img.content_hash) for img in images}
    rng = np.random.default_rng(args.seed)
    queries = []  # (band, crop file, source key, source path)
    for index, image in enumerate(images):
        with Image.open(image.path) as opened:
            shown = ImageOps.exif_transpose(opened).convert("RGB")
        for band_name, band in BANDS.items():
            for c in range(args.crops):
                crop, _ = random_crop(shown, band, rng)
                path = work / f"q{index:04d}_{band_name[:-1]}_{c}.jpg"
                crop.save(path, quality=90)
                queries.append((band_name, str(path), key_of[image.path], image.path))

    results: dict[str, dict[str, dict[str, float]]] = {}
    details = []
    for verify in (False, True):
        for name, kinds in CONFIGS.items():
            if verify and name not in VERIFIED:
                continue  # verification costs ~0.3 s a query: only the two ends are verified
            label = name + (" verified" if verify else "")
            results[label] = {}
            for band_name in BANDS:
                band_queries = [q for q in queries if q[0] == band_name]
                top1 = top5 = by_object = 0
                for _, path, key, source in band_queries:
                    hits = hybrid.search(
                        image=path, k=5, include_self=True, kinds=kinds, verify=verify
                    ).hits
                    keys = [key_of.get(h.path) for h in hits]
                    right = bool(keys) and keys[0] == key
                    top1 += right
                    top5 += key in keys
                    by_object += right and hits[0].kind == "object"
                    details.append(
                        (label, band_name, path, source, right, [(h.path, h.kind) for h in hits])
                    )
                n = len(band_queries)
                results[label][band_name] = {
                    "recall@1": top1 / n,
                    "recall@5": top5 / n,
                    "top1_won_by_object": by_object / n,
                    "n": n,
                }
                print(label, band_name, results[label][band_name], flush=True)
    hybrid.close()

    record = {
        "folder": str(folder),
        "encoder": "cnn:efficientnet-lite0",
        "crops_per_photo_and_band": args.crops,
        "seed": args.seed,
        "tiles": {
            "scales": tiles.scales,
            "overlap": tiles.overlap,
            "min_tile_px": tiles.min_tile_px,
            "max_tiles": tiles.max_tiles,
        },
        "libraries": infos,
        "recall": results,
    }
    write_result(args.out, record)

    print(f"\n{len(images)} photos, {len(queries)} crop queries")
    for verify in ("", " verified"):
        print(f"\nrecall@1 / recall@5{verify or ' (embeddings alone)'}")
        names = [name for name in CONFIGS if name + verify in results]
        print(f"{'crop area':10s}" + "".join(f"{name:>16s}" for name in names))
        for band_name in BANDS:
            cells = [results[name + verify][band_name] for name in names]
            row = "".join(f"{c['recall@1']:.3f} / {c['recall@5']:.3f}".rjust(16) for c in cells)
            print(f"{band_name:10s}{row}")
    for name, info in infos.items():
        print(
            f"{name}: {info['regions_per_photo']} regions/photo, {info['bytes_per_photo']} "
            f"bytes/photo, {info['images_per_second']} images/s"
        )
    if args.details:
        args.details.write_text(json.dumps(details, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
