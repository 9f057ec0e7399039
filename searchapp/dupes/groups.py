"""Pairs joined into groups by union-find, and which photo of a group to keep, with why."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from searchapp.store.dupe_reads import PhotoTable


@dataclass(frozen=True)
class DupePair:
    a: int  # rows of the photo table
    b: int
    tier: str  # exact, near, crop or similar
    score: float
    reason: str
    frames: tuple[tuple[float, float, float], ...] = ()  # two videos': matched (time a, b, cos)
    offset: float | None = None  # two videos': seconds from a's timeline to b's


@dataclass
class DupeGroup:
    rows: list[int]
    keep: int
    why: str
    pairs: list[DupePair] = field(default_factory=list)


class UnionFind:
    def __init__(self, size: int):
        self.parent = np.arange(size)

    def find(self, item: int) -> int:
        root = item
        while self.parent[root] != root:
            root = int(self.parent[root])
        while self.parent[item] != root:  # path compression
            self.parent[item], item = root, int(self.parent[item])
        return root

    def union(self, a: int, b: int) -> bool:
        root_a, root_b = self.find(a), self.find(b)
        if root_a == root_b:
            return False
        self.parent[max(root_a, root_b)] = min(root_a, root_b)
        return True


def build_groups(
    table: PhotoTable, pairs: list[DupePair], keep_paths: set[str] | None = None
) -> list[DupeGroup]:
    """Groups of two or more photos, largest first; each with its keeper and its pairs."""
    sets = UnionFind(len(table))
    for pair in pairs:
        sets.union(pair.a, pair.b)
    members: dict[int, list[int]] = {}
    for row in sorted({row for pair in pairs for row in (pair.a, pair.b)}):
        members.setdefault(sets.find(row), []).append(row)
    by_root: dict[int, list[DupePair]] = {}
    for pair in pairs:
        by_root.setdefault(sets.find(pair.a), []).append(pair)
    groups = []
    for root, rows in members.items():
        keep, why = choose_keeper(table, rows, keep_paths or set())
        groups.append(DupeGroup(rows, keep, why, by_root.get(root, [])))
    groups.sort(key=lambda g: (-len(g.rows), table.paths[g.keep]))
    return groups


GREYSCALE_BELOW = 3.0  # colourfulness of a greyscale copy is 0-1; of a dull colour photo 10+
# Blur scores (variance of the Laplacian) closer than this, relative to the sharper, are noise:
# on 40 real photos of ../shared/data/photos, a lossless PNG or turned copy moves the score by
# 0.1% at most and a JPEG re-save at quality 75 by up to 22%, where a copy softened by a Gaussian
# of 0.7 px loses 48% (median). Within the margin, the original and the earlier file decide.
SHARPNESS_MARGIN = 0.25
LONGER_MARGIN = 0.05  # relative: lengths this close are one video's, re-encoded
ORIGINAL_FORMATS = frozenset({"JPEG", "MPO", "HEIF"})  # what cameras and phones write
# Files modified this close together were written by one run of a script or a copy (`cp -r`
# writes hundreds a second): which came first says nothing of which is the original. FAT
# stores times to 2 s.
SAME_WRITE_S = 2.0


@dataclass(frozen=True)
class _Criterion:
    """One step of the keep rule: the rows scoring highest stay, within `margin` (relative to
    the best) and `slack` (absolute)."""

    score: Callable[[int], float]
    margin: float
    reason: Callable[[int, list[int]], str]  # why the chosen row beat the rows this step dropped
    slack: float = 0.0


def choose_keeper(table: PhotoTable, rows: list[int], keep_paths: set[str]) -> tuple[int, str]:
    """The highest resolution; then colour over a greyscale copy; then clearly the sharpest;
    then the original: EXIF camera data, the earliest taken by the camera's clock (EXIF), the
    oldest file by more than SAME_WRITE_S, and a camera's format over a converted one only when
    the dates cannot tell (a PNG exported from a JPEG is
    the newer file; a screenshot re-saved as JPEG is too); --keep wins. The reason names the step
    that decided."""
    chosen = [row for row in rows if table.paths[row] in keep_paths]
    if chosen:
        return chosen[0], "chosen with --keep"

    def pixels(row: int) -> float:
        return float(table.widths[row] * table.heights[row])

    def sharpness(row: int) -> float:
        value = float(table.blur[row])
        return -1.0 if np.isnan(value) else value

    def in_colour(row: int) -> float:
        value = float(table.colourfulness[row])
        return float(np.isnan(value) or value >= GREYSCALE_BELOW)

    def size(row: int) -> str:
        return f"{table.widths[row]}x{table.heights[row]}"

    def formats(dropped: list[int]) -> str:
        return "/".join(sorted({table.formats[r] for r in dropped}))

    def when(seconds: float) -> str:
        if not np.isfinite(seconds):
            return "undated"
        return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(seconds))

    def taken(row: int) -> float:
        # only a camera's date: without EXIF, taken_at is the file's time, the next step's
        return float(table.taken_at[row]) if table.taken_from_exif[row] else np.inf

    def seconds(row: int) -> float:
        value = float(table.durations[row])
        return 0.0 if np.isnan(value) else value

    steps = [
        # a video first by its length: a trimmed copy in higher resolution is still a part
        _Criterion(
            seconds,
            LONGER_MARGIN,
            lambda k, d: (
                f"the longest video ({seconds(k):.1f} s against {max(seconds(r) for r in d):.1f} s)"
            ),
        ),
        _Criterion(pixels, 0.0, lambda k, d: f"highest resolution ({size(k)})"),
        _Criterion(
            in_colour,
            0.0,
            lambda k, d: f"same resolution ({size(k)}), in colour where a copy is greyscale",
        ),
        _Criterion(
            sharpness,
            SHARPNESS_MARGIN,
            lambda k, d: (
                f"same resolution ({size(k)}), sharpest (blur score "
                f"{sharpness(k):.0f} against {max(sharpness(r) for r in d):.0f})"
            ),
        ),
        _Criterion(
            lambda r: float(table.has_camera[r]),
            0.0,
            lambda k, d: (
                f"same resolution ({size(k)}), the camera's original: it has the EXIF "
                "camera data the copies lack"
            ),
        ),
        _Criterion(
            lambda r: -taken(r),
            0.0,
            lambda k, d: (
                f"same resolution ({size(k)}), taken first ({when(taken(k))}; the copies "
                f"{when(min(taken(r) for r in d))})"
            ),
        ),
        _Criterion(
            lambda r: -float(table.mtimes_ns[r]) / 1e9,
            0.0,
            lambda k, d: (
                f"same resolution ({size(k)}), the oldest file (modified "
                f"{when(table.mtimes_ns[k] / 1e9)}; the copies "
                f"{when(min(table.mtimes_ns[r] for r in d) / 1e9)})"
            ),
            slack=SAME_WRITE_S,
        ),
        _Criterion(
            lambda r: float(table.formats[r] in ORIGINAL_FORMATS),
            0.0,
            lambda k, d: (
                f"same resolution ({size(k)}), in a camera's format "
                f"({table.formats[k]}, not {formats(d)})"
            ),
        ),
    ]
    candidates = sorted(rows, key=lambda r: table.paths[r])
    why = f"same resolution ({size(candidates[0])}), quality and date; first by path"
    for step in steps:
        best = max(step.score(r) for r in candidates)
        floor = best - (step.margin * abs(best) if step.margin else 0.0) - step.slack
        kept = [r for r in candidates if step.score(r) >= floor]
        if len(kept) < len(candidates):
            dropped = [r for r in candidates if r not in kept]
            why = step.reason(kept[0], dropped)
            candidates = kept
        if len(candidates) == 1:
            break
    return candidates[0], why
