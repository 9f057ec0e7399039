"""Query latency on a 100k-vector library, through the real search path, part by part.

    python benchmarks/query_latency.py [--vectors 100000] [--queries 40] [--clip-weights FILE]
                                       [--files FOLDER]

The library is a real one (catalog + FAISS index, the index searchapp builds for its size) filled
with synthetic vectors of CLIP ViT-B-32's dimension (512), clustered and anisotropic like real
embeddings. Every row's file is a symlink to one of the real 12 MP phone photos of --files
(default ../shared/data/phone12mp), so an image query's pixel check decodes and matches real
files. Queries go through searchapp.query.search.search, as `searchapp search` calls it, in a
library opened as a query process opens it (the quick-start encoder: CLIP's saved text tower and
its visual tower's ONNX export). Without --clip-weights a randomly initialised ViT-B-32 is
written locally: latency does not depend on the weight values.

Each query's time is split into parts by timers wrapped around the calls search() makes: loading
the encoder, decoding the query image, encoding (preprocessing and the model), FAISS, SQL
(hydrating hits, labels, lookups), aggregating regions to photos, the pixel check (verify.py,
image queries only) and what falls in none of them ("other": validation, combining vectors,
Python between the calls). Parts are means in ms and add up to the mean total; p50 and p95 are
of the total. Image queries are timed with the pixel check (the default) and without
(`--no-verify`). Which candidates the check confirms does not matter for the time: it decodes and
matches each of the top 10 either way.

It also measures open_clip's own full-context text tower side by side with our end-of-text
truncation and checks that both give the same embedding, and FAISS alone.

Writes benchmarks/results/query_latency.json.
"""

from __future__ import annotations

import argparse
import functools
import os
import platform
import statistics
import sys
import threading
import time
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

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

PHONE12MP = ROOT.parent / "shared" / "data" / "phone12mp"  # 43 real 4032x3024 phone JPEGs
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
ROWS_PER_FOLDER = 1000

# ---- the parts of a search ---------------------------------------------------------------------

PARTS = {
    "load": "load the encoder",
    "index": "get the FAISS index (opened once)",
    "decode": "decode the query image",
    "encode": "encode the query (preprocess + model)",
    "faiss": "FAISS search",
    "sql": "SQL (hydrate hits, labels, lookups)",
    "aggregate": "aggregate regions to photos",
    "verify": "pixel check of the top 10 (decode + match)",
    "other": "other (validation, combining, Python between the calls)",
}
CATALOG_SKIPS = {"apply", "close"}


