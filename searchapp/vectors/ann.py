"""Which FAISS index a region kind gets, by its size, and how an IVF index is trained and tuned.

Up to EXACT_LIMIT vectors a kind is searched exactly: at 50k x 512 an fp16 flat scan takes about
2 ms on one core, and at 1M about 45 ms, too slow for a query. Above it the kind gets an IVF
index over the same fp16 codes, which can delete ids (moves and deletes need that; HNSW cannot),
builds in about a minute at 1M (HNSW32: 212 s) and answers in about 1 ms.

- Lists: the power of two nearest 2*sqrt(N), trained on 40 stored vectors per list (FAISS warns
  below 39). benchmarks/ann_scale.py compared 1024, 2048 and 4096 lists at 1M.
- Probes: chosen at build time by measured recall, not guessed. TUNING_QUERIES stored vectors are
  searched for their 10 nearest others, exactly and through the index, and the fewest probes
  reaching RECALL_TARGET are kept (FAISS saves them in the index file).
- Width: fp16 codes, or 8 bits a component for kinds whose vectors are the catalog's int8 codes
  (objects and tiles once the library has its basis, store/codec.py), with each component's range
  fixed by the basis rather than trained, so that a rebuild and a followed batch store alike.
- Growth: an index is rebuilt from the catalog's vectors when the size calls for twice or half its
  lists, that is when the library has grown or shrunk about 4x, and goes back to exact below half
  the limit. The catalog keeps every vector, so nothing is re-embedded.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

EXACT_LIMIT = 50_000
RECALL_TARGET = 0.97
NEIGHBOURS = 10
TUNING_QUERIES = 200
TRAIN_PER_LIST = 40
PROBES = (4, 8, 16, 32, 64, 128, 256, 512)
# Probes are tuned on stored vectors; a query from outside their clusters (CLIP's text sits far
# from its images, best match near cosine 0.37) finds less at them, the more so the larger the
# kind. Such queries search this many times the tuned probes (benchmarks/ann_scale.py and
# ivfpq_scale.py measure the sets at both).
OFF_CLUSTER_PROBES = 4
# An IVF-PQ index finds its lists' centroids through an HNSW graph (large.py), which keeps
# QUANTIZER_BREADTH x probes candidates: at FAISS's default of 16 it missed some of the lists
# nearest a query, which capped recall below what probes and re-ranking could give (500k
# vectors, 512 lists, 64 probes: text-like 0.946 at 16, 0.968 from 2x the probes on).
QUANTIZER_BREADTH = 2

Chunks = Callable[[], Iterable[tuple[np.ndarray, np.ndarray]]]  # (ids, vectors), re-iterable


def _faiss() -> Any:
    import faiss

    return faiss


def lists_for(count: int) -> int:
    """IVF lists for a kind of `count` vectors; 0 means exact search."""
    if count <= EXACT_LIMIT:
        return 0
    return int(2 ** round(math.log2(2 * math.sqrt(count))))


def lists_of(index: Any) -> int:
    """The IVF lists of an index, 0 for an exact one."""
    ivf = _faiss().try_extract_index_ivf(index)
    return int(ivf.nlist) if ivf is not None else 0


def needs_rebuild(index: Any) -> bool:
    """True when the index's layout no longer suits its size (with hysteresis, so that a library
    hovering at a boundary is not rebuilt on every save)."""
    count, have = int(index.ntotal), lists_of(index)
    if have == 0:
        return count > EXACT_LIMIT
    if count < EXACT_LIMIT // 2:
        return True
    want = lists_for(max(count, EXACT_LIMIT + 1))
    return want >= 2 * have or 4 * want <= have


def exact_index(dim: int, ranges: np.ndarray | None = None) -> Any:
    """Exact inner-product search over fp16 codes. The catalog keeps vectors as float16, so this
    loses nothing against a float32 flat index, and reads half the memory per query. With
    `ranges` ((2, dim): each component's low and high), 8 bits a component."""
    faiss = _faiss()
    if ranges is None:
        inner = faiss.IndexScalarQuantizer(
            dim, faiss.ScalarQuantizer.QT_fp16, faiss.METRIC_INNER_PRODUCT
        )
    else:
        inner = faiss.IndexScalarQuantizer(
            dim, faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_INNER_PRODUCT
        )
        _fix_ranges(inner, ranges)
    return faiss.IndexIDMap2(inner)


def _fix_ranges(index: Any, ranges: np.ndarray) -> None:
    """Set an 8-bit scalar quantizer's per-component ranges instead of training them."""
    faiss = _faiss()
    low, high = np.asarray(ranges, np.float32)
    faiss.copy_array_to_vector(np.concatenate([low, high - low]), index.sq.trained)
    index.is_trained = True


def add(index: Any, ids: np.ndarray, vectors: np.ndarray) -> None:
    if len(ids):
        index.add_with_ids(
            np.ascontiguousarray(vectors, dtype=np.float32), np.asarray(ids, dtype=np.int64)
        )


def load(path: Path, *, mapped: bool = False) -> Any:
    """Read an index file; mapped, it is memory-mapped read-only, which opens a 100k-photo index
    in 7 ms instead of 157 and reads only the lists a query probes."""
    faiss = _faiss()
    flags = faiss.IO_FLAG_MMAP | faiss.IO_FLAG_READ_ONLY if mapped else 0
    index = faiss.read_index(str(path), flags)
    ivf = faiss.try_extract_index_ivf(index) if mapped else None
    lists = faiss.downcast_InvertedLists(ivf.invlists) if ivf is not None else None
    if isinstance(lists, faiss.OnDiskInvertedLists):
        # FAISS reads a mapped index's probed lists ahead on 32 threads of its own at every
        # search: measured at 20,000 PQ vectors, 16 probes, 2.1 ms a query against 0.95 without
        lists.prefetch_nthread = 0
    return index


def build(
    dim: int, count: int, chunks: Chunks, seed: int = 0, ranges: np.ndarray | None = None
) -> Any:
    """The index for `count` vectors read from `chunks`: exact, or IVF trained and tuned on them;
    8 bits a component within `ranges` when given (see exact_index)."""
    lists = lists_for(count)
    if lists == 0:
        index = exact_index(dim, ranges)
        for ids, vectors in chunks():
            add(index, ids, vectors)
        return index
    faiss = _faiss()
    sample, tuning = first_pass(chunks, count, TRAIN_PER_LIST * lists, seed)
    quantizer = faiss.IndexFlatIP(dim)
    kind = faiss.ScalarQuantizer.QT_fp16 if ranges is None else faiss.ScalarQuantizer.QT_8bit
    index = faiss.IndexIVFScalarQuantizer(quantizer, dim, lists, kind, faiss.METRIC_INNER_PRODUCT)
    if ranges is not None:
        index.by_residual = False  # the fixed ranges are the vectors', not their residuals'
    index.train(sample)
    if ranges is not None:
        _fix_ranges(index, ranges)
    del sample
    fill(index, chunks, tuning)
    index.nprobe = tuning.fewest_probes(index)
    return index


def first_pass(
    chunks: Chunks, count: int, train: int, seed: int
) -> tuple[np.ndarray, ExactNeighbours]:
    """(a training sample of about `train` of the `count` vectors, the tuning queries: about
    TUNING_QUERIES of them, whose true neighbours the second pass finds)."""
    rng = np.random.default_rng(seed)
    train_share = min(1.0, train / count)
    query_share = min(1.0, TUNING_QUERIES / count)
    sample, query_ids, queries = [], [], []
    for ids, vectors in chunks():
        sample.append(np.asarray(vectors[rng.random(len(ids)) < train_share], np.float32))
        chosen = rng.random(len(ids)) < query_share
        query_ids.append(np.asarray(ids)[chosen])
        queries.append(np.asarray(vectors[chosen], np.float32))
    tuning = ExactNeighbours(np.concatenate(query_ids), np.concatenate(queries))
    return np.concatenate(sample), tuning


def fill(index: Any, chunks: Chunks, tuning: ExactNeighbours) -> None:
    """The second pass: every vector into the trained index, and each into the tuning."""
    for ids, vectors in chunks():
        rows = np.ascontiguousarray(vectors, dtype=np.float32)  # once, for both
        add(index, ids, rows)
        tuning.see(np.asarray(ids), rows)


class ExactNeighbours:
    """The exact nearest stored neighbours of a few stored vectors, gathered chunk by chunk."""

    def __init__(self, ids: np.ndarray, queries: np.ndarray):
        self.ids, self.queries = ids, queries
        self.scores = np.full((len(ids), NEIGHBOURS), -np.inf, np.float32)
        self.found = np.full((len(ids), NEIGHBOURS), -1, np.int64)

    def see(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        if not len(self.ids) or not len(ids):
            return
        faiss = _faiss()
        # one more than kept, since a query's own vector may be among them; FAISS's top-k keeps
        # a chunk's memory to the queries' rows (a full score matrix and its argpartition took
        # 0.25 GB a chunk of 100,000)
        keep = min(NEIGHBOURS + 1, len(ids))
        rows = np.ascontiguousarray(vectors, dtype=np.float32)
        scores, best = faiss.knn(self.queries, rows, keep, faiss.METRIC_INNER_PRODUCT)
        found = np.asarray(ids)[best]
        scores[found == self.ids[:, None]] = -np.inf  # a vector is not its own neighbour
        merged_scores = np.concatenate([self.scores, scores], axis=1)
        merged_ids = np.concatenate([self.found, found], axis=1)
        top = np.argsort(-merged_scores, axis=1)[:, :NEIGHBOURS]
        self.scores = np.take_along_axis(merged_scores, top, axis=1)
        self.found = np.take_along_axis(merged_ids, top, axis=1)

    def recall(self, index: Any, probes: int, depth: int = NEIGHBOURS) -> float:
        """The share of the true neighbours among the index's first `depth` answers (NEIGHBOURS:
        recall@10; more: what a re-rank on exact vectors can find among that many)."""
        ivf = _faiss().extract_index_ivf(index)  # an OPQ index wraps its IVF
        _, got = index.search(self.queries, depth + 1, params=probing(ivf, probes))
        hits = 0
        for own, truth, row in zip(self.ids, self.found, got, strict=True):
            hits += len(set(truth.tolist()) & (set(row.tolist()) - {int(own)}))
        return hits / max(1, self.found.size)

    def fewest_probes(
        self,
        index: Any,
        *,
        depth: int = NEIGHBOURS,
        target: float = RECALL_TARGET,
        choices: tuple[int, ...] = PROBES,
    ) -> int:
        """The fewest probes whose recall reaches `target`; every list where none does. The
        index is left set to them."""
        ivf = _faiss().extract_index_ivf(index)
        nlist = int(ivf.nlist)
        chosen = nlist
        for probes in choices:
            if probes >= nlist or self.recall(index, probes, depth) >= target:
                chosen = min(probes, nlist)
                break
        ivf.nprobe = chosen
        return chosen


def search_parameters(
    index: Any,
    k: int,
    allowed: np.ndarray | None,
    off_cluster: bool = False,
    tuned_for: int = NEIGHBOURS,
) -> Any:
    """FAISS search parameters: the id filter, and for IVF enough probes that a large k, a
    query from outside the stored vectors' clusters (OFF_CLUSTER_PROBES) or a narrow filter
    still finds its hits. Probes were tuned for `tuned_for` answers; they scale with k over it
    or by OFF_CLUSTER_PROBES, whichever is more, and with the filtered-out share."""
    faiss = _faiss()
    selector = None
    if allowed is not None:
        selector = faiss.IDSelectorBatch(np.ascontiguousarray(allowed, dtype=np.int64))
    ivf = faiss.try_extract_index_ivf(index)
    if ivf is None:
        return faiss.SearchParameters(sel=selector) if selector is not None else None
    probes = widened_probes(ivf, int(index.ntotal), k, allowed, off_cluster, tuned_for)
    return probing(ivf, probes, selector)


def widened_probes(
    ivf: Any, count: int, k: int, allowed: np.ndarray | None, off_cluster: bool, tuned_for: int
) -> int:
    """The probes of search_parameters, for an IVF index of `count` vectors."""
    widen = max(1.0, k / tuned_for, OFF_CLUSTER_PROBES if off_cluster else 1)
    if allowed is not None and len(allowed):
        widen *= max(1.0, count / len(allowed))
    return math.ceil(ivf.nprobe * widen)


def probing(ivf: Any, probes: int, selector: Any = None) -> Any:
    """IVF search parameters for `probes` lists (at most all of them), with a graph of
    centroids searched wide enough to find them (QUANTIZER_BREADTH)."""
    faiss = _faiss()
    probes = min(int(ivf.nlist), probes)
    given: dict[str, Any] = {"nprobe": probes}
    if selector is not None:
        given["sel"] = selector
    if isinstance(faiss.downcast_index(ivf.quantizer), faiss.IndexHNSW):
        breadth = faiss.SearchParametersHNSW(efSearch=QUANTIZER_BREADTH * probes)
        given["quantizer_params"] = breadth
    # given to the constructor, which keeps a reference to each in every FAISS since 1.7.4
    return faiss.SearchParametersIVF(**given)


def stored_ids(index: Any) -> np.ndarray:
    """Every id an index holds, for consistency checks."""
    faiss = _faiss()
    ivf = faiss.try_extract_index_ivf(index)
    if ivf is None:
        return faiss.vector_to_array(index.id_map).astype(np.int64)
    lists = ivf.invlists
    parts = [
        faiss.rev_swig_ptr(lists.get_ids(i), lists.list_size(i)).copy()
        for i in range(ivf.nlist)
        if lists.list_size(i)
    ]
    return np.concatenate(parts).astype(np.int64) if parts else np.zeros(0, np.int64)


def chunks_of(vectors: np.ndarray, ids: np.ndarray, size: int = 100_000) -> Chunks:
    """In-memory vectors as re-iterable chunks, for tests and benchmarks."""

    def iterate() -> Iterator[tuple[np.ndarray, np.ndarray]]:
        for start in range(0, len(ids), size):
            yield ids[start : start + size], vectors[start : start + size]

    return iterate
