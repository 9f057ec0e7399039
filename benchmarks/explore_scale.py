"""Exploring a large collection: the map's layout, the clusters, uniqueness and health at 100,000
vectors, and the map page's frame times at 1,000,000 points in headless Chromium.

    python benchmarks/explore_scale.py [--vectors 100000] [--points 1000000] [--dim 1280]

Every vector is synthetic (ann_scale.realistic_vectors: clustered like real embeddings, stored
as float16 as the catalog stores them); no library of 100,000 photos was embedded. Timed in one
run, on this machine's cores:
- the layout as `searchapp map` makes it (PCA to 64 dimensions, an exact FAISS kNN graph, UMAP
  on that graph), beside UMAP building its own graph with pynndescent on the same 64
  dimensions, and the PCA fallback;
- HDBSCAN clusters, uniqueness with representativeness, and the health figures;
- the page: 1,000,000 points in 2-D (a mixture of clustered blobs), written as `searchapp map`
  writes it, opened from disk in headless Chromium (software WebGL: SwiftShader on the CPU, no
  GPU), then panned frame by frame. Reported: load time, frame time while panning (the page
  draws a 100,000-point sample while moving) and the full redraw once the view rests.

Writes benchmarks/results/explore_scale.json.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from ann_scale import realistic_vectors
from bench_results import write_result

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from searchapp.explore import clusters, health, layout, scores  # noqa: E402
from searchapp.library_explore import MapPoints  # noqa: E402
from searchapp.web.map_page import map_html  # noqa: E402


def timed(what: str, run: Any) -> tuple[Any, float]:
    started = time.perf_counter()
    value = run()
    seconds = time.perf_counter() - started
    print(f"{what}: {seconds:.1f} s", flush=True)
    return value, seconds


def umap_own_graph(vectors: np.ndarray) -> np.ndarray:
    """UMAP as it runs out of the box (pynndescent), on the same 64 PCA dimensions."""
    import umap

    space = layout.graph_space(vectors)
    model = umap.UMAP(n_neighbors=layout.NEIGHBOURS, metric="cosine", init="pca", low_memory=True)
    return np.asarray(model.fit_transform(space))


def vector_side(count: int, dim: int) -> dict[str, Any]:
    vectors = realistic_vectors(count, dim=dim)
    # numba compiles UMAP's functions on first use; a user pays that once per process, so it is
    # taken apart from the layout's time here
    _, warmup = timed("umap compile (200 vectors)", lambda: layout.fit(vectors[:200], "umap"))
    fitted, umap_s = timed("layout: FAISS graph + UMAP", lambda: layout.fit(vectors, "umap"))
    _, graph_s = timed(
        "  of it, PCA 64 + FAISS graph",
        lambda: layout.knn_graph(layout.graph_space(vectors), layout.NEIGHBOURS - 1),
    )
    _, own_s = timed("layout: UMAP with pynndescent", lambda: umap_own_graph(vectors))
    _, pca_s = timed("layout: PCA", lambda: layout.fit(vectors, "pca"))
    grouping, cluster_s = timed("clusters (HDBSCAN)", lambda: clusters.group(vectors))
    space = layout.graph_space(vectors)
    _, unique_s = timed(
        "uniqueness + representativeness",
        lambda: (scores.uniqueness(space), scores.representativeness(space)),
    )
    figures, health_s = timed("health", lambda: health.measure(vectors))
    placed, place_s = timed(
        "place 1,000 new vectors",
        lambda: layout.place(vectors[:1000], vectors[1000:], fitted.coords[1000:]),
    )
    return {
        "vectors": count,
        "dim": dim,
        "umap_compile_seconds": round(warmup, 1),
        "layout_faiss_graph_umap_seconds": round(umap_s, 1),
        "of_it_pca_and_faiss_graph_seconds": round(graph_s, 1),
        "layout_umap_pynndescent_seconds": round(own_s, 1),
        "layout_pca_seconds": round(pca_s, 2),
        "clusters_seconds": round(cluster_s, 1),
        "clusters_found": int(grouping.labels.max() + 1),
        "noise_share": round(float(np.mean(grouping.labels < 0)), 3),
        "uniqueness_and_representativeness_seconds": round(unique_s, 1),
        "health_seconds": round(health_s, 1),
        "health": {
            "mean_cosine": round(figures.mean_cosine or 0, 3),
            "hubness": round(figures.hubness or 0, 2),
        },
        "place_1000_seconds": round(place_s, 2),
        # the 1,000 were in the fit too: how far from their own fitted places they land, as a
        # share of the layout's spread (its mean distance from its centre)
        "placed_off_by_share_of_spread": round(
            float(
                np.linalg.norm(placed - fitted.coords[:1000], axis=1).mean()
                / np.linalg.norm(fitted.coords - fitted.coords.mean(axis=0), axis=1).mean()
            ),
            3,
        ),
    }


def synthetic_points(count: int, seed: int = 0) -> MapPoints:
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=8, size=(300, 2))
    member = rng.integers(0, len(centres), count)
    coords = centres[member] + rng.normal(scale=0.6, size=(count, 2))
    folders = [f"/photos/{m % 40:02d}" for m in member]
    return MapPoints(
        kind="scene",
        method="umap",
        fitted_count=count,
        region_ids=np.arange(count),
        image_ids=np.arange(count),
        coords=coords.astype(np.float32),
        paths=[f"/photos/{m % 40:02d}/{i}.jpg" for i, m in enumerate(member)],
        boxes=[(0, 0, 1, 1)] * count,
        facets={"folder": folders},
    )


PAN_FRAMES = """
const done = arguments[arguments.length - 1];
const map = window.searchappMap;
const frames = [];
let last = performance.now();
let left = arguments[0];
function step() {
  const now = performance.now();
  frames.push(now - last);
  last = now;
  if (left-- <= 0) return done(frames.slice(1));
  map.panBy(3, 1);
  requestAnimationFrame(step);
}
requestAnimationFrame(step);
"""

FULL_DRAWS = """
const map = window.searchappMap;
const times = [];
const gl = document.querySelector('.sa-map-gl').getContext('webgl');
const pixel = new Uint8Array(4);
for (let i = 0; i < arguments[0]; i++) {
  const started = performance.now();
  map.draw(false);
  gl.readPixels(0, 0, 1, 1, gl.RGBA, gl.UNSIGNED_BYTE, pixel);  // waits for the draw to finish
  times.push(performance.now() - started);
}
return times;
"""


def page_side(count: int) -> dict[str, Any]:
    from tests.browser.chromium import binaries, start_chromium

    found = binaries()
    if found is None:
        return {"skipped": "no chromium and chromedriver on PATH"}
    points = synthetic_points(count)
    with tempfile.TemporaryDirectory() as scratch:
        page = Path(scratch) / "map.html"
        _, write_s = timed(
            "write the page", lambda: page.write_text(map_html(points, "folder", {}))
        )
        page_bytes = page.stat().st_size
        driver = start_chromium(*found, window="1400,1000")
        try:
            driver.set_script_timeout(600)
            started = time.perf_counter()
            driver.get(page.as_uri())
            deadline = time.time() + 300
            while not driver.execute_script("return !!window.searchappMap"):
                if time.time() > deadline:
                    raise RuntimeError("the map did not start")
                time.sleep(0.1)
            load_s = time.perf_counter() - started
            print(f"page loaded and drawn: {load_s:.1f} s", flush=True)
            frames = driver.execute_async_script(PAN_FRAMES, 120)
            full = driver.execute_script(FULL_DRAWS, 5)
        finally:
            driver.quit()
    frames = sorted(frames)
    return {
        "points": count,
        "page_bytes": page_bytes,
        "write_seconds": round(write_s, 1),
        "load_seconds": round(load_s, 1),
        "pan_frame_ms_p50": round(statistics.median(frames), 1),
        "pan_frame_ms_p95": round(frames[int(0.95 * (len(frames) - 1))], 1),
        "pan_frames": len(frames),
        "full_redraw_ms_median": round(statistics.median(full), 1),
        "renderer": "headless Chromium, software WebGL (SwiftShader), 2 CPU cores",
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vectors", type=int, default=100_000)
    parser.add_argument("--points", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=1280, help="1280: the CNN's; 512: ViT-B-32's")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/explore_scale.json")
    args = parser.parse_args()
    result = {"layout": vector_side(args.vectors, args.dim), "page": page_side(args.points)}
    write_result(args.out, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
