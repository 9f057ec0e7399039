"""How region vectors sit in the catalog's rows: float16 at the encoder's width, or, for objects
and tiles once the library has fitted its basis, int8 codes (store/codec.py). The one place that
turns a vector into a blob and back."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from sqlalchemy import Engine, bindparam, func, select, update
from sqlalchemy.engine import Connection

from searchapp.records import CatalogBatch, RegionData, VectorDelta
from searchapp.store.codec import CODED_KINDS, FIT_AT, FIT_SAMPLE, RegionCodec
from searchapp.store.tables import VECTOR_DTYPE, chunks, regions, settings

CODEC_SETTING = "codec.regions"
REENCODE_AT_MOST = 20_000  # stored vectors one committing transaction may re-encode


class VectorRows:
    engine: Engine
    _codec: RegionCodec | None = None
    codec_fit_at: int = FIT_AT  # tests fit the basis on a handful of photos

    def region_codec(self) -> RegionCodec | None:
        """The library's basis for objects and tiles, once fitted (it never changes after)."""
        if self._codec is None:
            with self.engine.connect() as conn:
                text = conn.execute(
                    select(settings.c.value).where(settings.c.key == CODEC_SETTING)
                ).scalar_one_or_none()
            if text is not None:
                self._codec = RegionCodec.from_json(text)
        return self._codec

    def vector_dim(self, kind: str, width: int) -> int:
        """The width of a kind's stored vectors: the codec's for coded kinds, else `width`."""
        codec = self.region_codec() if kind in CODED_KINDS else None
        return codec.dim if codec is not None else width

    def code_ranges(self, kind: str) -> np.ndarray | None:
        """Each component's range for a coded kind's index (8 bits a component), else None."""
        codec = self.region_codec() if kind in CODED_KINDS else None
        return codec.ranges if codec is not None else None

    def decode_vectors(self, kind: str, blob: bytes, count: int, width: int) -> np.ndarray:
        """`count` stored vectors of a kind, joined -> (count, vector_dim) float32."""
        codec = self.region_codec() if kind in CODED_KINDS else None
        if codec is not None:
            return codec.decode(blob, count)
        return np.frombuffer(blob, dtype=VECTOR_DTYPE).reshape(count, width).astype(np.float32)

    def project_query(self, kind: str, vectors: np.ndarray) -> np.ndarray:
        """Query vectors as a kind's index holds its vectors."""
        codec = self.region_codec() if kind in CODED_KINDS else None
        return codec.project(vectors) if codec is not None else vectors

    def _stored(self, region: RegionData) -> tuple[bytes, np.ndarray]:
        """A new region's blob, and the vector the index gets: what a rebuild will read back."""
        codec = self.region_codec() if region.kind in CODED_KINDS else None
        if codec is not None:
            (blob,) = codec.encode(np.asarray(region.vector)[None])
            return blob, codec.decode(blob, 1)[0]
        stored = np.asarray(region.vector, dtype=VECTOR_DTYPE)
        return stored.tobytes(), stored.astype(np.float32)

    def _fit_codec_if_due(self, conn: Connection, batch: CatalogBatch, delta: VectorDelta) -> None:
        """Fit the basis when this batch brings the library's objects and tiles to FIT_AT, and
        re-encode those already stored, in the batch's transaction."""
        if self.region_codec() is not None:
            return
        fresh = [
            region.vector
            for group in _region_lists(batch)
            for region in group
            if region.kind in CODED_KINDS
        ]
        if not fresh:
            return
        coded = regions.c.kind.in_(CODED_KINDS)
        stored = int(conn.execute(select(func.count()).where(coded)).scalar_one())
        if stored + len(fresh) < self.codec_fit_at:
            return
        if stored > REENCODE_AT_MOST:
            # a library indexed before codes existed: re-encoding it would hold one transaction
            # for minutes; it keeps float16 until that is done in steps (not yet)
            return
        width = len(fresh[0])
        sample_rows = conn.execute(
            select(regions.c.vector).where(coded).order_by(func.random()).limit(FIT_SAMPLE)
        ).scalars()
        blob = b"".join(sample_rows)
        sample = np.frombuffer(blob, dtype=VECTOR_DTYPE).reshape(-1, width).astype(np.float32)
        codec = RegionCodec.fit(np.concatenate([sample, np.asarray(fresh, np.float32)]))
        ids = list(conn.execute(select(regions.c.id).where(coded).order_by(regions.c.id)).scalars())
        for chunk in chunks(ids):
            rows = conn.execute(
                select(regions.c.id, regions.c.vector).where(regions.c.id.in_(chunk))
            ).all()
            vectors = np.frombuffer(b"".join(r.vector for r in rows), VECTOR_DTYPE)
            codes = codec.encode(vectors.reshape(len(rows), width).astype(np.float32))
            conn.execute(
                update(regions)
                .where(regions.c.id == bindparam("rid"))
                .values(vector=bindparam("code")),
                [{"rid": r.id, "code": code} for r, code in zip(rows, codes, strict=True)],
            )
        conn.execute(settings.insert().values(key=CODEC_SETTING, value=codec.to_json()))
        self._codec = codec
        delta.recoded.extend(CODED_KINDS)


def _region_lists(batch: CatalogBatch) -> Iterable[list[RegionData]]:
    for item in batch.new:
        yield item.regions
    for added in batch.regions_added:
        yield added.regions
