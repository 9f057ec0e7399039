"""IVF-PQ for 10^7-10^9 vectors: planned from the count and a memory budget, trained once,
filled shard by shard, merged into inverted lists on disk that queries memory-map, and searched
with a re-rank on exact vectors where they are at hand.

A build holds one shard in memory (SHARD_VECTORS codes), writes each to its own file, then
streams the shards' lists, list by list, into the index file in the layout FAISS writes for its
own lists, so that a reader maps them (ann.load(mapped=True)) instead of reading them. One file,
as for the smaller layouts: it is saved by a rename, and it is what `check` reads.

Why not the IVF over fp16 codes that ann.py builds: at 10^7 CLIP vectors that index holds 10 GB
in memory, at 10^9 a terabyte. Product quantisation keeps `code_bytes` a vector (64 for 512-d,
a sixteenth), and the lists live in one file read through the page cache, so a process holds
only the coarse quantiser and whatever lists its queries touch.

The plan follows autofaiss's reasoning:
- lists about sqrt(N) (a power of two; 4096 at 10^7, 32768 at 10^9), each trained on
  TRAIN_PER_LIST vectors, assigned through an HNSW graph of the centroids (a flat scan of 32768
  centroids per vector would cost more than the encoding);
- the code as large as the budget allows, at most one byte per MIN_SUB_DIMS components;
- OPQ, a learned rotation ahead of PQ, where each sub-quantiser covers OPQ_FROM components or
  more: there it spreads the variance over the sub-quantisers (benchmarks/ivfpq_scale.py
  measures it against plain PQ).
Re-ranking: PQ's estimated scores order near neighbours loosely; the top RERANK*k candidates are
scored again on exact vectors (the catalog's float16 ones, or a memory-mapped array), which
gives back most of what the code lost.
"""

from __future__ import annotations

import math
import os
import re
import struct
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from searchapp.errors import UsageError
from searchapp.vectors import ann

PQ_ABOVE = 5_000_000  # vectors of a kind above which the fp16 IVF (ann.py) gives way to PQ
BUDGET_VARIABLE = "SEARCHAPP_INDEX_MEMORY"  # bytes the lists of one kind may take, e.g. 16G
BUDGET_SHARE = 4  # without it, a kind's lists may take a quarter of the machine's memory
TRAIN_PER_LIST = 40
CODE_CHOICES = (128, 96, 64, 48, 32, 16, 8)  # bytes a vector, largest first
MIN_SUB_DIMS = 4  # components a sub-quantiser covers at the least
OPQ_FROM = 8  # components a sub-quantiser covers from which OPQ is used
# candidates per wanted result re-scored on exact vectors: at 1M (PQ64, 64 probes) 10, 30 and
# 100 gave recall@10 0.90, 0.94 and 0.95 without OPQ, 0.945, 0.951 and 0.951 with it
RERANK = 30
RERANK_DEPTH = RERANK * ann.NEIGHBOURS  # candidates beyond k that a library's search re-scores
ID_BYTES = 8
PROBES = (8, 16, 32, 64, 128, 256, 512)
# re-ranked recall@10 that tuning asks of the probes: at 1M its ceiling was 0.95-0.96 (the
# true neighbours of a query fall in lists no probe reaches), which took half the lists to meet
RECALL_TARGET = 0.9
HNSW_NEIGHBOURS = 32
# vectors a build holds before writing them out as a shard: 72 MB of PQ64 codes and ids
SHARD_VECTORS = 1_000_000
MAX_SHARDS = 256  # a merge maps each shard file: past this many, shards grow instead

ExactVectors = Callable[[np.ndarray], np.ndarray]  # ids -> (len(ids), dim) float32
# list j -> the parts it is made of, in order: (codes, ids) of each, as bytes or arrays
ListParts = Callable[[int], list[tuple[np.ndarray, np.ndarray]]]


def _faiss() -> Any:
    import faiss

    return faiss


