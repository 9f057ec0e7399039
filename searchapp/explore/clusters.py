"""Groups of similar photos: HDBSCAN by default, k-means when the user asks for k.

HDBSCAN needs no k and leaves photos that belong nowhere as noise, which a personal collection
has plenty of. On the shared photos (225, EfficientNet-Lite0) a minimum cluster size of 3 puts
each of the 12 BoofCV triplets and the 29 Lund cathedral photos in one cluster, on the unit
vectors as they are and on 16 PCA dimensions alike; a size of 5 splits half of them. The
minimum grows with the collection (square root of n over 5) so that 100,000 photos give
hundreds of groups, not tens of thousands. Above DIRECT_LIMIT photos HDBSCAN runs on
PCA_DIMS dimensions: its neighbour queries cost about n^2 d in 1280 dimensions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from searchapp.vectors.neighbours import pca, project, unit_rows

MIN_SIZE = 3
DIRECT_LIMIT = 5000
PCA_DIMS = 16


@dataclass(frozen=True)
class Grouping:
    labels: np.ndarray  # (n,) cluster of each row, -1 for noise
    representatives: dict[int, list[int]]  # cluster -> rows nearest its centre, nearest first
    method: str  # "hdbscan" or "kmeans"


def default_min_size(n: int) -> int:
    return max(MIN_SIZE, round(n**0.5 / 5))


def _reduced(vectors: np.ndarray) -> np.ndarray:
    if len(vectors) <= DIRECT_LIMIT:
        return np.asarray(vectors, dtype=np.float32)
    mean, components = pca(vectors, PCA_DIMS)
    return unit_rows(project(vectors, mean, components))


def hdbscan_labels(vectors: np.ndarray, min_size: int) -> np.ndarray:
    from sklearn.cluster import HDBSCAN

    if len(vectors) < max(2, min_size):
        return np.full(len(vectors), -1, dtype=np.int64)
    model: Any = HDBSCAN(min_cluster_size=max(2, min_size), copy=True)
    return np.asarray(model.fit_predict(_reduced(vectors)), dtype=np.int64)


def kmeans_labels(vectors: np.ndarray, k: int, seed: int = 1234) -> np.ndarray:
    import faiss

    data = np.ascontiguousarray(vectors, dtype=np.float32)
    k = max(1, min(k, len(data)))
    kmeans = faiss.Kmeans(data.shape[1], k, niter=25, seed=seed, min_points_per_centroid=1)
    kmeans.train(data)
    return np.asarray(kmeans.index.search(data, 1)[1][:, 0], dtype=np.int64)


def representatives(vectors: np.ndarray, labels: np.ndarray, count: int) -> dict[int, list[int]]:
    """Each cluster's rows nearest its (normalised) mean vector, nearest first."""
    data = np.asarray(vectors, dtype=np.float32)
    found: dict[int, list[int]] = {}
    for cluster in np.unique(labels):
        if cluster < 0:
            continue
        rows = np.flatnonzero(labels == cluster)
        centre = data[rows].mean(axis=0)
        centre /= max(float(np.linalg.norm(centre)), 1e-12)
        order = np.argsort(-(data[rows] @ centre), kind="stable")
        found[int(cluster)] = [int(rows[i]) for i in order[:count]]
    return found


def group(
    vectors: np.ndarray, k: int | None = None, min_size: int | None = None, shown: int = 5
) -> Grouping:
    """Cluster unit vectors: k-means with k clusters when k is given, else HDBSCAN. Clusters are
    renumbered largest first."""
    if k is not None:
        raw, method = kmeans_labels(vectors, k), "kmeans"
    else:
        size = min_size if min_size is not None else default_min_size(len(vectors))
        raw, method = hdbscan_labels(vectors, size), "hdbscan"
    kept = [c for c in np.unique(raw) if c >= 0]
    order = sorted(kept, key=lambda c: (-int(np.sum(raw == c)), int(np.flatnonzero(raw == c)[0])))
    renumber = {int(old): new for new, old in enumerate(order)}
    labels = np.array([renumber.get(int(c), -1) for c in raw], dtype=np.int64)
    return Grouping(labels, representatives(vectors, labels, shown), method)


def name_from_labels(member_labels: list[list[tuple[str, float]]], top: int = 2) -> str:
    """A cluster's name from its photos' classifier labels: the classes with the largest summed
    probability, "unnamed" when none has any."""
    totals: dict[str, float] = {}
    for labels in member_labels:
        for name, prob in labels:
            totals[name] = totals.get(name, 0.0) + prob
    if not totals:
        return "unnamed"
    best = sorted(totals.items(), key=lambda item: (-item[1], item[0]))[:top]
    return ", ".join(name for name, _ in best)
