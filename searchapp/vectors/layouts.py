"""One kind's FAISS index, whichever layout its size gave it: exact, IVF over fp16 or int8
codes (ann.py), IVF-PQ mapped from its file (large.py), or that file with changes beside it
(layered.py). Searching, changing, checking and saving it, the same way for each."""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from searchapp.errors import DiskFullError, SearchappError
from searchapp.vectors import ann, large, layered
from searchapp.vectors.layered import Layered


def _faiss() -> Any:
    import faiss

    return faiss


def remove(index: Any, ids: list[int]) -> None:
    if isinstance(index, Layered):
        index.remove(ids)
    elif ids:
        index.remove_ids(np.asarray(ids, dtype=np.int64))


def add(index: Any, ids: np.ndarray, vectors: np.ndarray) -> None:
    if isinstance(index, Layered):
        index.add(ids, vectors)
    else:
        ann.add(index, ids, vectors)


def is_pq(index: Any) -> bool:
    """True for an IVF-PQ index, whether or not changes lie beside its file."""
    return isinstance(index, Layered) or large.is_pq(index)


def stored_ids(index: Any) -> np.ndarray:
    """Every id an index holds, for consistency checks."""
    return index.stored_ids() if isinstance(index, Layered) else ann.stored_ids(index)


def index_files(directory: Path) -> list[Path]:
    """Every index and changes file in a library's folder, and their temporary files."""
    return sorted({*directory.glob("index-*.faiss*"), *directory.glob(f"index-*{layered.SUFFIX}*")})


def search(
    index: Any,
    queries: np.ndarray,
    k: int,
    allowed: np.ndarray | None = None,
    exact: large.ExactVectors | None = None,
    off_cluster: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Inner-product kNN (exact, or IVF with probes tuned for recall), restricted to the
    `allowed` ids when given: a FAISS selector, so a restrictive filter still yields k hits when
    k exist. Ids are -1 past the available hits. With `exact` (a PQ index's), RERANK_DEPTH more
    candidates are fetched and all are scored again on their exact vectors. `off_cluster`: the
    queries lie outside the stored vectors' clusters (words against photos), and an IVF index
    probes more lists for them."""
    available = index.ntotal if allowed is None else min(index.ntotal, len(allowed))
    k = max(1, min(k, available))
    depth = k if exact is None else min(available, k + large.RERANK_DEPTH)
    # a PQ index's probes were tuned to bring 10 true neighbours into RERANK_DEPTH candidates
    tuned_for = ann.NEIGHBOURS if exact is None else ann.NEIGHBOURS + large.RERANK_DEPTH
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    with _threads_for(len(queries)):
        if isinstance(index, Layered):  # the file and the changes beside it, alike probed
            ivf = _faiss().extract_index_ivf(index.base)
            probes = ann.widened_probes(ivf, index.ntotal, depth, allowed, off_cluster, tuned_for)
            scores, ids = index.search(queries, depth, probes, allowed)
        else:
            params = ann.search_parameters(index, depth, allowed, off_cluster, tuned_for)
            scores, ids = index.search(queries, depth, params=params)
    if exact is None:
        return scores, ids
    return large.rerank(queries, ids, k, exact)


@contextlib.contextmanager
def _threads_for(queries: int) -> Iterator[None]:
    """One query gains nothing from FAISS's OpenMP pool, and its threads, left spinning, slow
    the BLAS of the next query's text encoder (measured: 49 ms -> 19 ms per text query)."""
    if queries > 1:
        yield
        return
    faiss = _faiss()
    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(threads)


def needs_rebuild(index: Any) -> bool:
    """True when a kind's size calls for another layout: exact, IVF over fp16 codes, IVF-PQ."""
    if isinstance(index, Layered):
        return large.needs_rebuild(index.base, index.ntotal)
    if large.is_pq(index):
        return large.needs_rebuild(index)
    return index.ntotal > large.PQ_ABOVE or ann.needs_rebuild(index)


def save_atomic(index: Any, path: Path) -> None:
    def write(handle: BinaryIO) -> None:
        # written through Python: faiss's own writer only prints a failed close (a full disk),
        # and an empty file was renamed into place
        writer = _faiss().PyCallbackIOWriter(handle.write)
        _faiss().write_index(index, writer)
        del writer

    write_atomic(path, write)


def write_atomic(path: Path, write: Callable[[BinaryIO], object]) -> None:
    """Write to a temporary file, fsync, then rename over the target: never a torn file."""
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except (OSError, RuntimeError) as exc:  # faiss reports its own I/O errors as RuntimeError
        with contextlib.suppress(OSError):
            tmp.unlink()
        if _disk_full(exc):
            raise DiskFullError(
                f"disk full while writing {path}; free space on {path.parent} and run "
                "`searchapp rebuild-index`: the catalog is intact"
            ) from exc
        if isinstance(exc, OSError):
            raise
        raise SearchappError(f"could not write {path}: {exc}") from exc


def _disk_full(exc: Exception) -> bool:
    """faiss reports its own I/O errors as RuntimeError, with the system's words in them."""
    return getattr(exc, "errno", None) == errno.ENOSPC or "No space left" in str(exc)