class SearchParts:
    """Where the time of searchapp.query.search.search goes, by wrapping the calls it makes.

    The wrappers are installed once, on the classes and modules the search path uses (so they
    also time a search made inside `searchapp.cli.main`), and count only while `recording` is
    set, only on the thread that searches, and only the outermost wrapped call: a catalog read
    made while the encoder loads counts as loading the encoder. search() itself is wrapped too:
    `searches` holds each call's total and parts, whose remainder is "other"."""

    def __init__(self) -> None:
        self.recording = False
        self.searches: list[dict[str, float]] = []
        self._current: dict[str, float] | None = None
        self._busy = False
        self._thread = threading.get_ident()

    def install(self) -> None:
        from searchapp.library import Library as LibraryClass
        from searchapp.query import query_vectors
        from searchapp.query import search as search_module
        from searchapp.store.catalog import Catalog
        from searchapp.vectors import faiss_index

        self._wrap_encoder_loading(LibraryClass)
        self._wrap(query_vectors, "load_query", "decode")
        self._wrap(search_module, "aggregate", "aggregate")
        self._wrap(search_module, "verified_first", "verify")
        self._wrap(faiss_index, "search", "faiss")
        self._wrap(faiss_index.IndexStore, "get", "index")
        reads = {
            name
            for klass in Catalog.__mro__
            for name, value in vars(klass).items()
            if isinstance(value, types.FunctionType) and not name.startswith("_")
        }
        for name in sorted(reads - CATALOG_SKIPS):  # every read of the catalog is SQL
            self._wrap(Catalog, name, "sql")
        self._wrap_search(search_module)

    def _timed(self, original: Callable[..., Any], part: str) -> Callable[..., Any]:
        parts = self

        @functools.wraps(original)
        def timed(*args: Any, **kwargs: Any) -> Any:
            current = parts._current
            if current is None or parts._busy or threading.get_ident() != parts._thread:
                return original(*args, **kwargs)
            parts._busy = True
            started = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                current[part] += time.perf_counter() - started
                parts._busy = False

        return timed

    def _wrap(self, owner: Any, name: str, part: str) -> None:
        setattr(owner, name, self._timed(getattr(owner, name), part))

    def _wrap_encoder_loading(self, library_class: Any) -> None:
        parts = self
        load = self._timed(library_class.encoder, "load")

        @functools.wraps(library_class.encoder)
        def encoder(library: Any, *args: Any, **kwargs: Any) -> Any:
            found = load(library, *args, **kwargs)
            if not getattr(found, "_bench_timed", False):  # time the encoder's own calls
                for name in ("preprocess", "encode", "encode_text"):
                    if hasattr(found, name):
                        setattr(found, name, parts._timed(getattr(found, name), "encode"))
                found._bench_timed = True
            return found

        library_class.encoder = encoder

    def _wrap_search(self, search_module: Any) -> None:
        parts, original = self, search_module.search

        @functools.wraps(original)
        def search(*args: Any, **kwargs: Any) -> Any:
            if not parts.recording or threading.get_ident() != parts._thread:
                return original(*args, **kwargs)
            parts._current = current = dict.fromkeys(PARTS, 0.0)
            started = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                total = time.perf_counter() - started
                parts._current = None
                current["other"] = total - sum(current.values())
                current["total"] = total
                parts.searches.append(current)

        search_module.search = search

    def take(self) -> list[dict[str, float]]:
        taken, self.searches = self.searches, []
        return taken


def summary(searches: list[dict[str, float]]) -> dict[str, Any]:
    """Mean ms of each part (they add up to the mean total), and p50/p95 of the total."""
    totals = [s["total"] for s in searches]
    means = {part: round(statistics.fmean(s[part] for s in searches) * 1000, 2) for part in PARTS}
    return {
        **percentiles(totals),
        "mean_ms": round(statistics.fmean(totals) * 1000, 2),
        "parts_mean_ms": means,
    }


# ---- the library -------------------------------------------------------------------------------


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


def real_photos(folder: Path) -> list[Path]:
    photos = sorted(p for p in folder.iterdir() if p.suffix.lower() in {".jpg", ".jpeg"})
    if not photos:
        raise SystemExit(f"no JPEGs in {folder} (see ../shared/data/MANIFEST.md)")
    return photos


def displayed_meta(path: Path) -> ImageMeta:
    """What indexing would record of a real photo's size and format (EXIF orientation applied)."""
    from PIL import Image

    with Image.open(path) as image:
        width, height = image.size
        if image.getexif().get(0x0112, 1) in (5, 6, 7, 8):
            width, height = height, width
        return ImageMeta(width, height, image.format or "JPEG", 1.6e9, "exif", "Phone", "12MP")


def row_folder(root: Path, row: int) -> Path:
    return root / f"{row // ROWS_PER_FOLDER:03d}"


def fill(
    lib: Library,
    vectors: np.ndarray,
    files: list[Path] | None = None,
    root: Path | None = None,
    first_row: int = 0,
) -> float:
    """Fill the library with one scene vector per photo and build its index. With `files`,
    row i's path is a symlink under `root` to files[i % len(files)] (real photos: a search's pixel
    check decodes them); without, the paths are made up and no file exists. Rows are numbered
    from `first_row` (fanout.py deals one set of rows out to several libraries)."""
    start = time.perf_counter()
    metas = [displayed_meta(path) for path in files] if files else []
    synthetic = ImageMeta(4000, 3000, "JPEG", 1.6e9, "exif", "Canon", "EOS")
    for offset in range(0, len(vectors), 5000):
        batch = CatalogBatch()
        for i in range(offset, min(offset + 5000, len(vectors))):
            if files and root is not None:
                folder = row_folder(root, i)
                if i % ROWS_PER_FOLDER == 0:
                    folder.mkdir(parents=True, exist_ok=True)
                path = folder / f"p{i:06d}.jpg"
                os.symlink(files[i % len(files)], path)
                meta = metas[i % len(files)]
                stat = FileStat(str(path), 1, 1)
            else:
                meta = synthetic
                row = first_row + i
                stat = FileStat(f"/bench/{row // ROWS_PER_FOLDER:03d}/p{row:06d}.jpg", 1, 1)
            region = RegionData("scene", (0, 0, meta.width, meta.height), vectors[i])
            batch.new.append(NewImage(stat, f"h{i}", meta, [region]))
        lib.catalog.apply(batch)
    lib.rebuild_index()
    return time.perf_counter() - start


