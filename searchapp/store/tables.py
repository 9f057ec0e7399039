"""Table handles and small SQL helpers shared by the storage modules."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np
from sqlalchemy import Select, and_, or_, select

from searchapp.store.models import (
    evidence,
    failures,
    images,
    labels,
    map_points,
    regions,
    settings,
    vector_changes,
)

__all__ = [
    "evidence",
    "failures",
    "images",
    "labels",
    "map_points",
    "regions",
    "settings",
    "vector_changes",
]

VECTOR_DTYPE = np.float16
CHUNK = 900  # stays under SQLite's bound-parameter limit
# roots one `under` condition takes: each is two terms of an OR that SQLite nests one deeper a
# term, and its expressions stop at a depth of 1000 (a file list makes every file a root)
ROOTS_PER_QUERY = 200


def chunks(items: list[Any], size: int = CHUNK) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def under(column: Any, roots: Iterable[str]) -> Any:
    """SQL condition: path equals a root or lies below it.

    A range on the path instead of LIKE or substr: it uses the path index, and paths may hold
    % and _. Everything below "root/" sorts before "root0", '0' being the character after '/'.
    """
    conditions = []
    for root in roots:
        base = root.rstrip("/")
        conditions.append(column == base)
        conditions.append(and_(column >= base + "/", column < base + "0"))
    return or_(*conditions)


def known_columns() -> tuple[Any, ...]:
    """The images columns a KnownImage holds, in its order."""
    c = images.c
    return (c.id, c.path, c.size, c.mtime_ns, c.content_hash, c.frames_until)


def set_aside_images() -> Select[Any]:
    """Ids of the images `dupes --move-to` set aside: out of search and `dupes`. A NOT IN over
    this (usually empty) set costs nothing, where an IN over every image would."""
    return select(images.c.id).where(images.c.set_aside.is_(True))
