"""Catalog reads and writes for exploring a collection: region vectors with their photos and
recorded lengths, and the points of the 2-D maps.

Part of the storage layer (Catalog inherits this), kept apart so each module stays readable.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
from sqlalchemy import Engine, delete, insert, select
from sqlalchemy.exc import IntegrityError, OperationalError

from searchapp.errors import DamagedCatalogError
from searchapp.store.tables import chunks, labels, map_points, regions, set_aside_images, settings
from searchapp.store.vector_rows import VectorRows


@dataclass
class KindVectors:
    """Every region of one kind in search, in region-id order."""

    region_ids: np.ndarray  # int64
    image_ids: np.ndarray  # int64
    vectors: np.ndarray  # (n, d) float32, unit rows
    norms: np.ndarray  # (n,) float64, NaN where not recorded
    boxes: np.ndarray  # (n, 4) int64: x0, y0, x1, y1 in the displayed photo

    def __len__(self) -> int:
        return len(self.region_ids)


TAG_VOCABULARY_SETTING = "tags.vocabulary"  # a CLIP library's own tag list; absent: ImageNet's


class ExploreRows(VectorRows):
    engine: Engine

    def custom_tag_vocabulary(self) -> bool:
        """Whether the scenes' labels are tags from a user's list, not ImageNet classes."""
        return bool(self._setting(TAG_VOCABULARY_SETTING))

    def kind_vectors(self, kind: str, dim: int, chunk_rows: int = 20000) -> KindVectors:
        query = (
            select(
                regions.c.id,
                regions.c.image_id,
                regions.c.vector,
                regions.c.norm,
                regions.c.x0,
                regions.c.y0,
                regions.c.x1,
                regions.c.y1,
            )
            .where(regions.c.kind == kind, regions.c.image_id.not_in(set_aside_images()))
            .order_by(regions.c.id)
        )
        ids: list[np.ndarray] = []
        owners: list[np.ndarray] = []
        vectors: list[np.ndarray] = []
        norms: list[np.ndarray] = []
        boxes: list[np.ndarray] = []
        with self.engine.connect() as conn:
            result = conn.execution_options(stream_results=True).execute(query)
            while rows := result.fetchmany(chunk_rows):
                n = len(rows)
                ids.append(np.fromiter((r.id for r in rows), dtype=np.int64, count=n))
                owners.append(np.fromiter((r.image_id for r in rows), dtype=np.int64, count=n))
                blob = b"".join(r.vector for r in rows)
                vectors.append(self.decode_vectors(kind, blob, n, dim).astype(np.float32))
                norms.append(
                    np.fromiter(
                        (np.nan if r.norm is None else r.norm for r in rows), dtype=float, count=n
                    )
                )
                boxes.append(np.array([(r.x0, r.y0, r.x1, r.y1) for r in rows], dtype=np.int64))
        if not ids:
            width = self.vector_dim(kind, dim)
            empty = np.zeros(0, dtype=np.int64)
            none = np.zeros((0, width), np.float32)
            return KindVectors(empty, empty, none, np.zeros(0), np.zeros((0, 4), np.int64))
        return KindVectors(
            np.concatenate(ids),
            np.concatenate(owners),
            np.vstack(vectors),
            np.concatenate(norms),
            np.vstack(boxes),
        )

    def map_points(self, region_ids: Iterable[int]) -> dict[int, tuple[float, float]]:
        """Stored map places of these regions, where they have one."""
        found: dict[int, tuple[float, float]] = {}
        with self.engine.connect() as conn:
            for chunk in chunks(sorted(set(int(i) for i in region_ids))):
                query = select(map_points).where(map_points.c.region_id.in_(chunk))
                for region_id, x, y in conn.execute(query):
                    found[int(region_id)] = (float(x), float(y))
        return found

    def save_map(
        self,
        kind: str,
        region_ids: np.ndarray,
        coords: np.ndarray,
        layout: str | None = None,
    ) -> bool:
        """Store places in one transaction. With `layout` (a refit: the fit's facts as JSON),
        every place of the kind goes first, those of photos set aside included, and the layout
        setting is replaced with it. False where the catalog could not take them now (busy, read
        only, a region deleted meanwhile): the map is a cache, recomputed next time."""
        rows = [
            {"region_id": int(r), "x": float(x), "y": float(y)}
            for r, (x, y) in zip(region_ids, coords, strict=True)
        ]
        key = f"map.{kind}"
        try:
            with self.engine.begin() as conn:
                if layout is not None:
                    of_kind = select(regions.c.id).where(regions.c.kind == kind)
                    conn.execute(delete(map_points).where(map_points.c.region_id.in_(of_kind)))
                    conn.execute(delete(settings).where(settings.c.key == key))
                    conn.execute(insert(settings).values(key=key, value=layout))
                for chunk in chunks(rows, 5000):
                    conn.execute(insert(map_points), chunk)
        except (OperationalError, IntegrityError, DamagedCatalogError):
            return False
        return True

    # ---- zero-shot tags: labels of a CLIP library's scenes ------------------------------------

    def untagged_scenes(self, dim: int, chunk_rows: int = 20000) -> tuple[np.ndarray, np.ndarray]:
        """(region ids, vectors) of the scenes that have no label yet."""
        query = (
            select(regions.c.id, regions.c.vector)
            .outerjoin(labels, labels.c.region_id == regions.c.id)
            .where(regions.c.kind == "scene", labels.c.region_id.is_(None))
            .order_by(regions.c.id)
        )
        ids: list[np.ndarray] = []
        vectors: list[np.ndarray] = []
        with self.engine.connect() as conn:
            result = conn.execution_options(stream_results=True).execute(query)
            while rows := result.fetchmany(chunk_rows):
                ids.append(np.fromiter((r.id for r in rows), dtype=np.int64, count=len(rows)))
                blob = b"".join(r.vector for r in rows)
                vectors.append(self.decode_vectors("scene", blob, len(rows), dim))
        if not ids:
            return np.zeros(0, np.int64), np.zeros((0, dim), np.float32)
        return np.concatenate(ids), np.vstack(vectors).astype(np.float32)

    def add_labels(self, found: dict[int, list[tuple[str, float]]]) -> None:
        rows = [
            {"region_id": region_id, "rank": rank, "name": name, "prob": float(prob)}
            for region_id, named in found.items()
            for rank, (name, prob) in enumerate(named)
        ]
        with self.engine.begin() as conn:
            for chunk in chunks(rows, 5000):
                conn.execute(insert(labels), chunk)

    def drop_labels(self, kind: str) -> None:
        """Forget every label of a region kind (a CLIP library's tags, before a new vocabulary)."""
        of_kind = select(regions.c.id).where(regions.c.kind == kind)
        with self.engine.begin() as conn:
            conn.execute(delete(labels).where(labels.c.region_id.in_(of_kind)))
