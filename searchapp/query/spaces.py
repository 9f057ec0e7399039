"""Image queries over two embedding spaces: a CLIP library keeps its scenes and objects in CLIP's
space and its tiles in the CNN's (encoders/registry.py says why).

An image query is embedded by both encoders; each space is searched with its own vector, and the
two rankings of photos are merged by rank, since a cosine in one space says nothing about a
cosine in the other. A photo ranks by its best rank in either space, as a photo ranks by its
best region within one: the first of each space's list are the first two of the merged list, so
the pixel check (verify.py) sees the best of both. Among photos of equal best rank, one that the
other space ranks high too comes first (the sum of reciprocal ranks, Cormack, Clarke and
Buettcher, SIGIR 2009), so both lists are fetched as long. Measured against a per-query z-score
of each space's scores with a random ViT-B-32 beside the CNN's tiles (benchmarks/README.md,
"Tiles in the CNN's space"), which this rule beat on scenes, objects and tiles together. Words
do not reach the CNN's space: a query with words, or a photo already indexed (--like, whose CNN
vector is not stored), searches the scenes and objects only.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from typing import Protocol, TypeVar

import numpy as np

from searchapp.errors import QueryError

RRF_K = 60  # the constant of reciprocal-rank fusion; only breaks ties of equal best rank here
TILE_KIND = "tile"


def tiles_apart(kinds: tuple[str, ...], has_tile_space: bool) -> bool:
    """Whether a query over `kinds` meets tiles kept in a space of their own."""
    return has_tile_space and TILE_KIND in kinds


def tile_query(
    sources: list[str],
    kinds: tuple[str, ...],
    embed: Callable[[], np.ndarray],
) -> np.ndarray | None:
    """The query's vector in the tiles' space, from `embed` (the image terms through the tiles'
    encoder), when every term is an image file; None when the tiles cannot be searched, which
    is an error only if the query asked for tiles alone."""
    if all(source == "image" for source in sources):
        return embed()
    if kinds == (TILE_KIND,):
        raise QueryError(
            "this library keeps its tiles in the CNN's space, which words and --like do not "
            "reach: search tiles with --image FILE, or choose --kind scene or object"
        )
    return None


class _Photo(Protocol):
    @property
    def path(self) -> str: ...


Hit = TypeVar("Hit", bound=_Photo)


def merged(
    rankings: Sequence[Sequence[Hit]], k: int, photo_of: Callable[[Hit], Hashable]
) -> list[Hit]:
    """The best region of each photo, photos ranked by their best rank in any of `rankings`
    (each a space's photos, best first), ties by the sum of reciprocal ranks, then path. A photo
    is known by `photo_of`: its image id in one library, its path across several."""
    best_rank: dict[Hashable, int] = {}
    fused: dict[Hashable, float] = {}
    shown: dict[Hashable, Hit] = {}
    for ranking in rankings:
        for rank, hit in enumerate(ranking):
            photo = photo_of(hit)
            fused[photo] = fused.get(photo, 0.0) + 1.0 / (RRF_K + rank + 1)
            if photo not in best_rank or rank < best_rank[photo]:
                best_rank[photo], shown[photo] = rank, hit
    order = sorted(shown, key=lambda p: (best_rank[p], -fused[p], shown[p].path))
    return [shown[photo] for photo in order[:k]]
