"""Groups of similar photos: HDBSCAN by default, k-means when the user asks for k.

HDBSCAN needs no k and leaves photos that belong nowhere as noise, which a personal collection
has plenty of. On the shared photos (225, EfficientNet-Lite0) a minimum cluster size of 3 puts
each of the 12 BoofCV triplets and the 29 Lund cathedral photos in one cluster, on the unit
vectors as they are and on 16 PCA dimensions alike; a size of 5 splits half of them. The
minimum grows with the collection (square root of n over 5) so that 100,000 photos give
hundreds of groups, not tens of thousands.

HDBSCAN is given the whole distance matrix, made by one matrix product: its own tree search in
1280 dimensions took 57 s for 5,000 vectors, the matrix 2.4 s, with the same clusters (16 or 64
PCA dimensions were faster and lost most of the groups of synthetic embeddings). The matrix
grows as n^2, so above DENSE_LIMIT photos the clusters are found on a seeded sample of that
size, with the minimum size scaled to it, and every other photo joins the cluster of its nearest
sampled photo when it lies within that cluster's reach (the largest core distance, HDBSCAN's
own density measure, of its sampled members), else it is noise.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from searchapp.vectors.neighbours import knn_graph, neighbours_of, unit_distances

MIN_SIZE = 3
DENSE_LIMIT = 12_000  # its float64 matrix is 1.15 GB, and the float32 product before it 0.6


@dataclass(frozen=True)
class Grouping:
    labels: np.ndarray  # (n,) cluster of each row, -1 for noise
    representatives: dict[int, list[int]]  # cluster -> rows nearest its centre, nearest first
    method: str  # "hdbscan" or "kmeans"


def default_min_size(n: int) -> int:
    return max(MIN_SIZE, round(n**0.5 / 5))


def _dense_hdbscan(vectors: np.ndarray, min_size: int) -> tuple[np.ndarray, np.ndarray]:
    """(labels, core distances) of unit vectors, from their whole distance matrix."""
    from sklearn.cluster import HDBSCAN

    data = np.ascontiguousarray(vectors, dtype=np.float32)
    size = max(2, min_size)
    # HDBSCAN's core distance: to the min_samples-th nearest, the point itself counted first
    _, sims = knn_graph(data, min(size - 1, len(data) - 1))
    core = unit_distances(sims[:, -1])
    distances = (data @ data.T).astype(np.float64)  # built in place: one n x n float64 at peak
    np.multiply(distances, -2.0, out=distances)
    np.add(distances, 2.0, out=distances)
    np.clip(distances, 0.0, None, out=distances)
    np.sqrt(distances, out=distances)
    np.fill_diagonal(distances, 0.0)
    model: Any = HDBSCAN(min_cluster_size=size, metric="precomputed", copy=False)
    return np.asarray(model.fit_predict(distances), dtype=np.int64), core


def hdbscan_labels(vectors: np.ndarray, min_size: int, seed: int = 0) -> np.ndarray:
    n = len(vectors)
    if n < max(2, min_size):
        return np.full(n, -1, dtype=np.int64)
    if n <= DENSE_LIMIT:
        return _dense_hdbscan(vectors, min_size)[0]
    sample = np.sort(np.random.default_rng(seed).choice(n, DENSE_LIMIT, replace=False))
    scaled = max(MIN_SIZE, round(min_size * DENSE_LIMIT / n))
    sampled_labels, core = _dense_hdbscan(vectors[sample], scaled)
    labels = np.full(n, -1, dtype=np.int64)
    labels[sample] = sampled_labels
    rest = np.setdiff1d(np.arange(n), sample)
    ids, sims = neighbours_of(vectors[rest], vectors[sample], 1)  # the space core was measured in
    distance = unit_distances(sims[:, 0])
    nearest_label = sampled_labels[ids[:, 0]]
    # a cluster's reach: the largest core distance among its sampled members
    reach = np.zeros(max(int(sampled_labels.max()) + 1, 1))
    np.maximum.at(reach, sampled_labels[sampled_labels >= 0], core[sampled_labels >= 0])
    near = (nearest_label >= 0) & (distance <= reach[np.maximum(nearest_label, 0)])
    labels[rest[near]] = nearest_label[near]
    return labels


def kmeans_labels(vectors: np.ndarray, k: int, seed: int = 1234) -> np.ndarray:
    import faiss

    data = np.ascontiguousarray(vectors, dtype=np.float32)
    if len(data) == 0:
        return np.zeros(0, dtype=np.int64)
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
