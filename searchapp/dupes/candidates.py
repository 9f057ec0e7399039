"""Candidate pairs, without an all-pairs loop: perceptual hashes through a FAISS multi-index
hash, embeddings through FAISS nearest-neighbour search.

Multi-index hashing splits the 64 bits into 4 chunks of 16; two hashes within Hamming distance 7
agree on some chunk up to one flipped bit (pigeonhole), so probing each chunk's bucket and its
16 one-bit neighbours finds every such pair exactly. Rotated and flipped copies are found by
querying with the other seven stored variants of every photo against the upright hashes. Above
FULL_TURN_SEARCH photos those seven go without the flipped-bit probes, which costs 9 of 10 of the
time (radius 3 guaranteed for turned copies, 7 for upright ones; benchmarks/dupes_scale.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

HASH_CHUNKS = 4
MAX_RADIUS = 7  # what 4 chunks with one flipped bit each guarantee
FULL_TURN_SEARCH = 50_000  # photos up to which turned copies are searched to the full radius
EXACT_SEARCH_LIMIT = 4e11  # query x base x dim multiply-adds above which search goes approximate
PROJECTED_DIM = 64
IVF_PROBES = 4  # of 2 sqrt(n) lists; recall 0.996 of exact pairs at 100k (dupes_scale.py)
PCA_SAMPLE = 10_000
RESCORE_MARGIN = 0.1  # projected cosines this far under the threshold are still rescored


@dataclass
class HashPairs:
    a: np.ndarray  # row of the photo whose variant matched (int64)
    b: np.ndarray  # row of the photo whose upright hash it matched
    distance: np.ndarray
    variant: np.ndarray  # index into ingest.hashes.VARIANTS, applied to photo a


def hash_pairs(phashes: np.ndarray, usable: np.ndarray, radius: int) -> HashPairs:
    """Pairs of rows whose hashes lie within `radius` under some rotation or flip; the nearest
    variant per unordered pair."""
    import faiss

    radius = min(radius, MAX_RADIUS)
    rows = np.flatnonzero(usable)
    empty = np.zeros(0, dtype=np.int64)
    if len(rows) < 2:
        return HashPairs(empty, empty, empty, empty)
    variants = phashes[rows].reshape(len(rows), 8, 8)
    index = faiss.IndexBinaryMultiHash(64, HASH_CHUNKS, 16)
    index.add(np.ascontiguousarray(variants[:, 0]))
    found_a, found_b, found_d, found_v = [], [], [], []
    for turn in range(8):
        reach = radius if turn == 0 or len(rows) <= FULL_TURN_SEARCH else min(radius, 3)
        index.nflip = 1 if reach >= HASH_CHUNKS else 0
        queries = np.ascontiguousarray(variants[:, turn])
        limits, distances, labels = index.range_search(queries, reach + 1)
        counts = np.diff(limits).astype(np.int64)
        query_rows = np.repeat(np.arange(len(rows)), counts)
        keep = labels != query_rows
        found_a.append(rows[query_rows[keep]])
        found_b.append(rows[labels[keep]])
        found_d.append(distances[keep].astype(np.int64))
        found_v.append(np.full(int(keep.sum()), turn, dtype=np.int64))
    a, b = np.concatenate(found_a), np.concatenate(found_b)
    distance, variant = np.concatenate(found_d), np.concatenate(found_v)
    # one entry per unordered pair: the smallest distance, upright before turned
    order = np.lexsort((variant, distance, np.maximum(a, b), np.minimum(a, b)))
    a, b, distance, variant = a[order], b[order], distance[order], variant[order]
    low, high = np.minimum(a, b), np.maximum(a, b)
    first = np.ones(len(a), dtype=bool)
    first[1:] = (low[1:] != low[:-1]) | (high[1:] != high[:-1])
    return HashPairs(a[first], b[first], distance[first], variant[first])


def neighbour_pairs(
    queries: np.ndarray, base: np.ndarray, k: int, min_score: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(query row, base row, cosine) for each query's k nearest base vectors scoring at least
    min_score. Exact inner product while that is cheap; above, an IVF index over a projection on
    the main directions proposes neighbours and the full vectors rescore them."""
    import faiss

    if len(queries) == 0 or len(base) == 0:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, np.zeros(0, dtype=np.float32)
    k = min(k, len(base))
    dim = base.shape[1]
    if float(len(queries)) * len(base) * dim <= EXACT_SEARCH_LIMIT:
        index: faiss.Index = faiss.IndexFlatIP(dim)
        _add_chunked(index, base)
        scores, labels = _search_chunked(index, queries, k)
    else:
        approximate, labels = _approximate_neighbours(queries, base, k)
        itself = labels == np.arange(len(queries))[:, None] if queries is base else False
        labels = np.where((approximate >= min_score - RESCORE_MARGIN) & ~itself, labels, -1)
        scores = _rescore(queries, base, labels)
    query_rows = np.repeat(np.arange(len(queries)), k)
    labels, scores = labels.reshape(-1), scores.reshape(-1)
    keep = (labels >= 0) & (scores >= min_score)
    return query_rows[keep], labels[keep].astype(np.int64), scores[keep]


