"""Pixel checks of proposed pairs: two at a time, and remembered.

A check costs a decode and a match (~35 ms), so:
- a pair whose photos are already grouped through other confirmed pairs is not checked;
- checks run on as many threads as there are cores (OpenCV and Pillow release the GIL), each
  thread with its own comparer and its own cache of decoded photos;
- the evidence of every check is kept in the catalog, keyed by the two files' content hashes, so
  a second `dupes` run checks only pairs it has not seen (the evidence, not the verdict, is kept:
  changed thresholds apply to it without a new check).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from typing import Any, Protocol

from searchapp.dupes.groups import UnionFind
from searchapp.dupes.pixels import PixelComparer, PixelEvidence
from searchapp.store.dupe_reads import PhotoTable

CHECK_VERSION = 3  # bump when PixelComparer measures differently: old evidence is then ignored
BATCH_PER_THREAD = 4


class Candidate(Protocol):
    a: int
    b: int
    variant: int


class _Comparers(threading.local):
    def __init__(self) -> None:
        self.comparer = PixelComparer()


def evidence_key(table: PhotoTable, candidate: Candidate) -> tuple[str, str, int]:
    return (
        table.content_hashes[candidate.a],
        table.content_hashes[candidate.b],
        candidate.variant * 100 + CHECK_VERSION,
    )


def check_all(
    table: PhotoTable,
    candidates: Sequence[Candidate],
    sets: UnionFind,
    known: dict[tuple[str, str, int], dict[str, Any]],
    on_result: Callable[[Candidate, PixelEvidence], None],
    on_progress: Callable[[int, int], None] | None = None,
    threads: int | None = None,
) -> tuple[int, dict[tuple[str, str, int], dict[str, Any]]]:
    """Check every candidate not yet joined, in order, in small parallel batches; return the
    number of checks run and their evidence, by key, for the catalog to keep."""
    threads = threads or max(1, min(4, os.cpu_count() or 1))
    local = _Comparers()
    fresh: dict[tuple[str, str, int], dict[str, Any]] = {}

    def measure(candidate: Candidate) -> PixelEvidence:
        return local.comparer.compare(
            table.paths[candidate.a], table.paths[candidate.b], candidate.variant
        )

    position = checked = 0
    with ThreadPoolExecutor(threads, thread_name_prefix="dupes-check") as pool:
        while position < len(candidates):
            batch: list[Candidate] = []
            while position < len(candidates) and len(batch) < threads * BATCH_PER_THREAD:
                candidate = candidates[position]
                position += 1
                if sets.find(candidate.a) == sets.find(candidate.b):
                    continue
                stored = known.get(evidence_key(table, candidate))
                if stored is not None:
                    on_result(candidate, PixelEvidence(**stored))
                    continue
                batch.append(candidate)
            checked += len(batch)
            for candidate, evidence in zip(batch, pool.map(measure, batch), strict=True):
                if not evidence.unreadable:  # a file that is back later gets its check
                    fresh[evidence_key(table, candidate)] = asdict(evidence)
                on_result(candidate, evidence)
            if on_progress and checked:  # no bar for a run whose checks were all kept
                on_progress(position, len(candidates))
    return checked, fresh
