"""Tile vectors without encoding each tile: crop-to-source recall, embeddings alone, side by side.

    python benchmarks/region_pooling.py [FOLDER] [--sides 448,672] [--pools avg,max,gem]
        [--crops 2] [--dims 0,128,256] [--limit N]

For every photo in FOLDER (default ../shared/data/photos) the tiles of the library's layout are
given vectors in several ways, in one run:
- `encoded`: each tile cropped and run through EfficientNet-Lite0 at 224 px (what `index` does
  today);
- `avg@S`, `max@S`, `gem@S`: one pass over the whole photo at S px on its shorter side, and each
  tile's vector pooled from the feature map's cells under its box, each weighted by how much of
  it the box covers: their average, their maximum, or their generalised mean (p = 3) (R-MAC's
  regions);
- `avg mixed`: each tile pooled from the pass of --sides where it is nearest 224 px.
Query crops (3-10% and 10-30% of a photo, as in crop_eval.py) are embedded whole at 224 px, as
search embeds them today, and for the pooled tiles also at the scale a tile has in the pass
(`+scaled`): the crop's shorter side resized to S/3 and S/2 (the tiles' two scales;
--query-sides), its whole map averaged. `gemcore` pools each box shrunk by half a cell a side.
A photo scores the best of its scene and tile similarities to any query vector. Objects are left
out: the tiles are what finds small crops.

With --dims, the pooled tile vectors (+scaled) are also centred and projected onto the first D
principal components, fitted on the tuning half's tiles, and stored as int8 (one scale per
vector), to see what compact storage costs.

Recall@1/recall@5 is reported over the scoring half of photo_split's split (the tuning half is
where the layout was chosen) and over all photos. Writes benchmarks/results/region_pooling.json.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from bench_results import write_result
from crop_eval import BANDS, random_crop
from photo_split import (
    half_of_group,
    photo_files,
    picture_key,
    picture_keys,
    relative,
    scene_group,
)
from PIL import Image, ImageOps

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from searchapp.encoders.base import EncoderOptions  # noqa: E402
from searchapp.encoders.cnn import EfficientNetLite0Encoder, preprocess  # noqa: E402
from searchapp.ingest.regions import TileOptions, _informative, tile_boxes  # noqa: E402


def normalise(v: np.ndarray) -> np.ndarray:
    return (v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-12)).astype(np.float32)


class Passes:
    def __init__(self) -> None:
        import torch

        torch.set_num_threads(2)
        self.encoder = EfficientNetLite0Encoder(EncoderOptions(runtime="torch"))
        self.model: Any = self.encoder.model
        self.seconds: dict[str, float] = {}

    def feature_map(self, image: Image.Image, side: int) -> np.ndarray:
        """(1280, h, w) for the image at `side` px on its shorter side, aspect kept."""
        import torch

        width, height = image.size
        scale = side / min(width, height)
        size = (max(32, round(width * scale)), max(32, round(height * scale)))
        pixels = np.asarray(image.resize(size, Image.Resampling.BICUBIC), dtype=np.float32)
        x = torch.from_numpy(((pixels - 127.0) / 128.0).transpose(2, 0, 1))[None]
        with torch.inference_mode():
            out = self.model.forward_features(x.contiguous(memory_format=torch.channels_last))
        return out[0].numpy()

    def encode(self, images: list[Image.Image]) -> np.ndarray:
        if not images:
            return np.zeros((0, 1280), np.float32)
        batch = np.stack([preprocess(image) for image in images])
        return self.encoder.encode(batch).vectors


def pool_box(
    features: np.ndarray, box: tuple[float, ...], size: tuple[int, int], how: str = "avg"
) -> np.ndarray:
    """The cells under a box (photo pixels), each weighted by the share it covers: their
    average, their maximum (cells at least half covered) or their GeM (p = 3)."""
    _, h, w = features.shape
    width, height = size
    x0, x1 = box[0] * w / width, box[2] * w / width
    y0, y1 = box[1] * h / height, box[3] * h / height
    cols = np.clip(np.minimum(np.arange(w) + 1, x1) - np.maximum(np.arange(w), x0), 0, None)
    rows = np.clip(np.minimum(np.arange(h) + 1, y1) - np.maximum(np.arange(h), y0), 0, None)
    if how == "gemcore":  # the box shrunk by half a cell a side: less of the context outside
        x0, x1, y0, y1 = x0 + 0.5, max(x0 + 1.0, x1 - 0.5), y0 + 0.5, max(y0 + 1.0, y1 - 0.5)
        cols = np.clip(np.minimum(np.arange(w) + 1, x1) - np.maximum(np.arange(w), x0), 0, None)
        rows = np.clip(np.minimum(np.arange(h) + 1, y1) - np.maximum(np.arange(h), y0), 0, None)
        how = "gem"
    if how == "max":
        inside = features[:, rows >= 0.5][:, :, cols >= 0.5]
        return inside.reshape(len(features), -1).max(axis=1)
    if how == "gem":
        cubed = np.einsum("chw,h,w->c", np.maximum(features, 0) ** 3, rows, cols)
        return np.cbrt(cubed / max(rows.sum() * cols.sum(), 1e-9))
    return np.einsum("chw,h,w->c", features, rows, cols) / max(rows.sum() * cols.sum(), 1e-9)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", nargs="?", type=Path, default=ROOT.parent / "shared/data/photos")
    parser.add_argument("--sides", default="448,672", help="pass sizes (shorter side, px)")
    parser.add_argument("--crops", type=int, default=2, help="crops per photo and band")
    parser.add_argument("--dims", default="0", help="PCA dimensions to try (0: none)")
    parser.add_argument("--pools", default="avg", help="avg, max, gem: pooling of each box")
    parser.add_argument(
        "--query-sides", default="3,2", help="+scaled queries at S/N for each N (default 3,2)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--limit", type=int, default=0, help="first N photos only (a quick try)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/region_pooling.json")
    args = parser.parse_args()
    folder = args.folder.resolve()
    sides = [int(s) for s in args.sides.split(",")]
    dims = [int(d) for d in args.dims.split(",")]
    query_fractions = [1 / float(f) for f in args.query_sides.split(",")]
    options = TileOptions()
    passes = Passes()
    rng = np.random.default_rng(args.seed)
    keys = picture_keys(folder)

    files = photo_files(folder)[: args.limit or None]
    photo_keys, halves = [], []
    scenes: list[np.ndarray] = []
    pools = args.pools.split(",")
    tiles: dict[str, list[np.ndarray]] = {"encoded": []}
    tiles.update({f"{how}@{s}": [] for s in sides for how in pools})
    if len(sides) > 1:
        tiles["avg mixed"] = []  # each tile scale from the pass where it is nearest 224 px
    queries: list[tuple[str, int, Image.Image]] = []  # band, photo number, crop
    spent = {name: 0.0 for name in tiles}
    for number, rel_name in enumerate(files):
        path = folder / rel_name
        try:
            with Image.open(path) as opened:
                shown = ImageOps.exif_transpose(opened).convert("RGB")
        except OSError:
            continue
        rel = relative(path, folder)
        photo_keys.append(keys.get(rel) or picture_key(rel))
        halves.append(half_of_group(scene_group(rel)))
        index = len(photo_keys) - 1
        decode_side = options.decode_side(224)
        if min(shown.size) > decode_side:
            factor = decode_side / min(shown.size)
            shown = shown.resize(
                (round(shown.width * factor), round(shown.height * factor)), Image.Resampling.BOX
            )
        boxes = [b for b in tile_boxes(*shown.size, options) if _informative(shown.crop(b), 6.0)]
        boxes = boxes[: options.max_tiles]
        scenes.append(passes.encode([shown])[0])
        started = time.perf_counter()
        tiles["encoded"].append(passes.encode([shown.crop(b) for b in boxes]))
        spent["encoded"] += time.perf_counter() - started
        by_side = {}
        for side in sides:
            started = time.perf_counter()
            features = by_side[side] = passes.feature_map(shown, side)
            for how in pools:
                pooled = [pool_box(features, b, shown.size, how) for b in boxes]
                tiles[f"{how}@{side}"].append(normalise(np.array(pooled).reshape(-1, 1280)))
            spent[f"{pools[0]}@{side}"] += time.perf_counter() - started
        if len(sides) > 1:
            short = min(shown.size)
            mixed = []
            for b in boxes:
                side = min(sides, key=lambda s: abs((b[2] - b[0]) / short * s - 224))
                mixed.append(pool_box(by_side[side], b, shown.size))
            tiles["avg mixed"].append(normalise(np.array(mixed).reshape(-1, 1280)))
        for band_name, band in BANDS.items():
            for _ in range(args.crops):
                crop, _ = random_crop(shown, band, rng)
                queries.append((band_name, index, crop))
        if number % 20 == 0:
            print(f"{number}/{len(files)} photos", flush=True)

    # query vectors: whole at 224 (as search does), and at each pass's tile scales
    query_224 = passes.encode([crop for _, _, crop in queries])
    scaled: dict[int, np.ndarray] = {}
    for side in sides:
        rows = []
        for _, _, crop in queries:
            vectors = []
            for tile_side in (round(side * f) for f in query_fractions):
                features = passes.feature_map(crop, max(tile_side, 32))
                vectors.append(normalise(features.mean(axis=(1, 2))))
            rows.append(np.stack(vectors))
        scaled[side] = np.stack(rows)  # (queries, len(query_fractions), 1280)

    scene_matrix = np.stack(scenes)
    owner = np.concatenate([np.full(len(t), i) for i, t in enumerate(tiles["encoded"])])
    results: dict[str, Any] = {}

    def score(
        name: str, tile_matrix: np.ndarray, scene_queries: np.ndarray, tile_queries: np.ndarray
    ) -> None:
        """scene_queries: (q, 1280) against the scenes; tile_queries: (q, m, d) against the
        tiles, the best of the m vectors counting."""
        best = scene_queries @ scene_matrix.T  # (q, photos)
        tile_sims = np.max(np.einsum("qmd,td->qmt", tile_queries, tile_matrix), axis=1)
        per_photo = np.full((len(queries), len(scene_matrix)), -np.inf, np.float32)
        np.maximum.at(per_photo.T, owner, tile_sims.T)
        best = np.maximum(best, per_photo)
        order = np.argsort(-best, axis=1)[:, :5]
        row: dict[str, Any] = {}
        for scope in ("scoring", "all"):
            for band_name in BANDS:
                chosen = [
                    q
                    for q, (b, idx, _) in enumerate(queries)
                    if b == band_name and (scope == "all" or halves[idx] == scope)
                ]
                key = [photo_keys[queries[q][1]] for q in chosen]
                right = [photo_keys[order[q][0]] == k for q, k in zip(chosen, key, strict=True)]
                five = [
                    k in {photo_keys[p] for p in order[q]} for q, k in zip(chosen, key, strict=True)
                ]
                row[f"{scope} {band_name}"] = f"{np.mean(right):.3f}/{np.mean(five):.3f}"
                row[f"{scope} n"] = row.get(f"{scope} n", 0) + len(chosen)
        results[name] = row
        shown = "  ".join(f"{k} {v}" for k, v in row.items() if " n" not in k)
        print(f"{name:32s}{shown}", flush=True)

    for name, vecs in tiles.items():
        matrix = np.concatenate(vecs)
        score(name, matrix, query_224, query_224[:, None, :])
        if "@" in name:
            side = int(name.split("@")[1])
            both = np.concatenate([query_224[:, None, :], scaled[side]], axis=1)
            score(name + "+scaled", matrix, query_224, both)
            for dim in dims:
                if not dim:
                    continue
                pairs = zip(vecs, halves, strict=True)
                tuning = np.concatenate([v for v, half in pairs if half == "tuning"])
                mean = tuning.mean(axis=0)
                _, _, vt = np.linalg.svd(tuning - mean, full_matrices=False)
                basis = vt[: min(dim, len(vt))]
                dim = len(basis)
                projected = (matrix - mean) @ basis.T
                scale = np.abs(projected).max(axis=1, keepdims=True) / 127
                stored = np.round(projected / scale).astype(np.int8).astype(np.float32) * scale
                q_all = (both.reshape(-1, 1280) - mean) @ basis.T
                q_tiles = normalise(q_all).reshape(len(queries), -1, dim)
                score(f"{name}+scaled pca{dim} int8", normalise(stored), query_224, q_tiles)

    for name, seconds in spent.items():
        print(f"{name}: {1000 * seconds / len(photo_keys):.0f} ms per photo (tile vectors only)")
    record = {
        "folder": str(folder),
        "photos": len(photo_keys),
        "queries": len(queries),
        "recall@1/recall@5": results,
        "ms_per_photo": {n: round(1000 * s / len(photo_keys)) for n, s in spent.items() if s},
    }
    write_result(args.out, record)
    return 0


if __name__ == "__main__":
    sys.exit(main())
