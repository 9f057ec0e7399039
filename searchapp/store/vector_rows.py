"""How region vectors sit in the catalog's rows: float16 at the encoder's width, or, for objects
and tiles once the library has fitted its basis, int8 codes (store/codec.py). The one place that
turns a vector into a blob and back.

A library whose encoder is CLIP keeps its tiles in the CNN's space (encoders/registry.py says
why): the tile encoder's identity is a setting of its own, its width is the tiles' width, and
objects and tiles then get a basis each, since they are no longer in one space."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable

import numpy as np
from sqlalchemy import Engine, bindparam, func, select, text, update
from sqlalchemy.engine import Connection

from searchapp.records import CatalogBatch, EncoderIdentity, RegionData, VectorDelta
from searchapp.store.codec import CODED_KINDS, FIT_AT, FIT_SAMPLE, RegionCodec
from searchapp.store.tables import VECTOR_DTYPE, chunks, regions, settings

CODEC_SETTING = "codec.regions"
TILE_CODEC_SETTING = "codec.tiles"  # where tiles are in a space of their own
TILE_ENCODER_SETTING = "encoder.tiles"  # the tiles' encoder, where not the library's
REENCODE_AT_MOST = 20_000  # stored vectors one committing transaction may re-encode


class VectorRows:
    engine: Engine
    _set: Callable[[Connection, str, str], None]  # the catalog's settings upsert
    _codecs: dict[str, RegionCodec]
    _tile_identity: EncoderIdentity | None = None
    codec_fit_at: int = FIT_AT  # tests fit the basis on a handful of photos

    # settings read during one batch's transaction, which fixes the library's layout while it
    # runs (SQLite's one writer; on PostgreSQL the basis lock it holds): read once, not once a
    # region, where a library without a basis or a tile encoder of its own asked each time
    _batch_settings: dict[str, str | None] | None = None

    def _setting(self, key: str) -> str | None:
        memo = self._batch_settings
        if memo is not None and key in memo:
            return memo[key]
        with self.engine.connect() as conn:
            value = conn.execute(
                select(settings.c.value).where(settings.c.key == key)
            ).scalar_one_or_none()
        if memo is not None:
            memo[key] = value
        return value

    def tile_identity(self) -> EncoderIdentity | None:
        """The encoder of the tiles where it is not the library's (a CLIP library's CNN)."""
        if self._tile_identity is None:  # once recorded, kept while the library has tiles
            text = self._setting(TILE_ENCODER_SETTING)
            self._tile_identity = EncoderIdentity(**json.loads(text)) if text else None
        return self._tile_identity

    def set_tile_identity(self, identity: EncoderIdentity | None) -> None:
        value = json.dumps(identity.__dict__, sort_keys=True) if identity else ""
        with self.engine.begin() as conn:
            self._set(conn, TILE_ENCODER_SETTING, value)  # an upsert: two runs may start at once
        self._tile_identity = identity

    def same_space(self, kind: str) -> bool:
        """Whether a kind's vectors are in the library encoder's space (a scene's)."""
        return kind != "tile" or self.tile_identity() is None

    def codec_groups(self) -> list[tuple[str, tuple[str, ...]]]:
        """(setting, kinds) of each basis: one for objects and tiles in one space, else two."""
        if self.tile_identity() is None:
            return [(CODEC_SETTING, CODED_KINDS)]
        return [(CODEC_SETTING, ("object",)), (TILE_CODEC_SETTING, ("tile",))]

    def _codec_key(self, kind: str) -> str | None:
        return next((key for key, kinds in self.codec_groups() if kind in kinds), None)

    def region_codec(self, kind: str = "object") -> RegionCodec | None:
        """The library's basis for a coded kind, once fitted (it never changes after)."""
        key = self._codec_key(kind)
        if key is None:
            return None
        if key not in self._codecs:
            text = self._setting(key)
            if text is None:
                return None
            self._codecs[key] = RegionCodec.from_json(text)
        return self._codecs[key]

    def forget_layout(self) -> None:
        """Read the bases and the tiles' encoder again (a basis fitted by a rolled-back batch
        is not there; another process may have switched encoders)."""
        self._codecs = {}
        self._tile_identity = None

    def raw_width(self, kind: str, width: int) -> int:
        """The encoder's width for a kind: its tile encoder's for tiles in their own space."""
        tiles = self.tile_identity() if kind == "tile" else None
        return tiles.dim if tiles is not None else width

    def vector_dim(self, kind: str, width: int) -> int:
        """The width of a kind's stored vectors: the codec's for coded kinds, else the
        encoder's (`width`, or the tile encoder's)."""
        codec = self.region_codec(kind)
        return codec.dim if codec is not None else self.raw_width(kind, width)

    def code_ranges(self, kind: str) -> np.ndarray | None:
        """Each component's range for a coded kind's index (8 bits a component), else None."""
        codec = self.region_codec(kind)
        return codec.ranges if codec is not None else None

    def decode_vectors(self, kind: str, blob: bytes, count: int, width: int) -> np.ndarray:
        """`count` stored vectors of a kind, joined -> (count, vector_dim) float32."""
        codec = self.region_codec(kind)
        if codec is not None:
            return codec.decode(blob, count)
        wide = self.raw_width(kind, width)
        return np.frombuffer(blob, dtype=VECTOR_DTYPE).reshape(count, wide).astype(np.float32)

    def project_query(self, kind: str, vectors: np.ndarray) -> np.ndarray:
        """Query vectors as a kind's index holds its vectors."""
        codec = self.region_codec(kind)
        return codec.project(vectors) if codec is not None else vectors

    def _stored(self, region: RegionData) -> tuple[bytes, np.ndarray]:
        """A new region's blob, and the vector the index gets: what a rebuild will read back."""
        codec = self.region_codec(region.kind)
        if codec is not None:
            (blob,) = codec.encode(np.asarray(region.vector)[None])
            return blob, codec.decode(blob, 1)[0]
        stored = np.asarray(region.vector, dtype=VECTOR_DTYPE)
        return stored.tobytes(), stored.astype(np.float32)

    def _fit_codec_if_due(self, conn: Connection, batch: CatalogBatch, delta: VectorDelta) -> None:
        """Fit a basis when this batch brings the library's vectors of its kinds to FIT_AT, and
        re-encode those already stored, in the batch's transaction."""
        for key, kinds in self.codec_groups():
            if self.region_codec(kinds[0]) is None:
                self._fit_group(conn, batch, delta, key, kinds)

    def _fit_group(
        self,
        conn: Connection,
        batch: CatalogBatch,
        delta: VectorDelta,
        key: str,
        kinds: tuple[str, ...],
    ) -> None:
        fresh = [
            region.vector
            for group in _region_lists(batch)
            for region in group
            if region.kind in kinds
        ]
        if not fresh:
            # copies clone their source's rows, float16 until a basis: they share the lock
            if batch.copies:
                self._fitted_meanwhile(conn, key, exclusive=False)
            return
        coded = regions.c.kind.in_(kinds)
        stored = int(conn.execute(select(func.count()).where(coded)).scalar_one())
        # a library indexed before codes existed would hold one transaction for minutes to
        # re-encode; it keeps float16 until that is done in steps (not yet)
        due = self.codec_fit_at <= stored + len(fresh) and stored <= REENCODE_AT_MOST
        if self._fitted_meanwhile(conn, key, exclusive=due) or not due:
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
        conn.execute(settings.insert().values(key=key, value=codec.to_json()))
        self._codecs[key] = codec
        delta.recoded.extend(kinds)

    def _fitted_meanwhile(self, conn: Connection, key: str, *, exclusive: bool) -> bool:
        """On PostgreSQL, where writers work at once: whether another writer's basis is now
        committed (it is then used). The fitter holds its basis's lock alone, writers of
        float16 rows share it, so no float16 row lands beside a basis fitted without it."""
        if conn.dialect.name != "postgresql":
            return False  # SQLite has one writer at a time
        take = "pg_advisory_xact_lock" if exclusive else "pg_advisory_xact_lock_shared"
        conn.execute(text(f"SELECT {take}(hashtext(:key))"), {"key": key})
        fitted = conn.execute(select(settings.c.value).where(settings.c.key == key)).scalar()
        if fitted is None:
            return False
        self._codecs[key] = RegionCodec.from_json(fitted)
        return True


def _region_lists(batch: CatalogBatch) -> Iterable[list[RegionData]]:
    for item in batch.new:
        yield item.regions
    for added in batch.regions_added:
        yield added.regions
