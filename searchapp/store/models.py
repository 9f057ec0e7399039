"""SQLAlchemy tables of the catalog. Schema changes go through Alembic migrations in migrations/."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    false,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class Setting(Base):
    """Key/value facts about the library: encoder identity, vector generation."""

    __tablename__ = "settings"
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text, nullable=False)


class ImageRow(Base):
    __tablename__ = "images"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    path: Mapped[str] = mapped_column(Text, nullable=False, unique=True)
    size: Mapped[int] = mapped_column(BigInteger, nullable=False)
    mtime_ns: Mapped[int] = mapped_column(BigInteger, nullable=False)
    content_hash: Mapped[str] = mapped_column(String(64), nullable=False, index=True)
    width: Mapped[int] = mapped_column(Integer, nullable=False)
    height: Mapped[int] = mapped_column(Integer, nullable=False)
    format: Mapped[str] = mapped_column(String(16), nullable=False)
    taken_at: Mapped[float] = mapped_column(Float, nullable=False, index=True)  # unix seconds
    taken_source: Mapped[str] = mapped_column(String(8), nullable=False)  # "exif" or "mtime"
    camera_make: Mapped[str | None] = mapped_column(String(128))
    camera_model: Mapped[str | None] = mapped_column(String(128))
    gps_lat: Mapped[float | None] = mapped_column(Float)
    gps_lon: Mapped[float | None] = mapped_column(Float)
    indexed_at: Mapped[float] = mapped_column(Float, nullable=False)
    blur: Mapped[float | None] = mapped_column(Float)
    brightness: Mapped[float | None] = mapped_column(Float)
    contrast: Mapped[float | None] = mapped_column(Float)
    quality_flag: Mapped[str | None] = mapped_column(String(64))  # kept out of the vectors
    phash: Mapped[bytes | None] = mapped_column(LargeBinary)  # 8 pHashes: rotations and flips
    pixel_hash: Mapped[str | None] = mapped_column(String(32), index=True)  # decoded pixels
    colourfulness: Mapped[float | None] = mapped_column(Float)  # 0 for greyscale
    # moved away by `dupes --move-to`: its row follows the file, its vectors leave the indexes
    set_aside: Mapped[bool] = mapped_column(
        Boolean, nullable=False, default=False, server_default=false()
    )

    __table_args__ = (  # the few set-aside images, for the NOT IN of every count and read
        Index(
            "ix_images_set_aside",
            "id",
            sqlite_where=text("set_aside IS 1"),
            postgresql_where=text("set_aside"),
        ),
    )


class RegionRow(Base):
    """One embedded region of an image. Its id is the FAISS id of its vector."""

    __tablename__ = "regions"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    image_id: Mapped[int] = mapped_column(
        ForeignKey("images.id", ondelete="CASCADE"), nullable=False
    )
    kind: Mapped[str] = mapped_column(String(16), nullable=False)
    x0: Mapped[int] = mapped_column(Integer, nullable=False)
    y0: Mapped[int] = mapped_column(Integer, nullable=False)
    x1: Mapped[int] = mapped_column(Integer, nullable=False)
    y1: Mapped[int] = mapped_column(Integer, nullable=False)
    label: Mapped[str | None] = mapped_column(String(128))
    label_score: Mapped[float | None] = mapped_column(Float)
    vector: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)  # float16, L2-normalised

    __table_args__ = (
        Index("ix_regions_image", "image_id"),
        Index("ix_regions_kind_image", "kind", "image_id"),  # covers the per-kind counts
    )


class FailureRow(Base):
    """A file that could not be indexed, with why. Kept until the file changes or disappears."""

    __tablename__ = "failures"
    path: Mapped[str] = mapped_column(Text, primary_key=True)
    size: Mapped[int] = mapped_column(BigInteger, nullable=False)
    mtime_ns: Mapped[int] = mapped_column(BigInteger, nullable=False)
    reason: Mapped[str] = mapped_column(Text, nullable=False)
    failed_at: Mapped[float] = mapped_column(Float, nullable=False)


class PixelEvidenceRow(Base):
    """What a `dupes` pixel check measured for two files (by content hash), kept for next time."""

    __tablename__ = "pixel_evidence"
    hash_a: Mapped[str] = mapped_column(String(64), primary_key=True)
    hash_b: Mapped[str] = mapped_column(String(64), primary_key=True)
    method: Mapped[int] = mapped_column(Integer, primary_key=True)  # variant and check version
    evidence: Mapped[str] = mapped_column(Text, nullable=False)  # JSON of PixelEvidence


class RegionLabelRow(Base):
    """Top classes of a region from a classifier encoder (the offline CNN), for label search."""

    __tablename__ = "region_labels"
    region_id: Mapped[int] = mapped_column(
        ForeignKey("regions.id", ondelete="CASCADE"), primary_key=True
    )
    rank: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(128), nullable=False, index=True)
    prob: Mapped[float] = mapped_column(Float, nullable=False)
