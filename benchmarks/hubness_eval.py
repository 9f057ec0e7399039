"""Should a CNN library centre its vectors? Hubness, precision, crop recall and duplicates, raw and
centred, on a library of the shared photos.

    searchapp index ../shared/data/photos --library /tmp/shared-lib
    python benchmarks/hubness_eval.py /tmp/shared-lib [--photos ../shared/data/photos]

EfficientNet's pooled features are non-negative (ReLU6 before the pooling), so every vector leans
one way and a few photos sit near everything (hubness). Centring takes a mean out before
normalising again. Two means are compared with the vectors as stored:
- the library's own mean (changes as the library grows);
- a fixed one from the network: the expected ReLU6 output of the head's BatchNorm, per channel
  E[clip(Z, 0, 6)] with Z ~ N(beta, gamma^2), in the direction the stored unit vectors share.

Measured, each raw and centred:
1. precision@1 and @5 of scene search among labelled groups: the pixabay classes, the BoofCV
   triplet, stitch, scale and copies scenes, the Lund and Berlin places, the EXIF orientation
   and HDR sets, and the UKBench groups of imagededup's data (every photo with another in its
   group is a query);
2. crop-to-source recall@1, embeddings alone, for 2 crops per photo in each band (3-10%, 10-30%
   of the area), with the scene vectors and with scenes and tiles (tiles centred on their mean);
3. duplicates: how well the cosine of two scene vectors separates true copy pairs (the BoofCV
   copies and their namesakes, the UKBench groups, the orientation set) from every other pair:
   ROC AUC, and the other pairs above the cosine that keeps 95% of the copy pairs;
4. the health figures (hubness as the skew of 10-occurrence, mean cosine).

Writes benchmarks/results/hubness_eval.json.
"""

from __future__ import annotations

import argparse
import collections
import math
import re
import sys
from pathlib import Path
from typing import Any

import numpy as np
from bench_results import write_result

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from searchapp.encoders.base import EncoderOptions  # noqa: E402
from searchapp.encoders.cnn import EfficientNetLite0Encoder  # noqa: E402
from searchapp.explore.health import measure  # noqa: E402
from searchapp.library import Library  # noqa: E402

BANDS = {"3-10%": (0.03, 0.10), "10-30%": (0.10, 0.30)}


def search_group(relative: str) -> str | None:
    """The labelled group a photo belongs to for precision@k, by its path under the photos."""
    rules = (
        (r"boofcv/pixabay/([a-z]+)\d+\.", "pixabay:{}"),
        (r"boofcv/(?:triple|stitch|copies)/(.+?)_0\d\.", "scene:{}"),
        (r"boofcv/scale/([a-z]+)", "scene:{}"),
        (r"boofcv/copies/([a-z]+)\.", "scene:{}"),
        (r"opensfm/(lund|berlin)/", "place:{}"),
        (r"exif/(orientation)/", "exif:{}"),
        (r"exif/hdr/(\w+?)_hdr", "hdr:{}"),
        (r".*(ukbench00120)", "ukbench:{}"),
        (r"imagededup/formats_images/(ukbench09380)\.", "ukbench:{}"),
    )
    for pattern, name in rules:
        found = re.match(pattern, relative)
        if found:
            return name.format(found.group(1))
    return None


def copy_group(relative: str) -> str | None:
    """The group of true copies a photo belongs to, for the duplicate pairs."""
    found = re.match(r"boofcv/(?:stitch|scale|copies)/(.+?)\.jpg$", relative)
    if found:
        return "copy:" + found.group(1)
    if relative.startswith("exif/orientation/"):
        return "orientation"
    found = re.match(r"imagededup/.*?(ukbench\d+)(?:_\w+)?\.", relative)
    return "ukbench:" + found.group(1) if found else None


def unit(rows: np.ndarray) -> np.ndarray:
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def batchnorm_mean(encoder: Any) -> np.ndarray:
    """The expected pooled feature of EfficientNet-Lite0: ReLU6 of the head's BatchNorm output."""

    def cdf(x: np.ndarray) -> np.ndarray:
        return 0.5 * (1 + np.vectorize(math.erf)(x / math.sqrt(2)))

    def pdf(x: np.ndarray) -> np.ndarray:
        return np.exp(-(x**2) / 2) / math.sqrt(2 * math.pi)

    head = encoder.model.bn2
    beta = head.bias.detach().numpy().astype(np.float64)
    spread = np.abs(head.weight.detach().numpy().astype(np.float64))
    low, high = -beta / spread, (6 - beta) / spread
    inside = cdf(high) - cdf(low)
    return beta * inside + spread * (pdf(low) - pdf(high)) + 6 * (1 - cdf(high))


def precision(vectors: np.ndarray, groups: list[str | None]) -> dict[str, float]:
    counts = collections.Counter(g for g in groups if g)
    queries = [i for i, g in enumerate(groups) if g and counts[g] > 1]
    sims = unit(vectors) @ unit(vectors).T
    np.fill_diagonal(sims, -9)
    at1, at5 = [], []
    for i in queries:
        order = np.argsort(-sims[i])[:5]
        same = [groups[j] == groups[i] for j in order]
        at1.append(same[0])
        at5.append(float(np.mean(same[: min(5, counts[groups[i]] - 1)])))  # type: ignore[index]
    return {
        "p@1": round(float(np.mean(at1)), 4),
        "p@5": round(float(np.mean(at5)), 4),
        "queries": len(queries),
    }


