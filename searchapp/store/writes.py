"""The row writes of a catalog batch, each inside the transaction Catalog.apply opens."""

from __future__ import annotations

from typing import Any

import numpy as np
from sqlalchemy import delete, insert, select, update
from sqlalchemy.engine import Connection

from searchapp.records import (
    CatalogBatch,
    FileStat,
    FramesAdded,
    Move,
    RegionsAdded,
    VectorDelta,
)
from searchapp.store.tables import VECTOR_DTYPE, chunks, failures, images, labels, regions
from searchapp.store.vector_rows import VectorRows


def _insert_id(conn: Connection, statement: Any) -> int:
    key = conn.execute(statement).inserted_primary_key
    assert key is not None
    return int(key[0])


class CatalogWrites(VectorRows):
    def _read_back(self, kind: str, blob: bytes) -> np.ndarray:
        """One stored vector as the index holds it (a float16 blob's width is its length)."""
        width = len(blob) // np.dtype(VECTOR_DTYPE).itemsize
        return self.decode_vectors(kind, blob, 1, width)[0]

    def _delete_images(self, conn: Connection, image_ids: list[int], delta: VectorDelta) -> None:
        for chunk in chunks(image_ids):
            rows = conn.execute(
                select(regions.c.id, regions.c.kind, images.c.set_aside)
                .join(images, images.c.id == regions.c.image_id)
                .where(regions.c.image_id.in_(chunk))
            )
            region_ids = []
            for row in rows:
                if not row.set_aside:  # a set-aside photo's vectors left the indexes already
                    delta.remove(row.kind, row.id)
                region_ids.append(row.id)
            # explicit deletes: cascades are not enabled on every backend connection
            for region_chunk in chunks(region_ids):
                conn.execute(delete(labels).where(labels.c.region_id.in_(region_chunk)))
                conn.execute(delete(regions).where(regions.c.id.in_(region_chunk)))
            conn.execute(delete(images).where(images.c.id.in_(chunk)))

    def _place(self, conn: Connection, move: Move, aside: bool, delta: VectorDelta) -> None:
        """Point an image at its file; its vectors leave the indexes while it is set aside."""
        was = conn.execute(
            select(images.c.set_aside).where(images.c.id == move.image_id)
        ).scalar_one_or_none()
        if was is None:
            return
        stat = move.stat
        conn.execute(
            update(images)
            .where(images.c.id == move.image_id)
            .values(path=stat.path, size=stat.size, mtime_ns=stat.mtime_ns, set_aside=aside)
        )
        if bool(was) == aside:
            return
        rows = conn.execute(
            select(regions.c.id, regions.c.kind, regions.c.vector).where(
                regions.c.image_id == move.image_id
            )
        )
        for row in rows:
            if aside:
                delta.remove(row.kind, row.id)
            else:
                delta.add(row.kind, row.id, self._read_back(row.kind, row.vector))

    def _insert_image(
        self, conn: Connection, stat: FileStat, content_hash: str, meta: Any, now: float
    ) -> int:
        values = dict(meta.__dict__)
        values.update(
            path=stat.path,
            size=stat.size,
            mtime_ns=stat.mtime_ns,
            content_hash=content_hash,
            indexed_at=now,
        )
        return _insert_id(conn, insert(images).values(**values))

    def _insert_regions(
        self, conn: Connection, owned: list[tuple[int, Any]], delta: VectorDelta
    ) -> None:
        """Regions, each with the id of its image, in one executemany that returns their ids in
        order (SQLAlchemy's insertmanyvalues): a statement built and compiled a region spent most
        of a cluster's commit in SQLAlchemy (1,689 regions/s at 35 a photo against 7,792,
        benchmarks/commit_rate.py)."""
        if not owned:
            return
        rows, vectors = [], []
        for image_id, region in owned:
            x0, y0, x1, y1 = region.bbox
            blob, vector = self._stored(region)
            vectors.append(vector)
            rows.append(
                {
                    "image_id": image_id,
                    "kind": region.kind,
                    "x0": x0,
                    "y0": y0,
                    "x1": x1,
                    "y1": y1,
                    "label": region.label,
                    "label_score": region.label_score,
                    "vector": blob,
                    "norm": region.norm,
                    "time": region.time,
                }
            )
        if conn.dialect.insert_executemany_returning_sort_by_parameter_order:
            statement = insert(regions).returning(regions.c.id, sort_by_parameter_order=True)
            region_ids = [int(i) for i in conn.execute(statement, rows).scalars()]
        else:  # SQLite before 3.35 has no RETURNING
            region_ids = [_insert_id(conn, insert(regions).values(**row)) for row in rows]
        label_rows = [
            {"region_id": region_id, "rank": rank, "name": name, "prob": float(prob)}
            for region_id, (_, region) in zip(region_ids, owned, strict=True)
            for rank, (name, prob) in enumerate(region.labels)
        ]
        if label_rows:
            conn.execute(insert(labels), label_rows)
        for region_id, (_, region), vector in zip(region_ids, owned, vectors, strict=True):
            # the index gets the vector as stored, so a rebuild reproduces it exactly
            delta.add(region.kind, region_id, vector)

    def _clone_image(
        self, conn: Connection, source_id: int, stat: FileStat, now: float, delta: VectorDelta
    ) -> None:
        source = conn.execute(select(images).where(images.c.id == source_id)).mappings().one()
        values = {k: v for k, v in source.items() if k != "id"}
        values.update(path=stat.path, size=stat.size, mtime_ns=stat.mtime_ns, indexed_at=now)
        values["set_aside"] = False  # a copy in the library is searchable, wherever its source is
        image_id = _insert_id(conn, insert(images).values(**values))
        for region in conn.execute(select(regions).where(regions.c.image_id == source_id)).all():
            region_values = {k: v for k, v in region._mapping.items() if k not in ("id",)}
            region_values["image_id"] = image_id
            new_id = _insert_id(conn, insert(regions).values(**region_values))
            label_rows = conn.execute(
                select(labels.c.rank, labels.c.name, labels.c.prob).where(
                    labels.c.region_id == region.id
                )
            ).all()
            if label_rows:
                conn.execute(
                    insert(labels),
                    [{"region_id": new_id, **row._mapping} for row in label_rows],
                )
            delta.add(region.kind, new_id, self._read_back(region.kind, region.vector))

    def _write_failures(self, conn: Connection, batch: CatalogBatch, now: float) -> None:
        cleared = list(batch.cleared_failures)
        cleared += [item.stat.path for item in batch.new]
        cleared += [item.stat.path for item in batch.moves + batch.copies + batch.touched]
        cleared += [failure.stat.path for failure in batch.failures]
        for chunk in chunks(cleared):
            conn.execute(delete(failures).where(failures.c.path.in_(chunk)))
        if batch.failures:
            conn.execute(
                insert(failures),
                [
                    {
                        "path": f.stat.path,
                        "size": f.stat.size,
                        "mtime_ns": f.stat.mtime_ns,
                        "reason": f.reason,
                        "failed_at": now,
                    }
                    for f in batch.failures
                ],
            )

    def _add_regions(self, conn: Connection, added: RegionsAdded, delta: VectorDelta) -> None:
        """The region stage's regions for each photo still in the catalog, pending cleared."""
        for image_id in added.image_ids:
            done = conn.execute(
                update(images)
                .where(images.c.id == image_id, images.c.regions_pending.is_not(None))
                .values(regions_pending=added.still_pending)
            ).rowcount
            if done:  # else deleted or re-indexed since the stage read it
                self._insert_regions(conn, [(image_id, r) for r in added.regions], delta)

    def _add_frames(self, conn: Connection, added: FramesAdded, delta: VectorDelta) -> None:
        """More frames of a video being sampled, and how far it now is; nothing where the video
        was deleted or re-indexed meanwhile."""
        values: dict[str, float | None] = {"frames_until": added.until}
        if added.duration is not None:
            values["duration"] = added.duration
        done = conn.execute(
            update(images)
            .where(images.c.id == added.image_id, images.c.frames_until.is_not(None))
            .values(**values)
        ).rowcount
        if done:
            self._insert_regions(conn, [(added.image_id, r) for r in added.regions], delta)
