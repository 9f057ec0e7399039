"""Crop-to-source recall: scene-only against hybrid (scene + objects + tiles), side by side.

    python benchmarks/crop_eval.py [FOLDER] [--crops 2] [--seed 0] [--details FILE]
        [--region-vectors crops|pooled] [--encoder cnn:efficientnet-lite0] [--clip-weights FILE]

FOLDER defaults to ../shared/data/photos. Two libraries are built from it, with the offline CNN
unless --encoder says otherwise: scene-only, to time it, and hybrid. A CLIP library keeps its
tiles in the CNN's space; `--encoder clip:ViT-B-32` without --clip-weights runs a randomly
initialised ViT-B-32 (no download here), whose scene and object rankings are then noise: what
is measured is how much the tiles, ranked across the two spaces, find despite it.

The region-kind configurations are then compared on the hybrid
library by restricting the kinds a search may match, which gives the same scene vectors as a
scene-only library. Each configuration is queried with and without geometric verification.
For every indexed photo, random crops covering 3-10% and 10-30% of its area (aspect 3:4 to 4:3)
are cut from the displayed photo, saved as JPEG and used as --image queries. A query is right at
rank r if one of the top r photos is its source, or the same picture (photo_split.picture_keys:
identical bytes, copies/ beside their namesakes, one UKBench number, an HDR pair; the EXIF
orientation files are two pictures, a landscape and a portrait shot).

Recall is reported over all queries and over each half of photo_split's split by scene: the
tile layout, detector and verification were tuned on this folder, so the scoring half is the
honest figure. Every miss is counted by what came first instead: another shot of the same scene,
a pixabay photo of the same class, another scene, or nothing.

Writes benchmarks/results/crop_eval.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path

import numpy as np
from bench_results import random_vit_b32, scratch_folder, write_result
from photo_split import (
    HALVES,
    half_of_group,
    picture_key,
    picture_keys,
    pixabay_class,
    print_split,
    relative,
    scene_group,
    split_sizes,
)
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
    "tile-only": ("tile",),  # in a CLIP library: the CNN's space alone, no ranking across two
}
VERIFIED = ("scene-only", "hybrid")
BUILDS = {"scene-only": ("scene",), "hybrid": ("scene", "object", "tile")}


SCOPES = ("all", *HALVES)
MISS_KINDS = ("same scene", "same class", "other scene", "no hit")
MISS_WORDS = {
    "same scene": "another shot of the same scene",
    "same class": "a pixabay photo of the same class",
    "other scene": "another scene",
    "no hit": "nothing",
}


def miss_kind(top_rel: str | None, source_rel: str) -> str:
    """What a wrong top photo is to the query's source."""
    if top_rel is None:
        return "no hit"
    if scene_group(top_rel) == scene_group(source_rel):
        return "same scene"
    if pixabay_class(top_rel) and pixabay_class(top_rel) == pixabay_class(source_rel):
        return "same class"
    return "other scene"


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
    folder: Path,
    work: Path,
    name: str,
    kinds: tuple[str, ...],
    tiles: TileOptions,
    vectors: str,
    encoder: str,
    clip_weights: str | None,
) -> tuple[Library, dict]:  # type: ignore[type-arg]
    lib = Library(work / name)
    options = IndexOptions(regions=RegionOptions(kinds=kinds, tiles=tiles, vectors=vectors))
    weights = Path(clip_weights) if clip_weights else None
    summary = lib.index(
        [str(folder)],
        encoder=encoder,
        encoder_options=EncoderOptions(allow_download=False, clip_weights=weights),
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
    parser.add_argument(
        "--region-vectors",
        dest="vectors",
        choices=("crops", "pooled"),
        default="crops",
        help="how the hybrid library embeds its objects and tiles (index --region-vectors)",
    )
    parser.add_argument("--encoder", default="cnn:efficientnet-lite0")
    parser.add_argument("--clip-weights", help="a CLIP checkpoint (clip:ViT-B-32: random)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/crop_eval.json")
    parser.add_argument("--details", type=Path, help="write every query's top 5 here (JSON)")
    args = parser.parse_args()
    folder = args.folder.resolve()
    work = scratch_folder("searchapp-crops-")
    clip_weights = args.clip_weights
    if args.encoder == "clip:ViT-B-32" and not clip_weights:
        clip_weights = random_vit_b32(work)

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
        libraries[name], infos[name] = build(
            folder, work, name, kinds, tiles, args.vectors, args.encoder, clip_weights
        )
        print(f"indexed {name}: {infos[name]} ({time.perf_counter() - started:.0f} s)")
    libraries["scene-only"].close()
    hybrid = libraries["hybrid"]

    images = hybrid.catalog.all_images()
    keys = picture_keys(folder)
    rel_of = {img.path: relative(img.path, folder) for img in images}
    key_of = {path: keys.get(rel) or picture_key(rel) for path, rel in rel_of.items()}
    half_of = {path: half_of_group(scene_group(rel)) for path, rel in rel_of.items()}
    print_split(list(rel_of.values()), "indexed photos")
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

    # tallies[label][scope][band]: right at 1 and 5, wins by objects, and what each miss was
    tallies: dict[str, dict[str, dict[str, Counter[str]]]] = {}
    details = []
    for verify in (False, True):
        for name, kinds in CONFIGS.items():
            if verify and name not in VERIFIED:
                continue  # verification costs ~0.3 s a query: only the two ends are verified
            label = name + (" verified" if verify else "")
            tallies[label] = {scope: {band: Counter() for band in BANDS} for scope in SCOPES}
            for band_name, path, key, source in queries:
                hits = hybrid.search(
                    image=path, k=5, include_self=True, kinds=kinds, verify=verify
                ).hits
                keys_found = [key_of.get(h.path) for h in hits]
                right = bool(keys_found) and keys_found[0] == key
                outcome = Counter(n=1, top1=right, top5=key in keys_found)
                outcome["by_object"] = right and hits[0].kind == "object"
                kind = None
                if not right:
                    top_rel = rel_of.get(hits[0].path, hits[0].path) if hits else None
                    kind = miss_kind(top_rel, rel_of[source])
                    outcome["misses"] = 1
                    outcome["miss: " + kind] = 1
                    outcome["miss, source in top 5"] = key in keys_found
                    if hits and hits[0].verified:
                        outcome["miss, top confirmed by " + hits[0].verified] = 1
                for scope in ("all", half_of[source]):
                    tallies[label][scope][band_name].update(outcome)
                details.append(
                    (
                        label,
                        band_name,
                        path,
                        source,
                        right,
                        [(h.path, h.kind) for h in hits],
                        half_of[source],
                        kind,
                    )
                )
            for scope in SCOPES:
                print(label, scope, {b: recall_row(t) for b, t in tallies[label][scope].items()})
    hybrid.close()

    recall = {
        scope: {
            label: {band: recall_row(tally) for band, tally in by_scope[scope].items()}
            for label, by_scope in tallies.items()
        }
        for scope in SCOPES
    }
    misses = {
        scope: {
            label: {band: miss_row(tally) for band, tally in by_scope[scope].items()}
            for label, by_scope in tallies.items()
        }
        for scope in SCOPES
    }
    record = {
        "folder": str(folder),
        "encoder": args.encoder,
        "clip_weights": "random ViT-B-32" if clip_weights and not args.clip_weights else None,
        "tiles_encoder": hybrid.tile_encoder_name(),
        "crops_per_photo_and_band": args.crops,
        "seed": args.seed,
        "region_vectors": args.vectors,
        "tiles": {
            "scales": tiles.scales,
            "overlap": tiles.overlap,
            "min_tile_px": tiles.min_tile_px,
            "max_tiles": tiles.max_tiles,
        },
        "libraries": infos,
        "split": split_sizes(list(rel_of.values())),
        "recall": recall["all"],
        "recall_by_half": {half: recall[half] for half in HALVES},
        "misses": misses,
    }
    write_result(args.out, record)

    print(f"\n{len(images)} photos, {len(queries)} crop queries")
    for scope in ("all", "scoring", "tuning"):
        print_recall(recall[scope], scope)
    for scope in ("all", "scoring", "tuning"):
        print_misses(misses[scope], scope)
    for name, info in infos.items():
        print(
            f"{name}: {info['regions_per_photo']} regions/photo, {info['bytes_per_photo']} "
            f"bytes/photo, {info['images_per_second']} images/s"
        )
    if args.details:
        args.details.write_text(json.dumps(details, indent=1))
    return 0


def recall_row(tally: Counter[str]) -> dict[str, float]:
    n = max(tally["n"], 1)
    return {
        "recall@1": tally["top1"] / n,
        "recall@5": tally["top5"] / n,
        "top1_won_by_object": tally["by_object"] / n,
        "n": tally["n"],
    }


def miss_row(tally: Counter[str]) -> dict[str, int]:
    """How many queries missed at rank 1, and by what (counts, not fractions)."""
    row = {"misses": tally["misses"]}
    row.update({kind: tally["miss: " + kind] for kind in MISS_KINDS})
    row["source in top 5"] = tally["miss, source in top 5"]
    for verdict in ("pixels", "geometry"):
        row["top confirmed by " + verdict] = tally["miss, top confirmed by " + verdict]
    return row


def print_recall(recall: dict[str, dict[str, dict[str, float]]], scope: str) -> None:
    n = sum(row["n"] for row in next(iter(recall.values())).values())
    for verify in ("", " verified"):
        how = verify or " (embeddings alone)"
        print(f"\nrecall@1 / recall@5{how}, {scope} ({n} queries)")
        names = [name for name in CONFIGS if name + verify in recall]
        print(f"{'crop area':10s}" + "".join(f"{name:>16s}" for name in names))
        for band_name in BANDS:
            cells = [recall[name + verify][band_name] for name in names]
            row = "".join(f"{c['recall@1']:.3f} / {c['recall@5']:.3f}".rjust(16) for c in cells)
            print(f"{band_name:10s}{row}")


def print_misses(misses: dict[str, dict[str, dict[str, int]]], scope: str) -> None:
    print(f"\nmisses at rank 1, {scope}: what came first instead")
    for label, by_band in misses.items():
        for band_name, row in by_band.items():
            kinds = ", ".join(f"{row[k]} {MISS_WORDS[k]}" for k in MISS_KINDS if row[k])
            confirmed = ", ".join(
                f"{row['top confirmed by ' + v]} by {v}"
                for v in ("pixels", "geometry")
                if row["top confirmed by " + v]
            )
            print(
                f"  {label:<20} {band_name:<7} {row['misses']:>3} missed: {kinds or '-'}; "
                f"source in top 5: {row['source in top 5']}"
                + (f"; wrong top confirmed {confirmed}" if confirmed else "")
            )


if __name__ == "__main__":
    sys.exit(main())
