"""Neighbours of every vector among the others (a kNN graph), and a PCA to make that cheap.

The map, the clusters, uniqueness and the hubness figure all start from the same graph. An exact
all-pairs scan costs n^2 * d: at 100,000 scene vectors of 1280 dimensions that is minutes on two
cores, at 64 PCA dimensions seconds, and the neighbours barely change (the leading components of
these embeddings hold most of their variance). Above GRAPH_EXACT_LIMIT an IVF index with enough
probes stands in for the exact scan.
"""

from __future__ import annotations

from typing import Any

import numpy as np

PCA_SAMPLE = 20_000  # vectors the components are learned from
GRAPH_EXACT_LIMIT = 200_000
GRAPH_PROBES = 32


def _faiss() -> Any:
    import faiss

    return faiss


def pca(vectors: np.ndarray, dims: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(mean, components (dims, d)) of the vectors, learned from a sample of at most
    PCA_SAMPLE; fewer components when the vectors have fewer dimensions or rows."""
    data = np.asarray(vectors, dtype=np.float32)
    if len(data) > PCA_SAMPLE:
        pick = np.random.default_rng(seed).choice(len(data), PCA_SAMPLE, replace=False)
        data = data[np.sort(pick)]
    mean = data.mean(axis=0)
    dims = max(1, min(dims, data.shape[1], len(data)))
    # the covariance's eigenvectors: d x d is small (at most a few thousand) where rows are many
    covariance = np.cov(data - mean, rowvar=False).astype(np.float64).reshape(data.shape[1], -1)
    values, vecs = np.linalg.eigh(covariance)
    order = np.argsort(values)[::-1][:dims]
    return mean, vecs[:, order].T.astype(np.float32)


def project(vectors: np.ndarray, mean: np.ndarray, components: np.ndarray) -> np.ndarray:
    return ((np.asarray(vectors, dtype=np.float32) - mean) @ components.T).astype(np.float32)


def unit_rows(vectors: np.ndarray) -> np.ndarray:
    data = np.ascontiguousarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(data, axis=1, keepdims=True)
    return data / np.maximum(norms, 1e-12)


def unit_distances(similarities: np.ndarray) -> np.ndarray:
    """Euclidean distances between unit vectors from their inner products."""
    sims = np.asarray(similarities, dtype=np.float64)
    return np.sqrt(np.clip(2.0 - 2.0 * sims, 0.0, None))


def knn_graph(vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """For each row, its k nearest other rows by inner product: (indices (n, k) int64,
    similarities (n, k) float32), best first. Rows with fewer than k others get -1 and -inf."""
    faiss = _faiss()
    data = np.ascontiguousarray(vectors, dtype=np.float32)
    n, dim = data.shape
    want = min(k + 1, n)
    if n > GRAPH_EXACT_LIMIT:
        lists = int(4 * np.sqrt(n))
        quantiser = faiss.IndexFlatIP(dim)
        index = faiss.IndexIVFFlat(quantiser, dim, lists, faiss.METRIC_INNER_PRODUCT)
        index.train(data[np.random.default_rng(0).choice(n, min(n, 40 * lists), replace=False)])
        index.nprobe = GRAPH_PROBES
    else:
        index = faiss.IndexFlatIP(dim)
    index.add(data)
    sims, ids = index.search(data, want)
    return _drop_self(ids, sims, k)


def neighbours_of(
    queries: np.ndarray, vectors: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """The k nearest rows of `vectors` for each query, by inner product (no self to drop)."""
    index = _faiss().IndexFlatIP(vectors.shape[1])
    index.add(np.ascontiguousarray(vectors, dtype=np.float32))
    sims, ids = index.search(np.ascontiguousarray(queries, dtype=np.float32), min(k, len(vectors)))
    return ids, sims


def _drop_self(ids: np.ndarray, sims: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Remove each row's own entry (wherever ties put it) and keep k columns."""
    n = len(ids)
    out_ids = np.full((n, k), -1, dtype=np.int64)
    out_sims = np.full((n, k), -np.inf, dtype=np.float32)
    for row in range(n):
        keep = ids[row] != row
        keep &= ids[row] >= 0
        found = ids[row][keep][:k]
        out_ids[row, : len(found)] = found
        out_sims[row, : len(found)] = sims[row][keep][:k]
    return out_ids, out_sims
