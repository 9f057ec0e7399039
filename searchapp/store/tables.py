"""Table handles and small SQL helpers shared by the storage modules."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any, cast

import numpy as np
from sqlalchemy import Select, Table, and_, or_, select

from searchapp.store.models import (
    FailureRow,
    ImageRow,
    PixelEvidenceRow,
    RegionLabelRow,
    RegionRow,
    Setting,
)

images = cast(Table, ImageRow.__table__)
regions = cast(Table, RegionRow.__table__)
labels = cast(Table, RegionLabelRow.__table__)
failures = cast(Table, FailureRow.__table__)
settings = cast(Table, Setting.__table__)
evidence = cast(Table, PixelEvidenceRow.__table__)

VECTOR_DTYPE = np.float16
CHUNK = 900  # stays under SQLite's bound-parameter limit


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


def set_aside_images() -> Select[Any]:
    """Ids of the images `dupes --move-to` set aside: out of search and `dupes`. A NOT IN over
    this (usually empty) set costs nothing, where an IN over every image would."""
    return select(images.c.id).where(images.c.set_aside.is_(True))
