"""A big IVF-PQ kind that takes changes without copying its lists.

The file a PQ kind was saved to stays memory-mapped and is never written again. Beside it lie
the changes since: a small index of the vectors added (the same coarse quantiser and codebooks,
so that its codes and scores are the file's) and the ids removed, which the file's answers
filter out. A search asks both and keeps the best. Saving writes only the changes, to a
`.changes` file that names the file it lies on; once they pass a COMPACT_SHARE of that file, a
save streams the two into one new file instead, holding one list in memory at a time.

Why: to change a mapped kind, the writer and every search that caught up from the change log
copied its lists into memory (0.68 GiB at 10^7 vectors, 7 GiB at 10^8), and each save wrote
them whole again.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from searchapp.vectors import ann, large

SUFFIX = ".changes"
COMPACT_SHARE = 16  # changes past a sixteenth of the file's vectors are merged into a new one
_MAGIC = b"SAchg001"
_HEADER = struct.Struct("<8sQQQ")  # magic, the file's generation, removed ids, lists


def _faiss() -> Any:
    import faiss

    return faiss


class Layered:
    """A mapped PQ index file (`base`, of generation `base_generation`) and its changes since:
    `side`, an index of the vectors added, and `removed`, ids of the file's vectors gone (sorted,
    8 bytes each: at a sixteenth of 10^8 a Python set took 0.4 GiB). An id removed from the
    file and added again (SQLite reuses ids) is in both, and counts once."""

    def __init__(self, base: Any, base_path: Path, base_generation: int) -> None:
        self.base, self.base_path, self.base_generation = base, base_path, base_generation
        self.side = _trained_empty(base_path)
        self.removed = np.zeros(0, np.int64)
        self._excluded: tuple[Any, ...] | None = None  # the removed ids' selector, made once

    @property
    def ntotal(self) -> int:
        return int(self.base.ntotal) - len(self.removed) + int(self.side.ntotal)

    @property
    def d(self) -> int:
        return int(self.base.d)

    def changes(self) -> int:
        return len(self.removed) + int(self.side.ntotal)

    def worth_compacting(self) -> bool:
        return self.changes() * COMPACT_SHARE > int(self.base.ntotal)

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        ann.add(self.side, ids, vectors)

    def remove(self, ids: list[int]) -> None:
        """Remove from the additions the ids they hold, and the rest from the file. Which the
        additions hold is read from their lists: a pass over them (a copy of their ids) at
        each removal, which costs what it saves, a set of the ids held in memory."""
        asked = np.unique(np.asarray(ids, dtype=np.int64))
        held = ann.stored_ids(self.side) if self.side.ntotal else np.zeros(0, np.int64)
        in_side = asked[np.isin(asked, held)]
        if len(in_side):
            self.side.remove_ids(in_side)
        self._forget(np.setdiff1d(asked, in_side, assume_unique=True))

    def _forget(self, ids: np.ndarray) -> None:
        """Add sorted ids to the removed ones, merging the two sorted runs."""
        ids = ids[~_holds(self.removed, ids)]
        if len(ids):
            # a stable sort merges two sorted runs in one pass (timsort)
            self.removed = np.sort(np.concatenate([self.removed, ids]), kind="stable")
            self._excluded = None

    def search(
        self, queries: np.ndarray, k: int, probes: int, allowed: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """The best k answers of the file (its removed ids filtered out) and of the additions,
        -1 ids last. Both are searched with the same probes, in the lists that the file's
        quantiser chose once for the two (they share its centroids)."""
        faiss = _faiss()
        base_allowed, kept = allowed, None
        if len(self.removed) and allowed is not None:
            base_allowed = allowed[~_holds(self.removed, allowed)]
        elif len(self.removed):
            kept = self._excluded_selector()
        base_selector = kept[0] if kept else _batch(base_allowed)
        ivf = faiss.extract_index_ivf(self.base)
        params = ann.probing(ivf, probes, base_selector)
        x = _transformed(self.base, queries)
        coarse, lists = ivf.quantizer.search(x, params.nprobe, params=params.quantizer_params)
        scores, ids = _preassigned(ivf, x, k, lists, coarse, params)
        if not self.side.ntotal:
            return scores, ids
        side_ivf = faiss.extract_index_ivf(self.side)
        side_params = ann.probing(side_ivf, probes, _batch(allowed))
        more_scores, more_ids = _preassigned(side_ivf, x, k, lists, coarse, side_params)
        scores, ids = np.hstack([scores, more_scores]), np.hstack([ids, more_ids])
        scores[ids < 0] = -np.inf
        best = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        return np.take_along_axis(scores, best, 1), np.take_along_axis(ids, best, 1)

    def stored_ids(self) -> np.ndarray:
        held = ann.stored_ids(self.base)
        held = held[~_holds(self.removed, held)]
        return np.concatenate([held, ann.stored_ids(self.side)])

    def _excluded_selector(self) -> tuple[Any, ...]:
        """Every id but the removed ones: made once per set of removals (a search would
        otherwise hash them all each time)."""
        if self._excluded is None:
            faiss = _faiss()
            removed = faiss.IDSelectorBatch(self.removed)
            self._excluded = (faiss.IDSelectorNot(removed), removed)  # the outer refers to it
        return self._excluded

    def write_changes(self, handle: BinaryIO) -> None:
        """The changes file: a header naming the file they lie on, the removed ids, then the
        additions' lists (large.write_lists' layout)."""
        nlist = int(_faiss().extract_index_ivf(self.side).nlist)
        removed = self.removed.astype("<i8")
        handle.write(_HEADER.pack(_MAGIC, self.base_generation, len(removed), nlist))
        handle.write(removed.tobytes())
        large.write_lists(self.side, handle)

    def write_compacted(self, handle: BinaryIO) -> int:
        """The file and its changes as one index file, streamed list by list, with the file's
        probes. Returns the vectors written."""
        faiss = _faiss()
        removed = self.removed
        base_ivf = faiss.extract_index_ivf(self.base)
        empty = faiss.clone_index(self.side)  # the trained quantiser and codes, no vectors
        empty.reset()

        def parts(j: int) -> list[tuple[np.ndarray, np.ndarray]]:
            held = []
            for index, filtered in ((self.base, True), (self.side, False)):
                codes, ids = _list_of(index, j)
                if filtered and len(ids):
                    kept = ~_holds(removed, ids)
                    codes, ids = codes[kept], ids[kept]
                if len(ids):
                    held.append((np.ascontiguousarray(codes), np.ascontiguousarray(ids)))
            return held

        return large.write_lists_file(empty, parts, handle, probes=int(base_ivf.nprobe))


def read_changes(path: Path, base_path_for: Callable[[int], Path]) -> Layered:
    """A changes file and the mapped index file it lies on (its generation's path given by
    `base_path_for`). OSError where the changes file is gone; RuntimeError where it is torn,
    or the index file is gone or unreadable."""
    data = path.read_bytes()
    if len(data) < _HEADER.size:
        raise RuntimeError(f"{path.name} is cut short")
    magic, generation, removed_count, nlist = _HEADER.unpack_from(data)
    if magic != _MAGIC:
        raise RuntimeError(f"{path.name} is no changes file")
    base_path = base_path_for(generation)
    layered = Layered(ann.load(base_path, mapped=True), base_path, generation)
    at = _HEADER.size
    if len(data) < at + 8 * removed_count:
        raise RuntimeError(f"{path.name} is torn")
    removed = np.frombuffer(data, "<i8", removed_count, at)
    at += removed.nbytes
    faiss = _faiss()
    ivf = faiss.extract_index_ivf(layered.side)
    if nlist != ivf.nlist or len(data) < at + 8 * nlist:
        raise RuntimeError(f"{path.name} does not fit {base_path.name}")
    sizes = np.frombuffer(data, "<u8", nlist, at).astype(np.int64)
    at += 8 * nlist
    code_size = int(ivf.code_size)
    if len(data) != at + int(sizes.sum()) * (code_size + large.ID_BYTES):
        raise RuntimeError(f"{path.name} is torn")
    lists = ivf.invlists
    for j in np.flatnonzero(sizes):
        size = int(sizes[j])
        codes = np.frombuffer(data, np.uint8, size * code_size, at)
        ids = np.frombuffer(data, "<i8", size, at + codes.nbytes)
        lists.add_entries(int(j), size, faiss.swig_ptr(ids), faiss.swig_ptr(codes))
        at += codes.nbytes + ids.nbytes
    layered.side.ntotal = ivf.ntotal = int(sizes.sum())  # an OPQ index counts in both
    layered._forget(np.sort(removed))
    return layered


def base_generation(path: Path) -> int | None:
    """The generation of the index file a changes file lies on; None where its header is torn."""
    with open(path, "rb") as handle:
        head = handle.read(_HEADER.size)
    if len(head) < _HEADER.size or not head.startswith(_MAGIC):
        return None
    return int(_HEADER.unpack(head)[1])


def _trained_empty(path: Path) -> Any:
    """The index of the file at `path` without its vectors: the trained quantiser and codes,
    and lists of its own, in memory, that take additions."""
    faiss = _faiss()
    index = ann.load(path, mapped=True)  # its own mapping, let go at once
    ivf = faiss.extract_index_ivf(index)
    lists = faiss.ArrayInvertedLists(ivf.nlist, ivf.code_size)
    ivf.replace_invlists(lists, True)
    lists.this.disown()  # the index owns it now (FAISS's wrapper does not say so for this call)
    index.ntotal = ivf.ntotal = 0
    return index


def _list_of(index: Any, j: int) -> tuple[np.ndarray, np.ndarray]:
    """List j's codes (one row a vector) and ids: views of the index's memory or mapping."""
    faiss = _faiss()
    ivf = faiss.extract_index_ivf(index)
    lists, size, width = ivf.invlists, ivf.invlists.list_size(j), int(ivf.code_size)
    if not size:
        return np.zeros((0, width), np.uint8), np.zeros(0, np.int64)
    codes = faiss.rev_swig_ptr(lists.get_codes(j), size * width).reshape(size, width)
    return codes, faiss.rev_swig_ptr(lists.get_ids(j), size)


def _holds(sorted_ids: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """For each of `ids`, whether the sorted array holds it: a binary search each."""
    if not len(sorted_ids):
        return np.zeros(len(ids), bool)
    at = np.minimum(np.searchsorted(sorted_ids, ids), len(sorted_ids) - 1)
    return np.asarray(sorted_ids[at] == ids)


def _transformed(index: Any, queries: np.ndarray) -> np.ndarray:
    """Queries as an index's IVF sees them: through its rotation (OPQ), where it has one."""
    faiss = _faiss()
    index = faiss.downcast_index(index)
    if isinstance(index, faiss.IndexPreTransform):
        for i in range(index.chain.size()):
            queries = index.chain.at(i).apply(queries)
    return np.ascontiguousarray(queries, dtype=np.float32)


def _preassigned(
    ivf: Any, x: np.ndarray, k: int, lists: np.ndarray, coarse: np.ndarray, params: Any
) -> tuple[np.ndarray, np.ndarray]:
    """An IVF search in lists chosen beforehand. FAISS's Python wrapper of it refuses search
    parameters, which carry the selector; its C++ call takes them."""
    faiss = _faiss()
    n = len(x)
    scores, ids = np.empty((n, k), np.float32), np.empty((n, k), np.int64)
    lists, coarse = np.ascontiguousarray(lists, np.int64), np.ascontiguousarray(coarse, np.float32)
    ivf.search_preassigned_c(
        n,
        faiss.swig_ptr(x),
        k,
        faiss.swig_ptr(lists),
        faiss.swig_ptr(coarse),
        faiss.swig_ptr(scores),
        faiss.swig_ptr(ids),
        False,
        params,
    )
    return scores, ids


def _batch(ids: np.ndarray | None) -> Any:
    if ids is None:
        return None
    return _faiss().IDSelectorBatch(np.ascontiguousarray(ids, dtype=np.int64))