def _add_chunked(index: Any, vectors: np.ndarray, chunk: int = 50000) -> None:
    for start in range(0, len(vectors), chunk):
        index.add(np.ascontiguousarray(vectors[start : start + chunk], dtype=np.float32))


def _search_chunked(
    index: Any, queries: np.ndarray, k: int, chunk: int = 4096
) -> tuple[np.ndarray, np.ndarray]:
    scores, labels = [], []
    for start in range(0, len(queries), chunk):
        block = np.ascontiguousarray(queries[start : start + chunk], dtype=np.float32)
        found_scores, found_labels = index.search(block, k)
        scores.append(found_scores)
        labels.append(found_labels)
    return np.concatenate(scores), np.concatenate(labels)


def _projection(base: np.ndarray) -> np.ndarray:
    """The top PROJECTED_DIM directions of the vectors' second moment (not centred, so that
    projections of unit vectors keep their angles where the vectors carry their energy)."""
    rng = np.random.default_rng(0)
    sample = base[rng.choice(len(base), size=min(len(base), PCA_SAMPLE), replace=False)]
    sample = sample.astype(np.float32)
    _, vectors = np.linalg.eigh(sample.T @ sample)
    return np.ascontiguousarray(vectors[:, ::-1][:, :PROJECTED_DIM], dtype=np.float32)


def _approximate_neighbours(
    queries: np.ndarray, base: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """(projected scores, labels) of each query's k approximate nearest neighbours."""
    import faiss

    projection = _projection(base)

    def project(vectors: np.ndarray) -> np.ndarray:
        # normalised again: the cosine of two projections is close to their true cosine where
        # it matters, for near-copies, whatever share of the energy the projection keeps
        projected = np.asarray(vectors, dtype=np.float32) @ projection
        projected /= np.maximum(np.linalg.norm(projected, axis=1, keepdims=True), 1e-12)
        return np.ascontiguousarray(projected)

    projected = np.concatenate(
        [project(base[start : start + 50000]) for start in range(0, len(base), 50000)]
    )
    lists = int(np.clip(2 * np.sqrt(len(base)), 16, 65536))
    quantizer = faiss.IndexFlatIP(PROJECTED_DIM)
    ivf = faiss.IndexIVFFlat(quantizer, PROJECTED_DIM, lists, faiss.METRIC_INNER_PRODUCT)
    rng = np.random.default_rng(1)
    training = projected[rng.choice(len(projected), min(len(projected), 16 * lists), replace=False)]
    ivf.train(training)
    ivf.add(projected)
    ivf.nprobe = IVF_PROBES
    scores, labels = [], []
    for start in range(0, len(queries), 4096):
        found_scores, found_labels = ivf.search(project(queries[start : start + 4096]), k)
        scores.append(found_scores)
        labels.append(found_labels)
    return np.concatenate(scores), np.concatenate(labels)


def _rescore(queries: np.ndarray, base: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Exact inner products of each query with its labelled base rows (-1: none), in FAISS:
    a numpy gather of the rows costs 20 times more (100k photos: 2.6 s against 0.12 s)."""
    import faiss as faiss_module

    faiss: Any = faiss_module  # its SWIG helpers carry no type stubs
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    wanted = np.unique(labels[labels >= 0])
    if base.dtype == np.float32:
        rows, ids = np.ascontiguousarray(base), np.ascontiguousarray(labels, dtype=np.int64)
    else:  # float16 regions: widen only the rows asked for
        rows = np.ascontiguousarray(base[wanted], dtype=np.float32)
        ids = np.where(labels >= 0, np.searchsorted(wanted, labels), -1).astype(np.int64)
        ids = np.ascontiguousarray(ids)
    scores = np.zeros(labels.shape, dtype=np.float32)
    faiss.fvec_inner_products_by_idx(
        faiss.swig_ptr(scores),
        faiss.swig_ptr(queries),
        faiss.swig_ptr(rows),
        faiss.swig_ptr(ids),
        queries.shape[1],
        len(queries),
        labels.shape[1],
    )
    return np.where(labels >= 0, scores, -1.0).astype(np.float32)
