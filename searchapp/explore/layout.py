"""The 2-D layout of a collection's vectors: UMAP, with PCA as the fast fallback.

UMAP is given a neighbour graph that FAISS computed (vectors.neighbours) rather than building its
own with pynndescent: on 64 PCA dimensions an exact FAISS graph of 100,000 photos takes seconds.
New photos are placed without a refit, as UMAP's own transform starts them: at the weighted mean
of their nearest fitted neighbours' places, weights falling with distance. The library refits
once it has grown by half since the fit (REFIT_GROWTH).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from searchapp.vectors.neighbours import knn_graph, neighbours_of, pca, project, unit_rows

METHODS = ("auto", "umap", "pca")
NEIGHBOURS = 15
GRAPH_DIMS = 64
REFIT_GROWTH = 1.5
PLACE_NEIGHBOURS = 10


@dataclass(frozen=True)
class Layout:
    coords: np.ndarray  # (n, 2) float32
    method: str  # "umap" or "pca"


def graph_space(vectors: np.ndarray) -> np.ndarray:
    """Unit vectors in at most GRAPH_DIMS dimensions, where neighbours are found."""
    data = np.asarray(vectors, dtype=np.float32)
    if data.shape[1] <= GRAPH_DIMS or len(data) <= GRAPH_DIMS:
        return unit_rows(data)
    mean, components = pca(data, GRAPH_DIMS)
    return unit_rows(project(data, mean, components))


def pca_layout(vectors: np.ndarray) -> np.ndarray:
    data = np.asarray(vectors, dtype=np.float32)
    if len(data) < 2:
        return np.zeros((len(data), 2), dtype=np.float32)
    mean, components = pca(data, 2)
    coords = project(data, mean, components)
    if coords.shape[1] < 2:
        coords = np.hstack([coords, np.zeros((len(coords), 2 - coords.shape[1]), np.float32)])
    return coords


def umap_layout(vectors: np.ndarray, seed: int = 42) -> np.ndarray:
    import umap

    space = graph_space(vectors)
    ids, sims = knn_graph(space, NEIGHBOURS - 1)
    n = len(space)
    # UMAP wants each point as its own first neighbour, at distance 0
    knn_ids = np.hstack([np.arange(n, dtype=np.int64)[:, None], ids])
    knn_dists = np.hstack([np.zeros((n, 1), np.float32), np.clip(1.0 - sims, 0.0, 2.0)])
    missing = knn_ids < 0  # tiny collections: fewer neighbours than asked
    knn_ids[missing] = 0
    knn_dists[missing] = 2.0
    model: Any = umap.UMAP(
        n_neighbors=NEIGHBOURS,
        metric="cosine",
        precomputed_knn=(knn_ids, knn_dists.astype(np.float32), None),
        init="spectral" if n <= 10_000 else "pca",
        random_state=seed if n <= 10_000 else None,  # a seed costs the parallel epochs
        n_jobs=-1 if n > 10_000 else 1,
        low_memory=True,
    )
    with warnings.catch_warnings():  # it warns that its transform needs its own graph: see place
        warnings.filterwarnings("ignore", message=".*knn_search_index.*")
        return np.asarray(model.fit_transform(space), dtype=np.float32)


def fit(vectors: np.ndarray, method: str = "auto") -> Layout:
    """Lay unit vectors out in 2-D. "auto" is UMAP where it can run (more photos than its
    neighbourhood), PCA otherwise."""
    if method not in METHODS:
        raise ValueError(f"unknown layout method {method!r}: choose from {', '.join(METHODS)}")
    if method == "pca" or len(vectors) <= NEIGHBOURS + 1:
        return Layout(pca_layout(vectors), "pca")
    return Layout(umap_layout(vectors), "umap")


def place(new: np.ndarray, fitted: np.ndarray, coords: np.ndarray) -> np.ndarray:
    """Places for new unit vectors on an existing layout of `fitted` ones."""
    if len(new) == 0 or len(fitted) == 0:
        return np.zeros((len(new), 2), dtype=np.float32)
    ids, sims = neighbours_of(new, fitted, PLACE_NEIGHBOURS)
    dists = 1.0 - sims.astype(np.float64)
    closest = dists[:, :1]
    scale = np.maximum((dists - closest).mean(axis=1, keepdims=True), 1e-6)
    weights = np.exp(-(dists - closest) / scale) * (ids >= 0)
    weights /= weights.sum(axis=1, keepdims=True)
    return np.einsum("nk,nkd->nd", weights, coords[np.maximum(ids, 0)]).astype(np.float32)


def due_for_refit(fitted_count: int, count: int) -> bool:
    return fitted_count == 0 or count >= REFIT_GROWTH * fitted_count
