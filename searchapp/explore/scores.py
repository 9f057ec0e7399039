"""Per-photo uniqueness and representativeness, after the FiftyOne Brain's definitions.

- Uniqueness: the weighted mean of the Euclidean distances to the 3 nearest other photos
  (weights 0.6, 0.3, 0.1), divided by the largest in the collection, so 1 is the most unique.
  A photo with a copy in the collection sits near 0.
- Representativeness: k-means over the vectors (20 clusters, fewer for small collections); a
  photo's distance to its cluster's centre, divided by the largest in that cluster, taken from 1,
  so 1 is the photo nearest its centre. (The Brain's "local" normalisation returns the
  normalised distance itself, which ranks the outermost photo first; this keeps its clustering
  and gives the direction its name promises.)
"""

from __future__ import annotations

from typing import Any

import numpy as np

from searchapp.vectors.neighbours import knn_graph, unit_distances

UNIQUENESS_WEIGHTS = (0.6, 0.3, 0.1)
REPRESENTATIVE_CLUSTERS = 20


def _faiss() -> Any:
    import faiss

    return faiss


def uniqueness(
    vectors: np.ndarray, graph: tuple[np.ndarray, np.ndarray] | None = None
) -> np.ndarray:
    """Uniqueness in [0, 1] of each row of unit vectors; `graph` is a precomputed knn_graph with
    at least 3 neighbours per row."""
    n = len(vectors)
    k = len(UNIQUENESS_WEIGHTS)
    if n <= k:
        return np.ones(n)
    _, sims = graph if graph is not None else knn_graph(vectors, k)
    dists = unit_distances(sims[:, :k])
    scores = (dists * np.asarray(UNIQUENESS_WEIGHTS)).mean(axis=1)
    top = scores.max()
    return scores / top if top > 0 else np.zeros(n)


def representativeness(vectors: np.ndarray, seed: int = 1234) -> np.ndarray:
    """Representativeness in [0, 1] of each row of unit vectors."""
    data = np.ascontiguousarray(vectors, dtype=np.float32)
    n = len(data)
    if n == 0:
        return np.zeros(0)
    k = max(1, min(REPRESENTATIVE_CLUSTERS, n // 5))
    if k == 1:
        centres = data.mean(axis=0, keepdims=True)
        assigned = np.zeros(n, dtype=np.int64)
    else:
        kmeans = _faiss().Kmeans(data.shape[1], k, niter=25, seed=seed, min_points_per_centroid=1)
        kmeans.train(data)
        centres = kmeans.centroids
        assigned = kmeans.index.search(data, 1)[1][:, 0]
    dists = np.linalg.norm(data - centres[assigned], axis=1)
    result = np.ones(n)
    for cluster in np.unique(assigned):
        members = assigned == cluster
        far = dists[members].max()
        if far > 0:
            result[members] = 1.0 - dists[members] / far
    return result
