"""Query latency on a 100k-vector library, through the real search path.

    python benchmarks/query_latency.py [--vectors 100000] [--queries 40] [--clip-weights FILE]

The library is a real one (catalog + FAISS index) filled with synthetic vectors of CLIP
ViT-B-32's dimension (512), clustered and anisotropic like real embeddings. Queries go through
Library.search end to end: encode, FAISS kNN, hydrate from SQL, labels. Model load is timed apart.
Without --clip-weights a randomly initialised ViT-B-32 is written locally: latency does not depend
on the weight values. It also measures open_clip's own full-context text tower side by side with
our end-of-text truncation and checks that both give the same embedding.

Writes benchmarks/results/query_latency.json.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from bench_results import scratch_folder, write_result

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from searchapp.encoders.base import EncoderOptions  # noqa: E402
from searchapp.library import Library  # noqa: E402
from searchapp.records import (  # noqa: E402
    CatalogBatch,
    FileStat,
    ImageMeta,
    NewImage,
    RegionData,
)

ENCODER = "clip:ViT-B-32/laion2b_s34b_b79k"
PHRASES = [
    "a red bicycle by a canal",
    "dog on the beach",
    "cat",
    "a cathedral at night",
    "two people hiking in the mountains",
    "birthday cake with candles",
    "snow",
    "sunset over sea",
    "a child playing football",
    "old car",
    "kayak on a lake",
    "coffee cup on a wooden table",
]


def percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return {"p50_ms": round(statistics.median(ordered) * 1000, 2), "p95_ms": round(p95 * 1000, 2)}


def timed(fn, repeats: int) -> list[float]:  # type: ignore[no-untyped-def]
    samples = []
    for i in range(repeats):
        start = time.perf_counter()
        fn(i)
        samples.append(time.perf_counter() - start)
    return samples


def random_checkpoint(folder: Path) -> Path:
    import open_clip
    from safetensors.torch import save_file

    model = open_clip.create_model("ViT-B-32", pretrained=None)
    path = folder / "vit-b-32-random.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return path


def clustered_vectors(count: int, dim: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(256, dim))
    scales = np.exp(rng.normal(scale=0.7, size=dim))  # anisotropic: some directions dominate
    labels = rng.integers(0, len(centers), size=count)
    vectors = centers[labels] + rng.normal(size=(count, dim)) * scales * 0.6
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors.astype(np.float32)


def fill(lib: Library, vectors: np.ndarray) -> float:
    start = time.perf_counter()
    meta = ImageMeta(4000, 3000, "JPEG", 1.6e9, "exif", "Canon", "EOS")
    for offset in range(0, len(vectors), 5000):
        batch = CatalogBatch()
        for i in range(offset, min(offset + 5000, len(vectors))):
            region = RegionData("scene", (0, 0, 4000, 3000), vectors[i])
            stat = FileStat(f"/bench/{i // 1000:03d}/p{i:06d}.jpg", 1, 1)
            batch.new.append(NewImage(stat, f"h{i}", meta, [region]))
        lib.catalog.apply(batch)
    lib.rebuild_index()
    return time.perf_counter() - start


def write_query_photos(folder: Path) -> list[Path]:
    from PIL import Image
    from skimage import data

    paths = []
    for name in ("chelsea", "coffee", "astronaut", "rocket", "camera"):
        path = folder / f"{name}.jpg"
        Image.fromarray(np.asarray(getattr(data, name)())).convert("RGB").save(path)
        paths.append(path)
    return paths


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--vectors", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=40)
    parser.add_argument("--clip-weights", type=Path, help="real open_clip checkpoint (optional)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/query_latency.json")
    args = parser.parse_args()

    import torch

    work = scratch_folder("searchapp-bench-")
    checkpoint = args.clip_weights or random_checkpoint(work)
    lib = Library(work / "lib")
    options = EncoderOptions(clip_weights=checkpoint, allow_download=False)
    start = time.perf_counter()
    with lib.writing():
        encoder = lib.encoder(ENCODER, options)
    model_load = time.perf_counter() - start
    dim = encoder.identity.dim
    with lib.writing():
        fill_seconds = fill(lib, clustered_vectors(args.vectors, dim))
    lib.search(PHRASES[0], k=10)  # warm: index loaded, first-call allocations done
    photos = write_query_photos(work)

    n = args.queries
    text = timed(lambda i: lib.search(PHRASES[i % len(PHRASES)], k=10), n)
    image = timed(lambda i: lib.search(image=str(photos[i % len(photos)]), k=10), n)
    filtered = timed(lambda i: lib.search(PHRASES[i % len(PHRASES)], k=10, folder="/bench/007"), n)
    model = encoder.model  # type: ignore[attr-defined]
    tokenizer = encoder.tokenizer  # type: ignore[attr-defined]
    from searchapp.encoders.clip import encode_text_truncated

    def full_tower(i: int) -> None:
        with torch.inference_mode():
            model.encode_text(tokenizer([PHRASES[i % len(PHRASES)]]))

    def torch_truncated(i: int) -> None:
        with torch.inference_mode():
            encode_text_truncated(model, tokenizer([PHRASES[i % len(PHRASES)]]))

    text_full = timed(full_tower, n)
    text_truncated = timed(torch_truncated, n)
    text_ours = timed(lambda i: encoder.encode_text([PHRASES[i % len(PHRASES)]]), n)
    with torch.inference_mode():
        tokens = tokenizer(PHRASES)
        reference = torch.nn.functional.normalize(model.encode_text(tokens), dim=-1).numpy()
    parity = float(np.abs(encoder.encode_text(PHRASES) - reference).max())
    index = lib.indexes().get("scene", persist=False)
    query = encoder.encode_text(["cat"])
    knn = timed(lambda i: index.search(query, 10), n)

    result = {
        "torch_threads": torch.get_num_threads(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "encoder": ENCODER,
        "weights": "local random init (speed only)" if not args.clip_weights else str(checkpoint),
        "vectors": args.vectors,
        "dim": dim,
        "queries": n,
        "model_load_s": round(model_load, 2),
        "library_fill_s": round(fill_seconds, 1),
        "text_query": percentiles(text),
        "image_query": percentiles(image),
        "text_query_filtered_1pct": percentiles(filtered),
        "text_tower_open_clip_full_77": percentiles(text_full),
        "text_tower_truncated_torch": percentiles(text_truncated),
        "text_tower_ours": percentiles(text_ours),
        "text_embedding_max_abs_diff_vs_open_clip": parity,
        "faiss_knn_only": percentiles(knn),
    }
    write_result(args.out, result)
    lib.close()
    rows = [
        ("text query (end to end)", result["text_query"]),
        ("image query (end to end)", result["image_query"]),
        ("text query, filter keeps 1%", result["text_query_filtered_1pct"]),
        ("text tower, open_clip full 77 tokens", result["text_tower_open_clip_full_77"]),
        ("text tower, torch, cut at end-of-text", result["text_tower_truncated_torch"]),
        ("text tower, ours (cut + numpy BLAS)", result["text_tower_ours"]),
        ("FAISS kNN alone", result["faiss_knn_only"]),
    ]
    print(f"{args.vectors} vectors of dim {dim}; model load {model_load:.2f} s (excluded below)")
    print(f"{'':40s} {'p50 ms':>8s} {'p95 ms':>8s}")
    for name, stats in rows:
        print(f"{name:40s} {stats['p50_ms']:8.2f} {stats['p95_ms']:8.2f}")
    full_p50 = result["text_tower_open_clip_full_77"]["p50_ms"]
    ours_p50 = result["text_tower_ours"]["p50_ms"]
    print(
        f"text tower: ours {full_p50 / ours_p50:.1f}x faster than open_clip's full context; "
        f"max |difference| of normalised embeddings {parity:.2e}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
