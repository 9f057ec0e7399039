"""Pairs joined into groups by union-find, and which photo of a group to keep, with why."""

from __future__ import annotations

import time
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


def choose_keeper(table: PhotoTable, rows: list[int], keep_paths: set[str]) -> tuple[int, str]:
    """The highest resolution, then the best quality (colour over greyscale, then the sharpest),
    then the oldest date taken; --keep wins."""
    chosen = [row for row in rows if table.paths[row] in keep_paths]
    if chosen:
        return chosen[0], "chosen with --keep"

    def pixels(row: int) -> int:
        return int(table.widths[row] * table.heights[row])

    def sharpness(row: int) -> float:
        value = float(table.blur[row])
        return -1.0 if np.isnan(value) else value

    def in_colour(row: int) -> bool:
        value = float(table.colourfulness[row])
        return bool(np.isnan(value) or value >= GREYSCALE_BELOW)

    ranked = sorted(
        rows,
        key=lambda r: (-pixels(r), -in_colour(r), -sharpness(r), table.taken_at[r], table.paths[r]),
    )
    best, runner_up = ranked[0], ranked[1]
    size = f"{table.widths[best]}x{table.heights[best]}"
    if pixels(best) > pixels(runner_up):
        return best, f"highest resolution ({size})"
    if in_colour(best) and not in_colour(runner_up):
        return best, f"same resolution ({size}), in colour where a copy is greyscale"
    if sharpness(best) > sharpness(runner_up):
        return best, (
            f"same resolution ({size}), sharpest (blur score {sharpness(best):.0f} against "
            f"{sharpness(runner_up):.0f})"
        )
    if table.taken_at[best] < table.taken_at[runner_up]:
        taken = time.strftime("%Y-%m-%d %H:%M", time.localtime(table.taken_at[best]))
        return best, f"same resolution ({size}) and sharpness, taken first ({taken})"
    return best, f"same resolution ({size}), sharpness and date; first by path"