def write_query_photos(folder: Path, photos: list[Path], count: int = 5) -> list[Path]:
    """Crops of a quarter of the area of real phone photos, as a user would search with."""
    from PIL import Image, ImageOps

    paths = []
    for source in photos[:: max(1, len(photos) // count)][:count]:
        with Image.open(source) as opened:
            image = ImageOps.exif_transpose(opened).convert("RGB")
        width, height = image.size
        path = folder / f"crop-{source.stem}.jpg"
        box = (width // 4, height // 4, width * 3 // 4, height * 3 // 4)
        image.crop(box).save(path, quality=90)
        paths.append(path)
    return paths


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--vectors", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=40)
    parser.add_argument("--clip-weights", type=Path, help="real open_clip checkpoint (optional)")
    parser.add_argument(
        "--files", type=Path, default=PHONE12MP, help="real JPEGs the rows link to (the check)"
    )
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/query_latency.json")
    args = parser.parse_args()

    import torch

    from searchapp.ingest.regions import REGION_KINDS
    from searchapp.query import search as search_module
    from searchapp.query.search import Query, Term
    from searchapp.records import Filters

    files = real_photos(args.files)
    work = scratch_folder("searchapp-bench-")
    checkpoint = args.clip_weights or random_checkpoint(work)
    writer = Library(work / "lib")
    options = EncoderOptions(clip_weights=checkpoint, allow_download=False)
    start = time.perf_counter()
    with writer.writing():
        encoder = writer.encoder(ENCODER, options)  # in full: leaves what queries start from
    model_load = time.perf_counter() - start
    dim = encoder.identity.dim
    rows = work / "photos"
    with writer.writing():
        fill_seconds = fill(writer, clustered_vectors(args.vectors, dim), files, rows)
    writer.close()

    # A query process: the library opened afresh, its encoder as `searchapp search` loads it
    parts = SearchParts()
    parts.install()
    lib = Library(work / "lib", create=False)
    lib.check_indexes()
    start = time.perf_counter()
    lib.encoder()
    query_model_load = time.perf_counter() - start
    photos = write_query_photos(work, files)
    kept = str(row_folder(rows, 7))  # ROWS_PER_FOLDER of the rows: 1% of 100k

    def run(term: Callable[[int], Term], filters: Filters | None = None, verify: bool = True):  # type: ignore[no-untyped-def]
        def one(i: int) -> Any:
            query = Query(
                (term(i),), filters=filters or Filters(), k=10, kinds=REGION_KINDS, verify=verify
            )
            return search_module.search(lib, query)

        one(0)  # warm: first-call allocations, the visual tower's session
        parts.recording = True
        checked = [one(i).checked for i in range(args.queries)]
        parts.recording = False
        return {**summary(parts.take()), "checked_per_query": statistics.fmean(checked)}

    from searchapp.query.filters import build_filters

    def text(i: int) -> Term:
        return Term("text", PHRASES[i % len(PHRASES)])

    def image(i: int) -> Term:
        return Term("image", str(photos[i % len(photos)]))

    cases = {
        "text_query": run(text),
        "text_query_filtered_1pct": run(text, build_filters(folder=kept)),
        "image_query_verified": run(image),
        "image_query_no_verify": run(image, verify=False),
    }
    n = args.queries
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
    query_encoder = lib.encoder()
    text_ours = timed(lambda i: query_encoder.encode_text([PHRASES[i % len(PHRASES)]]), n)
    with torch.inference_mode():
        tokens = tokenizer(PHRASES)
        reference = torch.nn.functional.normalize(model.encode_text(tokens), dim=-1).numpy()
    parity = float(np.abs(query_encoder.encode_text(PHRASES) - reference).max())
    from searchapp.vectors import faiss_index

    index = lib.indexes().get("scene", persist=False)
    import faiss

    ivf = faiss.try_extract_index_ivf(getattr(index, "base", index))  # changes beside a PQ file
    layout = f"IVF{ivf.nlist}, nprobe={ivf.nprobe}" if ivf is not None else "exact (fp16 codes)"
    query = query_encoder.encode_text(["cat"])
    knn = timed(lambda i: faiss_index.search(index, query, 10), n)

    result = {
        "torch_threads": torch.get_num_threads(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "encoder": ENCODER,
        "weights": "local random init (speed only)" if not args.clip_weights else str(checkpoint),
        "vectors": args.vectors,
        "vectors_kind": "synthetic (clustered, anisotropic)",
        "files": f"{len(files)} real photos in {args.files}, linked {args.vectors:,} times",
        "index": layout,
        "dim": dim,
        "queries": n,
        "model_load_s": round(model_load, 2),
        "query_process_encoder_load_s": round(query_model_load, 2),
        "library_fill_s": round(fill_seconds, 1),
        "search_path": "searchapp.query.search.search, kinds scene+object+tile, k=10",
        "parts": PARTS,
        **cases,
        "text_tower_open_clip_full_77": percentiles(text_full),
        "text_tower_truncated_torch": percentiles(text_truncated),
        "text_tower_ours": percentiles(text_ours),
        "text_embedding_max_abs_diff_vs_open_clip": parity,
        "faiss_knn_only": percentiles(knn),
    }
    write_result(args.out, result)
    lib.close()
    print(
        f"{args.vectors:,} synthetic vectors of dim {dim} ({layout}); rows link to "
        f"{len(files)} real photos of {args.files}; {n} queries each"
    )
    print(
        f"model load: {model_load:.2f} s in full, {query_model_load:.2f} s as a query process "
        "(both excluded below)"
    )
    names = {
        "text_query": "text",
        "text_query_filtered_1pct": "text, 1% filter",
        "image_query_verified": "image, checked",
        "image_query_no_verify": "image, --no-verify",
    }
    table = [(label, "parts_mean_ms", part, ".2f") for part, label in PARTS.items()]
    table += [
        ("total, mean", "mean_ms", None, ".2f"),
        ("total, p50", "p50_ms", None, ".2f"),
        ("total, p95", "p95_ms", None, ".2f"),
        ("candidates checked per query", "checked_per_query", None, ".1f"),
    ]
    print(f"{'mean ms per query':<58}" + "".join(f"{names[c]:>19}" for c in cases))
    for label, key, part, shape in table:
        values = [cases[c][key][part] if part else cases[c][key] for c in cases]
        print(f"  {label:<56}" + "".join(f"{v:>19{shape}}" for v in values))
    print(f"{'':58} {'p50 ms':>8s} {'p95 ms':>8s}")
    for name, stats in (
        ("text tower, open_clip full 77 tokens", result["text_tower_open_clip_full_77"]),
        ("text tower, torch, cut at end-of-text", result["text_tower_truncated_torch"]),
        ("text tower, ours (cut + numpy BLAS)", result["text_tower_ours"]),
        ("FAISS kNN alone", result["faiss_knn_only"]),
    ):
        print(f"{name:58s} {stats['p50_ms']:8.2f} {stats['p95_ms']:8.2f}")
    full_p50 = result["text_tower_open_clip_full_77"]["p50_ms"]
    ours_p50 = result["text_tower_ours"]["p50_ms"]
    print(
        f"text tower: ours {full_p50 / ours_p50:.1f}x faster than open_clip's full context; "
        f"max |difference| of normalised embeddings {parity:.2e}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