def duplicate_separation(vectors: np.ndarray, groups: list[str | None]) -> dict[str, float]:
    from sklearn.metrics import roc_auc_score

    counts = collections.Counter(g for g in groups if g)
    upper = np.triu_indices(len(vectors), 1)
    same = np.array(
        [
            groups[a] is not None and groups[a] == groups[b] and counts[groups[a]] > 1
            for a, b in zip(*upper, strict=True)
        ]
    )
    cosines = (unit(vectors) @ unit(vectors).T)[upper]
    keep95 = float(np.quantile(cosines[same], 0.05))
    return {
        "auc": round(float(roc_auc_score(same, cosines)), 4),
        "cosine_keeping_95pct_of_copy_pairs": round(keep95, 3),
        "other_pairs_above_it": int((cosines[~same] >= keep95).sum()),
        "copy_pairs": int(same.sum()),
    }


def crops(paths: list[str], seed: int = 0) -> dict[str, list[tuple[int, Any]]]:
    from PIL import Image, ImageOps

    rng = np.random.default_rng(seed)
    made: dict[str, list[tuple[int, Any]]] = {band: [] for band in BANDS}
    for row, path in enumerate(paths):
        try:
            with Image.open(path) as image:
                photo = ImageOps.exif_transpose(image).convert("RGB")
        except Exception:  # an unreadable sample file is simply not a query
            continue
        width, height = photo.size
        if min(width, height) < 200:
            continue
        for band, (low, high) in BANDS.items():
            for _ in range(2):
                area = rng.uniform(low, high) * width * height
                aspect = rng.uniform(0.75, 1.33)
                w = int(min(width, np.sqrt(area * aspect)))
                h = int(min(height, area / max(w, 1)))
                x0, y0 = rng.integers(0, width - w + 1), rng.integers(0, height - h + 1)
                box = (int(x0), int(y0), int(x0) + w, int(y0) + h)
                made[band].append((row, photo.crop(box)))
    return made


def crop_recall(lib: Library, encoder: Any, scenes: Any, centres: dict[str, Any]) -> dict[str, Any]:
    dim = lib.require_identity().dim
    tiles = lib.catalog.kind_vectors("tile", dim)
    row_of = {int(image): row for row, image in enumerate(scenes.image_ids)}
    owners = np.array([row_of[int(image)] for image in tiles.image_ids])
    paths = lib._paths(scenes.image_ids)
    made = crops([paths[int(i)] for i in scenes.image_ids])
    result: dict[str, Any] = {}
    for band, items in made.items():
        arrays = np.stack([encoder.preprocess(image) for _, image in items])
        queries = np.vstack(
            [encoder.encode(arrays[s : s + 32]).vectors for s in range(0, len(arrays), 32)]
        )
        truth = np.array([row for row, _ in items])
        for name, (scene_mean, tile_mean) in centres.items():
            scene_scores = unit(queries - scene_mean) @ unit(scenes.vectors - scene_mean).T
            projected = lib.catalog.project_query("tile", queries)
            tile_scores = unit(projected - tile_mean) @ unit(tiles.vectors - tile_mean).T
            best_tile = np.full(scene_scores.shape, -9.0)
            for row in range(len(scenes.vectors)):
                mine = owners == row
                if mine.any():
                    best_tile[:, row] = tile_scores[:, mine].max(axis=1)
            both = np.maximum(scene_scores, best_tile)
            result.setdefault(name, {})[band] = {
                "scene": round(float(np.mean(scene_scores.argmax(axis=1) == truth)), 4),
                "scene+tile": round(float(np.mean(both.argmax(axis=1) == truth)), 4),
                "crops": len(items),
            }
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("library", type=Path)
    parser.add_argument("--photos", type=Path, default=ROOT.parent / "shared/data/photos")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/hubness_eval.json")
    args = parser.parse_args()
    photos = str(args.photos.resolve()) + "/"
    with Library(args.library) as lib:
        scenes = lib.kind_vectors("scene")
        paths = lib._paths(scenes.image_ids)
        relative = [paths[int(i)].removeprefix(photos) for i in scenes.image_ids]
        encoder = lib.encoder()
        network = EfficientNetLite0Encoder(EncoderOptions(runtime="torch"))  # with its layers
        direction = unit(batchnorm_mean(network)[None])[0]
        lean = float((scenes.vectors @ direction).mean())
        tiles = lib.kind_vectors("tile")
        centres = {
            "raw": (0.0, 0.0),
            "library mean": (scenes.vectors.mean(axis=0), tiles.vectors.mean(axis=0)),
        }
        variants = {
            "raw": scenes.vectors,
            "library mean": scenes.vectors - scenes.vectors.mean(axis=0),
            "batchnorm mean": scenes.vectors - lean * direction,
        }
        search_groups = [search_group(r) for r in relative]
        copies = [copy_group(r) for r in relative]
        result: dict[str, Any] = {
            "photos": len(relative),
            "lean_on_batchnorm_direction": round(lean, 3),
        }
        for name, vectors in variants.items():
            figures = measure(unit(vectors))
            result[name] = {
                "precision": precision(vectors, search_groups),
                "duplicates": duplicate_separation(vectors, copies),
                "hubness": round(figures.hubness or 0.0, 3),
                "mean_cosine": round(figures.mean_cosine or 0.0, 3),
            }
            print(name, result[name], flush=True)
        result["crop_recall_embeddings_alone"] = crop_recall(lib, encoder, scenes, centres)
        print(result["crop_recall_embeddings_alone"])
    write_result(args.out, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
