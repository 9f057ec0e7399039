"""SQLAlchemy tables of the catalog. Schema changes go through Alembic migrations in migrations/.

Plain Core tables: nothing here maps rows to classes, and leaving the ORM out spares every
command, a query among them, a tenth of a second of imports.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    false,
    text,
)

from searchapp.paths import from_stored, stored

metadata = MetaData()


class LosslessText(TypeDecorator[str]):
    """Text that may hold a file name: names that are not UTF-8 are kept byte for byte
    (paths.stored), where SQLite and PostgreSQL refuse them as they are."""

    impl = Text
    cache_ok = True

    def process_bind_param(self, value: str | None, dialect: object) -> str | None:
        return None if value is None else stored(value)

    def process_result_value(self, value: str | None, dialect: object) -> str | None:
        return None if value is None else from_stored(value)


# Key/value facts about the library: encoder identity, vector generation.
settings = Table(
    "settings",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)

images = Table(
    "images",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("path", LosslessText, nullable=False, unique=True),
    Column("size", BigInteger, nullable=False),
    Column("mtime_ns", BigInteger, nullable=False),
    Column("content_hash", String(64), nullable=False, index=True),
    Column("width", Integer, nullable=False),
    Column("height", Integer, nullable=False),
    Column("format", String(16), nullable=False),
    Column("taken_at", Float, nullable=False, index=True),  # unix seconds
    Column("taken_source", String(8), nullable=False),  # "exif" or "mtime"
    Column("camera_make", String(128)),
    Column("camera_model", String(128)),
    Column("gps_lat", Float),
    Column("gps_lon", Float),
    Column("indexed_at", Float, nullable=False),
    Column("blur", Float),
    Column("brightness", Float),
    Column("contrast", Float),
    Column("quality_flag", String(64)),  # kept out of the vectors
    Column("phash", LargeBinary),  # 8 pHashes: rotations and flips
    Column("pixel_hash", String(32), index=True),  # decoded pixels
    Column("colourfulness", Float),  # 0 for greyscale
    # moved away by `dupes --move-to`: its row follows the file, its vectors leave the indexes
    Column("set_aside", Boolean, nullable=False, default=False, server_default=false()),
    # region kinds still to embed ("object,tile"): the scene comes first, the rest follows
    Column("regions_pending", String(64)),
    # a video's facts (NULL duration: a photo); frames_until: sampled so far while unfinished
    Column("duration", Float),
    Column("frame_rate", Float),
    Column("codec", String(32)),
    Column("frames_until", Float),
    # the few set-aside images, for the NOT IN of every count and read
    Index(
        "ix_images_set_aside",
        "id",
        sqlite_where=text("set_aside IS 1"),
        postgresql_where=text("set_aside"),
    ),
    Index(
        "ix_images_regions_pending",
        "id",
        sqlite_where=text("regions_pending IS NOT NULL"),
        postgresql_where=text("regions_pending IS NOT NULL"),
    ),
)

# One embedded region of an image. Its id is the FAISS id of its vector.
regions = Table(
    "regions",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("image_id", ForeignKey("images.id", ondelete="CASCADE"), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("x0", Integer, nullable=False),
    Column("y0", Integer, nullable=False),
    Column("x1", Integer, nullable=False),
    Column("y1", Integer, nullable=False),
    Column("label", String(128)),
    Column("label_score", Float),
    Column("vector", LargeBinary, nullable=False),  # float16, L2-normalised
    Column("norm", Float),  # the vector's length before normalising; NULL before revision 0011
    Column("time", Float),  # a video frame's time in seconds from the start; NULL otherwise
    Index("ix_regions_image", "image_id"),
    Index("ix_regions_kind_image", "kind", "image_id"),  # covers the per-kind counts
)

# What each committed batch did to the vector set, kept until every index file holds it: a
# reader whose file is some batches behind the catalog applies these instead of rebuilding the
# kind from every vector. A row is a run of consecutive region ids (a batch's inserts are one
# run or a few), so that logging costs a row a batch, not a row a region.
vector_changes = Table(
    "vector_changes",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("kind", String(16), nullable=False),
    Column("generation", Integer, nullable=False),  # the vector generation the batch made
    Column("change", Integer, nullable=False),  # ADDED, REMOVED or RECODED (store/vector_log.py)
    Column("first_id", Integer, nullable=False),
    Column("last_id", Integer, nullable=False),
    Index("ix_vector_changes_kind_generation", "kind", "generation"),
)

# A file that could not be indexed, with why. Kept until the file changes or disappears.
failures = Table(
    "failures",
    metadata,
    Column("path", LosslessText, primary_key=True),
    Column("size", BigInteger, nullable=False),
    Column("mtime_ns", BigInteger, nullable=False),
    Column("reason", LosslessText, nullable=False),  # may quote the name
    Column("failed_at", Float, nullable=False),
)

# What a `dupes` pixel check measured for two files (by content hash), kept for next time.
evidence = Table(
    "pixel_evidence",
    metadata,
    Column("hash_a", String(64), primary_key=True),
    Column("hash_b", String(64), primary_key=True),
    Column("method", Integer, primary_key=True),  # variant and check version
    Column("evidence", Text, nullable=False),  # JSON of PixelEvidence
)

# Top classes of a region from a classifier encoder (the offline CNN), for label search.
labels = Table(
    "region_labels",
    metadata,
    Column("region_id", ForeignKey("regions.id", ondelete="CASCADE"), primary_key=True),
    Column("rank", Integer, primary_key=True),
    Column("name", String(128), nullable=False, index=True),
    Column("prob", Float, nullable=False),
)

# A region's place on its kind's 2-D map (`searchapp map`); the fit's facts are in settings.
map_points = Table(
    "map_points",
    metadata,
    Column("region_id", ForeignKey("regions.id", ondelete="CASCADE"), primary_key=True),
    Column("x", Float, nullable=False),
    Column("y", Float, nullable=False),
)
