"""Search-side reads of the catalog: filters, label lookups, hydration of hits.

Part of the storage layer (Catalog inherits this), kept apart so each module stays readable.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
from sqlalchemy import Engine, and_, func, or_, select

from searchapp.records import (
    TAG_MIN_PROB,
    Filters,
    ImageMeta,
    KnownImage,
    PhotoDetails,
    PhotoRegion,
    RegionHit,
)
from searchapp.store.tables import chunks, images, known_columns, labels, regions, under
from searchapp.store.vector_rows import VectorRows


def filter_conditions(filters: Filters) -> list[Any]:
    """SQL conditions on the images table: photos in search (a set-aside copy is not: its
    vectors left the indexes, its labels must not bring it back) that pass the filters."""
    conditions: list[Any] = [images.c.set_aside.is_(False)]
    if filters.after is not None:
        conditions.append(images.c.taken_at >= filters.after)
    if filters.before is not None:
        conditions.append(images.c.taken_at < filters.before)
    if filters.folder:
        conditions.append(under(images.c.path, [filters.folder]))
    if filters.camera:
        make_and_model = (
            func.coalesce(images.c.camera_make, "") + " " + func.coalesce(images.c.camera_model, "")
        )
        # LIKE with its wildcards escaped, not SQLite's instr: the same SQL on PostgreSQL
        wanted = filters.camera.lower()
        conditions.append(func.lower(make_and_model).contains(wanted, autoescape=True))
    if filters.min_width is not None:
        conditions.append(images.c.width >= filters.min_width)
    if filters.min_pixels is not None:
        conditions.append(images.c.width * images.c.height >= filters.min_pixels)
    if filters.formats:
        conditions.append(images.c.format.in_(list(filters.formats)))
    for names in filters.tags:  # each --tag: the photo's scene carries one of its names
        tagged = (
            select(regions.c.image_id)
            .join(labels, labels.c.region_id == regions.c.id)
            .where(
                regions.c.kind.in_(("scene", "frame")),  # a video is tagged by its frames
                labels.c.name.in_(list(names)),
                labels.c.prob >= TAG_MIN_PROB,
            )
        )
        conditions.append(images.c.id.in_(tagged))
    return conditions


class SearchReads(VectorRows):
    engine: Engine

    def region_ids_where(self, filters: Filters, kinds: Iterable[str]) -> np.ndarray:
        """Ids of the regions of these kinds whose photos pass the filters."""
        query = (
            select(regions.c.id)
            .join(images, images.c.id == regions.c.image_id)
            .where(regions.c.kind.in_(list(kinds)), *filter_conditions(filters))
        )
        with self.engine.connect() as conn:
            return np.fromiter(conn.execute(query).scalars(), dtype=np.int64)

    def photo_count_where(self, filters: Filters, kinds: Iterable[str]) -> int:
        """How many photos pass the filters with a region of these kinds."""
        query = (
            select(func.count(func.distinct(regions.c.image_id)))
            .join(images, images.c.id == regions.c.image_id)
            .where(regions.c.kind.in_(list(kinds)), *filter_conditions(filters))
        )
        with self.engine.connect() as conn:
            return int(conn.execute(query).scalar_one())

    def sibling_regions(self, region_ids: Iterable[int]) -> set[int]:
        """Every region of the photos these regions belong to."""
        ids = sorted(set(region_ids))
        found: set[int] = set()
        of_photos = select(regions.c.image_id)
        with self.engine.connect() as conn:
            for chunk in chunks(ids):
                photos = of_photos.where(regions.c.id.in_(chunk))
                query = select(regions.c.id).where(regions.c.image_id.in_(photos))
                found.update(conn.execute(query).scalars())
        return found

    def video_count(self) -> int:
        """Videos in search (not set aside)."""
        query = (
            select(func.count())
            .select_from(images)
            .where(images.c.duration.is_not(None), images.c.set_aside.is_(False))
        )
        with self.engine.connect() as conn:
            return int(conn.execute(query).scalar_one())

    def image_by_path(self, path: str, set_aside: bool | None = None) -> KnownImage | None:
        """The image at this path; with `set_aside`, only if it is (True) or is not (False)
        set aside by `dupes --move-to`."""
        query = select(*known_columns()).where(images.c.path == path)
        if set_aside is not None:
            query = query.where(images.c.set_aside.is_(set_aside))
        with self.engine.connect() as conn:
            row = conn.execute(query).first()
        return KnownImage(*row) if row else None

    def photo_details(self, image_id: int) -> PhotoDetails | None:
        """A photo's row, its regions (scene first) and its labels; None for an unknown id."""
        meta_columns = [images.c[name] for name in ImageMeta.__dataclass_fields__]
        with self.engine.connect() as conn:
            row = conn.execute(
                select(
                    images.c.id,
                    images.c.path,
                    images.c.size,
                    images.c.content_hash,
                    images.c.set_aside,
                    *meta_columns,
                ).where(images.c.id == image_id)
            ).first()
            if row is None:
                return None
            found = conn.execute(
                select(
                    regions.c.id,
                    regions.c.kind,
                    regions.c.x0,
                    regions.c.y0,
                    regions.c.x1,
                    regions.c.y1,
                    regions.c.label,
                    regions.c.label_score,
                    regions.c.time,
                )
                .where(regions.c.image_id == image_id)
                .order_by(regions.c.kind != "scene", regions.c.kind, regions.c.id)
            )
            photo_regions = tuple(
                PhotoRegion(r.id, r.kind, (r.x0, r.y0, r.x1, r.y1), r.label, r.label_score, r.time)
                for r in found
            )
        meta = ImageMeta(**{name: row._mapping[name] for name in ImageMeta.__dataclass_fields__})
        return PhotoDetails(
            id=row.id,
            path=row.path,
            size=row.size,
            content_hash=row.content_hash,
            meta=meta,
            set_aside=bool(row.set_aside),
            regions=photo_regions,
            labels=tuple(self.image_labels([image_id]).get(image_id, [])),
        )

    def content_hashes(self, image_ids: Iterable[int]) -> dict[int, str]:
        """{image id: content hash} of those that exist, in one read per chunk of ids."""
        found: dict[int, str] = {}
        with self.engine.connect() as conn:
            for chunk in chunks(sorted(set(image_ids))):
                query = select(images.c.id, images.c.content_hash).where(images.c.id.in_(chunk))
                found.update((row.id, row.content_hash) for row in conn.execute(query))
        return found

    def flagged_photos(self, limit: int) -> list[tuple[int, str, str]]:
        """(id, path, why) of photos kept out of the vectors as low quality, at most `limit`."""
        query = (
            select(images.c.id, images.c.path, images.c.quality_flag)
            .where(images.c.quality_flag.is_not(None))
            .order_by(images.c.path)
            .limit(limit)
        )
        with self.engine.connect() as conn:
            return [(row.id, row.path, row.quality_flag) for row in conn.execute(query)]

    def image_region_vectors(
        self, image_id: int, kind: str, dim: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """(region ids, their vectors as the kind's index holds them) of one photo."""
        query = (
            select(regions.c.id, regions.c.vector)
            .where(regions.c.image_id == image_id, regions.c.kind == kind)
            .order_by(regions.c.id)
        )
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
        ids = np.fromiter((row.id for row in rows), dtype=np.int64, count=len(rows))
        blob = b"".join(row.vector for row in rows)
        return ids, self.decode_vectors(kind, blob, len(rows), dim)

    def vectors_of_regions(self, kind: str, region_ids: np.ndarray, dim: int) -> np.ndarray:
        """The stored vectors of regions of one kind, in the order of `region_ids`; NaN for a
        region gone since its id was found (a re-rank drops it)."""
        wanted = [int(i) for i in region_ids]
        rows: list[Any] = []
        with self.engine.connect() as conn:
            for chunk in chunks(wanted):
                query = select(regions.c.id, regions.c.vector).where(
                    regions.c.id.in_(chunk), regions.c.kind == kind
                )
                rows += conn.execute(query).all()
        found = self.decode_vectors(kind, b"".join(row.vector for row in rows), len(rows), dim)
        place = {row.id: i for i, row in enumerate(rows)}
        out = np.full((len(wanted), self.vector_dim(kind, dim)), np.nan, np.float32)
        for slot, region_id in enumerate(wanted):
            if region_id in place:
                out[slot] = found[place[region_id]]
        return out

    def region_vectors_of_image(self, image_id: int, kind: str, dim: int) -> np.ndarray:
        query = select(regions.c.vector).where(
            regions.c.image_id == image_id, regions.c.kind == kind
        )
        with self.engine.connect() as conn:
            blobs = list(conn.execute(query).scalars())
        return self.decode_vectors(kind, b"".join(blobs), len(blobs), dim)

    def label_scores(
        self,
        names: Iterable[str],
        kinds: Iterable[str],
        filters: Filters,
        min_prob: Mapping[str, float] | None = None,
    ) -> dict[int, tuple[float, str]]:
        """{region id: (best probability, its name) among its labels with these names}, filters
        applied; a label of a region kind in min_prob counts only from that probability."""
        wanted = sorted(set(names))
        floors = min_prob or {}
        per_kind = [
            and_(regions.c.kind == kind, labels.c.prob >= floors.get(kind, 0.0)) for kind in kinds
        ]
        found: dict[int, tuple[float, str]] = {}
        with self.engine.connect() as conn:
            for chunk in chunks(wanted):
                query = (
                    select(labels.c.region_id, labels.c.prob, labels.c.name)
                    .join(regions, regions.c.id == labels.c.region_id)
                    .join(images, images.c.id == regions.c.image_id)
                    .where(labels.c.name.in_(chunk), or_(*per_kind), *filter_conditions(filters))
                )
                for region_id, prob, name in conn.execute(query):
                    if region_id not in found or prob > found[region_id][0]:
                        found[region_id] = (float(prob), name)
        return found

    def region_top_labels(self, region_ids: Iterable[int]) -> dict[int, tuple[str, float]]:
        """The most likely stored label of each region that has one."""
        return {region: found[0] for region, found in self.region_labels(region_ids).items()}

    def region_labels(self, region_ids: Iterable[int]) -> dict[int, list[tuple[str, float]]]:
        """The stored labels of each region that has some, best first."""
        ids = sorted(set(region_ids))
        result: dict[int, list[tuple[str, float]]] = {}
        with self.engine.connect() as conn:
            for chunk in chunks(ids):
                query = (
                    select(labels.c.region_id, labels.c.name, labels.c.prob)
                    .where(labels.c.region_id.in_(chunk))
                    .order_by(labels.c.region_id, labels.c.rank)
                )
                for region_id, name, prob in conn.execute(query):
                    result.setdefault(region_id, []).append((name, float(prob)))
        return result

    def image_labels(self, image_ids: Iterable[int]) -> dict[int, list[tuple[str, float]]]:
        """Top labels of each photo's scene region, best first."""
        ids = sorted(set(image_ids))
        result: dict[int, list[tuple[str, float]]] = {}
        with self.engine.connect() as conn:
            for chunk in chunks(ids):
                query = (
                    select(regions.c.image_id, labels.c.name, labels.c.prob)
                    .join(labels, labels.c.region_id == regions.c.id)
                    .where(regions.c.image_id.in_(chunk), regions.c.kind == "scene")
                    .order_by(regions.c.image_id, labels.c.rank)
                )
                for image_id, name, prob in conn.execute(query):
                    result.setdefault(image_id, []).append((name, float(prob)))
        return result

    def hydrate(self, scored: dict[int, float]) -> list[RegionHit]:
        """Turn {region id: score} into hits joined with their image rows."""
        hits: list[RegionHit] = []
        ids = list(scored)
        with self.engine.connect() as conn:
            for chunk in chunks(ids):
                query = (
                    select(
                        regions.c.id,
                        regions.c.image_id,
                        images.c.path,
                        regions.c.kind,
                        regions.c.x0,
                        regions.c.y0,
                        regions.c.x1,
                        regions.c.y1,
                        regions.c.label,
                        images.c.taken_at,
                        images.c.width,
                        images.c.height,
                        regions.c.time,
                    )
                    .join(images, images.c.id == regions.c.image_id)
                    .where(regions.c.id.in_(chunk))
                )
                for row in conn.execute(query):
                    hits.append(
                        RegionHit(
                            region_id=row.id,
                            image_id=row.image_id,
                            path=row.path,
                            kind=row.kind,
                            bbox=(row.x0, row.y0, row.x1, row.y1),
                            label=row.label,
                            taken_at=row.taken_at,
                            score=scored[row.id],
                            photo_size=(row.width, row.height),
                            time=row.time,
                        )
                    )
        return hits

    def quality_summary(self) -> tuple[dict[str, dict[str, float]], int]:
        """(p10/p50/p90 of each quality metric, number of photos flagged low quality)."""
        summary: dict[str, dict[str, float]] = {}
        with self.engine.connect() as conn:
            for name in ("blur", "brightness", "contrast"):
                column = images.c[name]
                query = select(column).where(column.is_not(None))
                values = np.fromiter(conn.execute(query).scalars(), dtype=float)
                if len(values):
                    p10, p50, p90 = np.percentile(values, [10, 50, 90])
                    summary[name] = {
                        "p10": round(float(p10), 1),
                        "p50": round(float(p50), 1),
                        "p90": round(float(p90), 1),
                    }
            flagged = conn.execute(
                select(func.count()).select_from(images).where(images.c.quality_flag.is_not(None))
            ).scalar_one()
        return summary, int(flagged)
