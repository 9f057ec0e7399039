"""Catalog reads and writes for duplicate detection: per-photo facts as arrays, region vectors
with their photos, and the hashes that older libraries lack.

Part of the storage layer (Catalog inherits this), kept apart so each module stays readable.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy import Engine, delete, insert, select, update
from sqlalchemy.exc import OperationalError

from searchapp.errors import DamagedCatalogError
from searchapp.records import KnownImage
from searchapp.store.tables import (
    chunks,
    evidence,
    images,
    known_columns,
    regions,
    set_aside_images,
)
from searchapp.store.vector_rows import VectorRows

PHASH_BYTES = 64


@dataclass(frozen=True)
class HashUpdate:
    image_id: int
    phash: bytes | None
    pixel_hash: str | None
    colourfulness: float | None


@dataclass
class PhotoTable:
    """Every indexed photo, one array entry each, in image-id order."""

    ids: np.ndarray  # int64
    paths: list[str]
    sizes: np.ndarray  # bytes on disk
    widths: np.ndarray
    heights: np.ndarray
    blur: np.ndarray  # NaN where unknown
    colourfulness: np.ndarray  # NaN where unknown
    taken_at: np.ndarray
    mtimes_ns: np.ndarray
    formats: list[str]
    has_camera: np.ndarray  # bool: EXIF names a camera make or model
    cameras: list[str]  # "make model" from EXIF; "" where it names none
    taken_from_exif: np.ndarray  # bool: taken_at is the EXIF capture time, not the mtime
    content_hashes: list[str]
    pixel_hashes: list[str | None]
    phashes: np.ndarray  # (n, 64) uint8; rows of zeros where has_phash is False
    has_phash: np.ndarray  # bool
    durations: np.ndarray  # a video's seconds; NaN for a photo

    def __len__(self) -> int:
        return len(self.ids)


class DupeReads(VectorRows):
    engine: Engine

    def photo_table(self) -> PhotoTable:
        query = (
            select(
                images.c.id,
                images.c.path,
                images.c.size,
                images.c.width,
                images.c.height,
                images.c.blur,
                images.c.colourfulness,
                images.c.taken_at,
                images.c.taken_source,
                images.c.mtime_ns,
                images.c.format,
                images.c.camera_make,
                images.c.camera_model,
                images.c.content_hash,
                images.c.pixel_hash,
                images.c.phash,
                images.c.duration,
            )
            .where(images.c.set_aside.is_(False))
            .order_by(images.c.id)
        )
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
        n = len(rows)
        blank = bytes(PHASH_BYTES)
        has = np.fromiter(
            (row.phash is not None and len(row.phash) == PHASH_BYTES for row in rows),
            dtype=bool,
            count=n,
        )
        joined = b"".join(row.phash if ok else blank for row, ok in zip(rows, has, strict=True))
        phashes = np.frombuffer(joined, dtype=np.uint8).reshape(n, PHASH_BYTES).copy()
        return PhotoTable(
            ids=np.fromiter((r.id for r in rows), dtype=np.int64, count=n),
            paths=[r.path for r in rows],
            sizes=np.fromiter((r.size for r in rows), dtype=np.int64, count=n),
            widths=np.fromiter((r.width for r in rows), dtype=np.int64, count=n),
            heights=np.fromiter((r.height for r in rows), dtype=np.int64, count=n),
            blur=np.fromiter(
                (np.nan if r.blur is None else r.blur for r in rows), dtype=float, count=n
            ),
            colourfulness=np.fromiter(
                (np.nan if r.colourfulness is None else r.colourfulness for r in rows),
                dtype=float,
                count=n,
            ),
            taken_at=np.fromiter((r.taken_at for r in rows), dtype=float, count=n),
            mtimes_ns=np.fromiter((r.mtime_ns for r in rows), dtype=np.int64, count=n),
            formats=[r.format for r in rows],
            has_camera=np.fromiter(
                (bool(r.camera_make or r.camera_model) for r in rows), dtype=bool, count=n
            ),
            cameras=[f"{r.camera_make or ''} {r.camera_model or ''}".strip() for r in rows],
            taken_from_exif=np.fromiter(
                (r.taken_source == "exif" for r in rows), dtype=bool, count=n
            ),
            content_hashes=[r.content_hash for r in rows],
            pixel_hashes=[r.pixel_hash for r in rows],
            phashes=phashes,
            has_phash=has,
            durations=np.fromiter(
                (np.nan if r.duration is None else r.duration for r in rows), dtype=float, count=n
            ),
        )

    def images_without_phash(self) -> list[KnownImage]:
        query = (
            select(*known_columns())
            .where(
                images.c.phash.is_(None),
                images.c.set_aside.is_(False),
                images.c.duration.is_(None),  # a video has no pHash: its frames stand for it
            )
            .order_by(images.c.id)
        )
        with self.engine.connect() as conn:
            return [KnownImage(*row) for row in conn.execute(query)]

    def set_hashes(self, updates: Iterable[HashUpdate]) -> None:
        """Write backfilled hashes in one transaction; None leaves a column as it is."""
        with self.engine.begin() as conn:
            for item in updates:
                values: dict[str, object] = {}
                if item.phash is not None:
                    values["phash"] = item.phash
                if item.pixel_hash is not None:
                    values["pixel_hash"] = item.pixel_hash
                if item.colourfulness is not None:
                    values["colourfulness"] = item.colourfulness
                if values:
                    query = update(images).where(images.c.id == item.image_id).values(**values)
                    conn.execute(query)

    def frame_vectors(self, dim: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(image ids, times, vectors float32) of every video frame in search, by video and
        time."""
        query = (
            select(regions.c.image_id, regions.c.time, regions.c.vector)
            .where(regions.c.kind == "frame", regions.c.image_id.not_in(set_aside_images()))
            .order_by(regions.c.image_id, regions.c.time)
        )
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
        owners = np.fromiter((row.image_id for row in rows), dtype=np.int64, count=len(rows))
        times = np.fromiter((row.time or 0.0 for row in rows), dtype=float, count=len(rows))
        blob = b"".join(row.vector for row in rows)
        return owners, times, self.decode_vectors("frame", blob, len(rows), dim)

    def region_vectors_by_image(
        self, kinds: Iterable[str], dim: int, chunk_rows: int = 20000, *, whole: bool = False
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield (image ids int64, vectors float16) for every region of these kinds, in chunks:
        kinds stored alike (one basis or none, one space: vector_dim). With `whole`, only the
        regions that cover their photo whole."""
        kinds = list(kinds)
        if len({(self._codec_key(kind), self.same_space(kind)) for kind in kinds}) > 1:
            raise ValueError(f"region kinds {kinds} are not stored alike")
        query = (
            select(regions.c.image_id, regions.c.vector)
            .where(regions.c.kind.in_(list(kinds)), regions.c.image_id.not_in(set_aside_images()))
            .order_by(regions.c.id)
        )
        if whole:
            query = query.join(images, images.c.id == regions.c.image_id).where(
                regions.c.x0 == 0,
                regions.c.y0 == 0,
                regions.c.x1 == images.c.width,
                regions.c.y1 == images.c.height,
            )
        with self.engine.connect() as conn:
            result = conn.execution_options(stream_results=True).execute(query)
            while rows := result.fetchmany(chunk_rows):
                owners = np.fromiter(
                    (row.image_id for row in rows), dtype=np.int64, count=len(rows)
                )
                blob = b"".join(row.vector for row in rows)
                vectors = self.decode_vectors(kinds[0], blob, len(rows), dim)
                yield owners, vectors.astype(np.float16)

    def pixel_evidence(self) -> dict[tuple[str, str, int], dict[str, Any]]:
        """Every kept pixel-check result, by (content hash a, content hash b, method)."""
        query = select(evidence.c.hash_a, evidence.c.hash_b, evidence.c.method, evidence.c.evidence)
        with self.engine.connect() as conn:
            return {(a, b, m): json.loads(e) for a, b, m, e in conn.execute(query)}

    def keep_pixel_evidence(self, found: dict[tuple[str, str, int], dict[str, Any]]) -> bool:
        """Store check results; a cache, so a locked or full catalog only means no keeping."""
        rows = [
            {"hash_a": a, "hash_b": b, "method": m, "evidence": json.dumps(e)}
            for (a, b, m), e in found.items()
        ]
        try:
            with self.engine.begin() as conn:
                for chunk in chunks(rows, 300):
                    for row in chunk:
                        conn.execute(
                            delete(evidence).where(
                                evidence.c.hash_a == row["hash_a"],
                                evidence.c.hash_b == row["hash_b"],
                                evidence.c.method == row["method"],
                            )
                        )
                    conn.execute(insert(evidence), chunk)
        except (OperationalError, DamagedCatalogError):  # a cache: not kept is fine
            return False
        return True

    def keep_pixel_hashes(self, found: dict[int, str]) -> None:
        """Pixel hashes taken late (dupes), by image id; a cache like the evidence."""
        with contextlib.suppress(OperationalError, DamagedCatalogError):
            self.set_hashes(
                HashUpdate(image_id, None, digest, None) for image_id, digest in found.items()
            )
