"""Search: encode a query, kNN per region kind, hydrate, aggregate regions to photos.

A photo's score is its best region's cosine similarity; that region's kind, bbox and label are
returned with it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from searchapp.errors import ImageLoadError, QueryError
from searchapp.ingest.load import LoadLimits, load_image
from searchapp.records import BBox, FileStat, RegionHit
from searchapp.vectors import faiss_index

if TYPE_CHECKING:
    from searchapp.library import Library


@dataclass(frozen=True)
class SearchHit:
    path: str
    score: float
    kind: str
    bbox: BBox
    label: str | None
    taken_at: float

    def as_dict(self) -> dict[str, object]:
        return {
            "path": self.path,
            "score": round(self.score, 6),
            "region": {"kind": self.kind, "bbox": list(self.bbox), "label": self.label},
        }


def aggregate(region_hits: list[RegionHit], k: int) -> list[SearchHit]:
    """Best region per photo, best photo first; ties broken by path for stable output."""
    best: dict[int, RegionHit] = {}
    for hit in region_hits:
        current = best.get(hit.image_id)
        if current is None or hit.score > current.score:
            best[hit.image_id] = hit
    ranked = sorted(best.values(), key=lambda h: (-h.score, h.path))[:k]
    return [SearchHit(h.path, h.score, h.kind, h.bbox, h.label, h.taken_at) for h in ranked]


def query_vector_from_image(
    library: Library, path: str, limits: LoadLimits | None = None
) -> np.ndarray:
    absolute = os.path.abspath(os.path.expanduser(path))
    try:
        st = os.stat(absolute)
    except FileNotFoundError:
        raise QueryError(f"query image {absolute} does not exist") from None
    except OSError as exc:
        raise QueryError(f"cannot read query image {absolute}: {exc.strerror}") from None
    encoder = library.encoder()
    try:
        loaded = load_image(
            FileStat(absolute, st.st_size, st.st_mtime_ns),
            min_side=encoder.input_size,
            limits=limits,
        )
    except ImageLoadError as exc:
        raise QueryError(f"query image {absolute}: {exc.reason}") from None
    return encoder.encode(encoder.preprocess(loaded.image)[None]).vectors


def search_vector(
    library: Library, vector: np.ndarray, k: int, kinds: tuple[str, ...]
) -> list[SearchHit]:
    if k < 1:
        raise QueryError(f"-k must be at least 1 (got {k})")
    scored: dict[int, float] = {}
    for kind in kinds:
        index = library.indexes().get(kind, persist=False)
        if index.ntotal == 0:
            continue
        # one scene region per photo, so k regions are k photos; object and tile kinds will
        # need adaptive over-fetch (issue 4)
        scores, ids = faiss_index.search(index, vector, k)
        found = {int(i): float(s) for i, s in zip(ids[0], scores[0], strict=True) if i >= 0}
        for region_id, score in found.items():
            scored[region_id] = max(score, scored.get(region_id, -1.0))
    return aggregate(library.catalog.hydrate(scored), k)