@dataclass(frozen=True)
class PQPlan:
    count: int
    dim: int
    lists: int
    code_bytes: int
    opq: bool

    @property
    def factory(self) -> str:
        """The FAISS index_factory string of the plan."""
        rotation = f"OPQ{self.code_bytes}," if self.opq else ""
        return f"{rotation}IVF{self.lists}_HNSW{HNSW_NEIGHBOURS},PQ{self.code_bytes}"

    @property
    def train_count(self) -> int:
        return min(self.count, self.lists * TRAIN_PER_LIST)

    @property
    def list_bytes(self) -> int:
        """The inverted lists' size on disk: a code and an id a vector."""
        return self.count * (self.code_bytes + ID_BYTES)

    @property
    def memory_bytes(self) -> int:
        """What a query process holds: the centroids with their graph, and the rotation."""
        centroids = self.lists * (self.dim * 4 + HNSW_NEIGHBOURS * 2 * 4)
        rotation = self.dim * self.dim * 4 if self.opq else 0
        codebooks = self.dim * 256 * 4
        return centroids + rotation + codebooks


def lists_for(count: int) -> int:
    return int(max(256, 2 ** round(math.log2(math.sqrt(count)))))


def plan_for(count: int, dim: int, budget_bytes: int) -> PQPlan:
    """The IVF-PQ layout for `count` vectors of `dim` whose lists must fit `budget_bytes`."""
    if count <= 0 or dim <= 0:
        raise ValueError("an IVF-PQ plan needs vectors")
    if dim % min(CODE_CHOICES):
        raise ValueError(f"no PQ code of {CODE_CHOICES} bytes divides a width of {dim}")
    lists = lists_for(count)
    fitting = [
        m
        for m in CODE_CHOICES
        if dim % m == 0 and dim // m >= MIN_SUB_DIMS and count * (m + ID_BYTES) <= budget_bytes
    ]
    if not fitting:
        smallest = min(m for m in CODE_CHOICES if dim % m == 0)
        need = count * (smallest + ID_BYTES)
        raise ValueError(
            f"{count} vectors need at least {need / 2**30:.1f} GiB of lists "
            f"({smallest} bytes a code and {ID_BYTES} an id); the budget is "
            f"{budget_bytes / 2**30:.1f} GiB"
        )
    code = fitting[0]
    return PQPlan(count, dim, lists, code, opq=dim // code >= OPQ_FROM)


def trained(plan: PQPlan, sample: np.ndarray) -> Any:
    """An empty index of the plan, trained on `sample` (about plan.train_count vectors)."""
    faiss = _faiss()
    index = faiss.index_factory(plan.dim, plan.factory, faiss.METRIC_INNER_PRODUCT)
    # polysemous training orders codes for Hamming filtering, which search here never uses;
    # it took 95% of the training time (132 of 138 s for 20k vectors)
    faiss.downcast_index(faiss.extract_index_ivf(index)).do_polysemous_training = False
    index.train(np.ascontiguousarray(sample, dtype=np.float32))
    return index


def memory_budget() -> int:
    """Bytes one kind's lists may take: $SEARCHAPP_INDEX_MEMORY (a number of bytes, or with
    K, M, G or T), else a quarter of the machine's memory."""
    given = os.environ.get(BUDGET_VARIABLE, "").strip()
    if not given:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // BUDGET_SHARE
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([KMGT]?)i?B?", given, re.IGNORECASE)
    if not match:
        raise UsageError(
            f"{BUDGET_VARIABLE}={given!r} is not a size; give bytes, or a number with K, M, G "
            "or T (e.g. 16G)"
        )
    power = " KMGT".index(match.group(2).upper() or " ")
    return int(float(match.group(1)) * 1024**power)


def is_pq(index: Any) -> bool:
    """True for an index this module built (its lists hold product codes)."""
    faiss = _faiss()
    ivf = faiss.try_extract_index_ivf(index)
    return ivf is not None and isinstance(faiss.downcast_index(ivf), faiss.IndexIVFPQ)


def needs_rebuild(index: Any, count: int | None = None) -> bool:
    """True when a PQ index (of `count` vectors, when its changes lie beside it) has shrunk to
    half PQ_ABOVE, or its count calls for 4x or a quarter of its lists (the hysteresis of
    ann.needs_rebuild)."""
    count = int(index.ntotal) if count is None else count
    if count < PQ_ABOVE // 2:
        return True
    have = int(_faiss().extract_index_ivf(index).nlist)
    want = lists_for(count)
    return want >= 4 * have or 4 * want <= have


def build(
    dim: int, count: int, chunks: ann.Chunks, budget_bytes: int, path: Path, seed: int = 0
) -> Any:
    """A library kind's IVF-PQ index, planned for its count and the budget, trained on a sample
    of `chunks`, filled shard by shard and merged into the index file `path`, with probes tuned
    so that the true 10 nearest neighbours are among the first RERANK_DEPTH answers (a re-rank
    on exact vectors then orders them). Returns the file's index, memory-mapped."""
    try:
        plan = plan_for(count, dim, budget_bytes)
    except ValueError as exc:
        fix = "" if dim % min(CODE_CHOICES) else f": set {BUDGET_VARIABLE} higher (e.g. 16G)"
        raise UsageError(f"{exc}{fix}") from exc
    sample, tuning = ann.first_pass(chunks, count, plan.train_count, seed)
    empty = trained(plan, sample)
    del sample
    try:
        with tempfile.TemporaryDirectory(dir=path.parent, prefix=".shards-") as folder:
            shards = write_shards(empty, chunks, Path(folder), tuning.see, shard_size(count))
            write_merged(empty, shards, path)
        index = ann.load(path, mapped=True)
        probes = tuning.fewest_probes(
            index, depth=RERANK_DEPTH, target=RECALL_TARGET, choices=PROBES
        )
        write_probes(empty, path, int(index.ntotal), probes)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return index


def shard_size(count: int) -> int:
    """Vectors a shard of a build of `count` holds: SHARD_VECTORS, more past MAX_SHARDS of them
    (a merge maps every shard at once)."""
    return max(SHARD_VECTORS, math.ceil(count / MAX_SHARDS))


def write_shards(
    empty: Any,
    chunks: ann.Chunks,
    folder: Path,
    seen: Callable[[np.ndarray, np.ndarray], None],
    shard_vectors: int = SHARD_VECTORS,
) -> list[Path]:
    """The trained index filled from `chunks`, its lists written out as a shard file every
    `shard_vectors` vectors (each could be a task of its own: shards share nothing but the
    trained index). `seen` is shown every chunk on the way."""
    faiss = _faiss()
    paths: list[Path] = []
    shard = faiss.clone_index(empty)
    for ids, vectors in chunks():
        ids, vectors = np.asarray(ids), np.ascontiguousarray(vectors, dtype=np.float32)  # once
        seen(ids, vectors)
        start = 0
        while start < len(ids):  # a chunk may fill a shard and start the next
            part = slice(start, start + shard_vectors - shard.ntotal)
            ann.add(shard, ids[part], vectors[part])
            start = part.stop
            if shard.ntotal >= shard_vectors:
                paths.append(_write_lists(shard, folder / f"shard-{len(paths)}.lists"))
                shard = faiss.clone_index(empty)
    if shard.ntotal or not paths:
        paths.append(_write_lists(shard, folder / f"shard-{len(paths)}.lists"))
    return paths


def _write_lists(index: Any, path: Path) -> Path:
    with open(path, "wb") as handle:  # Python's writes: a full disk is an OSError, not a print
        write_lists(index, handle)
    return path


def write_lists(index: Any, handle: BinaryIO) -> None:
    """An index's lists alone, without the quantiser and codebooks (a shard's, which every
    shard shares; added vectors', which the file they were added to holds): each list's size,
    then each list's codes and ids, as the index file lays them out."""
    faiss = _faiss()
    ivf = faiss.extract_index_ivf(index)
    lists, code_size = ivf.invlists, int(ivf.code_size)
    sizes = np.array([lists.list_size(j) for j in range(ivf.nlist)], "<u8")
    handle.write(sizes.tobytes())
    for j in np.flatnonzero(sizes):
        size = int(sizes[j])
        handle.write(faiss.rev_swig_ptr(lists.get_codes(int(j)), size * code_size))
        handle.write(faiss.rev_swig_ptr(lists.get_ids(int(j)), size))


def _lists_header(ivf: Any, layout: bytes, count: int) -> bytes:
    return struct.pack("<4sQQ4sQ", b"ilar", ivf.nlist, ivf.code_size, layout, count)


def _index_header(empty: Any, total: int, probes: int | None = None) -> bytes:
    """The bytes FAISS writes for the trained index ahead of its lists, as if it held `total`
    vectors. FAISS writes an IVF index's lists last; an empty index's are a fixed 32 bytes."""
    faiss = _faiss()
    index = faiss.clone_index(empty)
    ivf = faiss.extract_index_ivf(index)
    index.ntotal = ivf.ntotal = total  # an OPQ index counts in its transform and its IVF
    if probes is not None:
        ivf.nprobe = probes
    data = faiss.serialize_index(index).tobytes()
    empty_lists = _lists_header(ivf, b"sprs", 0)
    if not data.endswith(empty_lists):
        raise RuntimeError(
            f"this FAISS ({faiss.__version__}) does not write an IVF-PQ index's lists last; "
            "the merge of shards needs a FAISS that does (1.7 to 1.15 do)"
        )
    return data[: -len(empty_lists)]


def write_merged(empty: Any, shard_paths: list[Path], path: Path) -> None:
    """The shards' lists merged into one index file at `path`, written list by list in FAISS's
    own layout for them (a full ArrayInvertedLists: sizes, then each list's codes and ids), from
    the shard files memory-mapped, so that the merge holds no list in memory and readers
    memory-map the result."""
    faiss = _faiss()
    ivf = faiss.extract_index_ivf(empty)
    nlist, code_size = int(ivf.nlist), int(ivf.code_size)
    shards = [np.memmap(p, np.uint8, "r") for p in shard_paths]
    sizes = np.stack([np.frombuffer(shard[: 8 * nlist], "<u8") for shard in shards]).astype(
        np.int64
    )
    # where each shard's list j starts: past the sizes and the lists before it
    spans = sizes * (code_size + ID_BYTES)
    starts = 8 * nlist + np.cumsum(spans, axis=1) - spans

    def parts(j: int) -> list[tuple[np.ndarray, np.ndarray]]:
        held = [
            (shards[n], int(starts[n, j]), int(sizes[n, j])) for n in np.flatnonzero(sizes[:, j])
        ]
        return [
            (
                shard[start : start + size * code_size],
                shard[start + size * code_size : start + size * (code_size + ID_BYTES)],
            )
            for shard, start, size in held
        ]

    with open(path, "wb") as handle:
        write_lists_file(empty, parts, handle)
        handle.flush()
        os.fsync(handle.fileno())


def write_lists_file(
    empty: Any, parts: ListParts, handle: BinaryIO, probes: int | None = None
) -> int:
    """An index file, from the start of `handle`: the trained `empty` index's header, then its
    lists in FAISS's own layout for them (a full ArrayInvertedLists: sizes, then each list's
    codes and ids), list j made of `parts(j)`, one list in memory at a time. The count and the
    sizes, known once the lists are written, are then written in place. Returns the count."""
    faiss = _faiss()
    ivf = faiss.extract_index_ivf(empty)
    nlist = int(ivf.nlist)
    sizes = np.zeros(nlist, "<u8")
    header = _index_header(empty, 0, probes) + _lists_header(ivf, b"full", nlist)
    handle.write(header)
    handle.write(sizes.tobytes())  # written again once known
    for j in range(nlist):
        held = parts(j)
        for codes, _ in held:
            handle.write(codes.data)
        for _, ids in held:
            handle.write(ids.data)
        sizes[j] = sum(ids.nbytes for _, ids in held) // ID_BYTES
    total = int(sizes.sum())
    counted = _index_header(empty, total, probes) + _lists_header(ivf, b"full", nlist)
    if len(counted) != len(header):  # written in place: the same length
        raise RuntimeError(f"FAISS {faiss.__version__} writes the count in a variable field")
    handle.seek(0)
    handle.write(counted)
    handle.write(sizes.tobytes())
    handle.seek(0, os.SEEK_END)
    return total


def write_probes(empty: Any, path: Path, total: int, probes: int) -> None:
    """Set the probes a merged index file of `total` vectors opens with: its header written
    again, in place (the probes are a field of fixed width in it)."""
    header = _index_header(empty, total, probes)
    if len(header) != len(_index_header(empty, total)):  # written in place: the same length
        raise RuntimeError(f"FAISS {_faiss().__version__} writes the probes in a variable field")
    with open(path, "r+b") as handle:
        handle.write(header)
        handle.flush()
        os.fsync(handle.fileno())


def is_mapped(index: Any) -> bool:
    """True when an IVF index's lists are memory-mapped from its file (read-only)."""
    faiss = _faiss()
    ivf = faiss.try_extract_index_ivf(index)
    return ivf is not None and isinstance(
        faiss.downcast_InvertedLists(ivf.invlists), faiss.OnDiskInvertedLists
    )


def writable(index: Any, *, shared: bool = True) -> None:
    """Copy a memory-mapped index's lists into memory, so that it can take changes. An index
    no other thread has seen (`shared` False) lets its mapping go at once."""
    faiss = _faiss()
    ivf = faiss.extract_index_ivf(index)
    mapped = ivf.invlists
    copy = faiss.ArrayInvertedLists(ivf.nlist, ivf.code_size)
    for j in range(ivf.nlist):
        size = mapped.list_size(j)
        if size:
            copy.add_entries(j, size, mapped.get_ids(j), mapped.get_codes(j))
    # a shared index's mapped lists are left alive, not freed: a search on another thread may
    # be reading them (the mapping is the file's page cache; it goes when the process ends)
    if shared:
        ivf.own_invlists = False
    ivf.replace_invlists(copy, True)
    copy.this.disown()  # the index owns it now (FAISS's wrapper does not say so for this call)


def rerank(
    queries: np.ndarray, candidates: np.ndarray, k: int, exact: ExactVectors
) -> tuple[np.ndarray, np.ndarray]:
    """(scores, ids): each query's candidates scored on their exact vectors, the best k kept;
    -1 ids and -inf scores where fewer were found. A candidate whose vector is NaN (gone from
    the catalog since the index was read) is dropped."""
    out_scores = np.full((len(queries), k), -np.inf, np.float32)
    out_ids = np.full((len(queries), k), -1, np.int64)
    for row, (query, found) in enumerate(zip(queries, candidates, strict=True)):
        found = found[found >= 0]
        if not len(found):
            continue
        rescored = exact(found) @ query
        kept = ~np.isnan(rescored)
        found, rescored = found[kept], rescored[kept]
        best = np.argsort(-rescored)[:k]
        out_scores[row, : len(best)] = rescored[best]
        out_ids[row, : len(best)] = found[best]
    return out_scores, out_ids


def search(
    index: Any,
    queries: np.ndarray,
    k: int,
    *,
    probes: int,
    exact: ExactVectors | None = None,
    allowed: np.ndarray | None = None,
    candidates: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(scores, ids), k a query, best first; -1 ids where fewer were found. With `exact`, the
    top `candidates` (default RERANK*k) are scored again on exact vectors. `allowed` ids
    filter inside the search, with probes widened by the share filtered out, so that a filter
    keeps k."""
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    wanted = (candidates or k * RERANK) if exact is not None else k
    ivf = _faiss().extract_index_ivf(index)
    ivf.nprobe = min(int(ivf.nlist), probes)
    # the library's filter and its widening, with the probes asked for as the tuned ones
    params = ann.search_parameters(index, wanted, allowed, tuned_for=wanted)
    scores, ids = index.search(queries, wanted, params=params)
    if exact is None:
        return scores, ids
    return rerank(queries, ids, k, exact)


def fewest_probes(
    index: Any,
    queries: np.ndarray,
    truth: np.ndarray,
    exact: ExactVectors | None,
    k: int = 10,
) -> tuple[int, float]:
    """The fewest probes whose recall@k against `truth` (exact neighbour ids) reaches
    RECALL_TARGET, with the recall they reach; the most probes if none does."""
    nlist = int(_faiss().extract_index_ivf(index).nlist)
    reached = 0.0
    for probes in PROBES:
        probes = min(probes, nlist)
        _, found = search(index, queries, k, probes=probes, exact=exact)
        reached = recall_at(found, truth)
        if reached >= RECALL_TARGET or probes == nlist:
            return probes, reached
    return PROBES[-1], reached


def recall_at(found: np.ndarray, truth: np.ndarray) -> float:
    hits = sum(len(set(f.tolist()) & set(t.tolist())) for f, t in zip(found, truth, strict=True))
    return hits / max(1, truth.size)
