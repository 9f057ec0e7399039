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

Search = Callable[[Any, Any], tuple[np.ndarray, np.ndarray]]  # (index, params) -> answers


def _faiss() -> Any:
    import faiss

    return faiss


class Layered:
    """A mapped PQ index file (`base`, of generation `base_generation`) and its changes since:
    `side`, an index of the vectors added, and `removed`, ids of the file's vectors gone. An id
    removed from the file and added again (SQLite reuses ids) is in both, and counts once."""

    def __init__(self, base: Any, base_path: Path, base_generation: int) -> None:
        self.base, self.base_path, self.base_generation = base, base_path, base_generation
        self.side = _trained_empty(base_path)
        self.removed: set[int] = set()
        self.side_ids: set[int] = set()
        # the removed ids, sorted, and their selector: made once per set of removals
        self._removed_sorted: np.ndarray | None = None
        self._excluded: tuple[Any, ...] | None = None

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
        self.side_ids.update(np.asarray(ids).tolist())

    def remove(self, ids: list[int]) -> None:
        in_side = [i for i in ids if i in self.side_ids]
        if in_side:
            self.side.remove_ids(np.asarray(in_side, dtype=np.int64))
            self.side_ids.difference_update(in_side)
        from_base = set(ids).difference(in_side)
        if from_base:
            self.removed.update(from_base)
            self._removed_sorted = self._excluded = None

    def search(
        self, run: Search, probes: int, allowed: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """The best answers of the file (its removed ids filtered out) and of the additions,
        each searched by `run` with the same probes; -1 ids last."""
        faiss = _faiss()
        base_allowed, kept = allowed, None
        if self.removed and allowed is not None:
            base_allowed = allowed[~np.isin(allowed, self._removed_ids())]
        elif self.removed:
            kept = self._excluded_selector()
        base_selector = kept[0] if kept else _batch(base_allowed)
        ivf = faiss.extract_index_ivf(self.base)
        scores, ids = run(self.base, ann.probing(ivf, probes, base_selector))
        if not self.side.ntotal:
            return scores, ids
        side_ivf = faiss.extract_index_ivf(self.side)
        more_scores, more_ids = run(self.side, ann.probing(side_ivf, probes, _batch(allowed)))
        scores, ids = np.hstack([scores, more_scores]), np.hstack([ids, more_ids])
        scores[ids < 0] = -np.inf
        best = np.argsort(-scores, axis=1, kind="stable")[:, : more_ids.shape[1]]
        return np.take_along_axis(scores, best, 1), np.take_along_axis(ids, best, 1)

    def stored_ids(self) -> np.ndarray:
        held = ann.stored_ids(self.base)
        held = held[~np.isin(held, self._removed_ids())]
        return np.concatenate([held, ann.stored_ids(self.side)])

    def _removed_ids(self) -> np.ndarray:
        if self._removed_sorted is None:
            self._removed_sorted = np.sort(np.fromiter(self.removed, np.int64, len(self.removed)))
        return self._removed_sorted

    def _excluded_selector(self) -> tuple[Any, ...]:
        """Every id but the removed ones: made once per set of removals (a search would
        otherwise hash them all each time)."""
        if self._excluded is None:
            faiss = _faiss()
            removed = faiss.IDSelectorBatch(self._removed_ids())
            self._excluded = (faiss.IDSelectorNot(removed), removed)  # the outer refers to it
        return self._excluded

    def write_changes(self, handle: BinaryIO) -> None:
        """The changes file: a header naming the file they lie on, the removed ids, then the
        additions' lists (large.write_lists' layout)."""
        nlist = int(_faiss().extract_index_ivf(self.side).nlist)
        removed = self._removed_ids().astype("<i8")
        handle.write(_HEADER.pack(_MAGIC, self.base_generation, len(removed), nlist))
        handle.write(removed.tobytes())
        large.write_lists(self.side, handle)

    def write_compacted(self, handle: BinaryIO) -> int:
        """The file and its changes as one index file, streamed list by list, with the file's
        probes. Returns the vectors written."""
        faiss = _faiss()
        removed = self._removed_ids()
        base_ivf = faiss.extract_index_ivf(self.base)
        empty = faiss.clone_index(self.side)  # the trained quantiser and codes, no vectors
        empty.reset()

        def parts(j: int) -> list[tuple[np.ndarray, np.ndarray]]:
            held = []
            for index, filtered in ((self.base, True), (self.side, False)):
                codes, ids = _list_of(index, j)
                if filtered and len(removed) and len(ids):
                    at = np.minimum(np.searchsorted(removed, ids), len(removed) - 1)
                    kept = removed[at] != ids
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
        layered.side_ids.update(ids.tolist())
        at += codes.nbytes + ids.nbytes
    layered.side.ntotal = ivf.ntotal = int(sizes.sum())  # an OPQ index counts in both
    layered.removed.update(removed.tolist())
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


def _batch(ids: np.ndarray | None) -> Any:
    if ids is None:
        return None
    return _faiss().IDSelectorBatch(np.ascontiguousarray(ids, dtype=np.int64))
