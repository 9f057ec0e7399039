"""Initial catalog: settings, images, regions with float16 vectors, failures.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "settings",
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("value", sa.Text(), nullable=False),
    )
    op.create_table(
        "images",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("path", sa.Text(), nullable=False, unique=True),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("mtime_ns", sa.BigInteger(), nullable=False),
        sa.Column("content_hash", sa.String(64), nullable=False),
        sa.Column("width", sa.Integer(), nullable=False),
        sa.Column("height", sa.Integer(), nullable=False),
        sa.Column("format", sa.String(16), nullable=False),
        sa.Column("taken_at", sa.Float(), nullable=False),
        sa.Column("taken_source", sa.String(8), nullable=False),
        sa.Column("camera_make", sa.String(128)),
        sa.Column("camera_model", sa.String(128)),
        sa.Column("gps_lat", sa.Float()),
        sa.Column("gps_lon", sa.Float()),
        sa.Column("indexed_at", sa.Float(), nullable=False),
    )
    op.create_index("ix_images_content_hash", "images", ["content_hash"])
    op.create_table(
        "regions",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column(
            "image_id",
            sa.Integer(),
            sa.ForeignKey("images.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("x0", sa.Integer(), nullable=False),
        sa.Column("y0", sa.Integer(), nullable=False),
        sa.Column("x1", sa.Integer(), nullable=False),
        sa.Column("y1", sa.Integer(), nullable=False),
        sa.Column("label", sa.String(128)),
        sa.Column("label_score", sa.Float()),
        sa.Column("vector", sa.LargeBinary(), nullable=False),
    )
    op.create_index("ix_regions_image", "regions", ["image_id"])
    op.create_index("ix_regions_kind", "regions", ["kind"])
    op.create_table(
        "failures",
        sa.Column("path", sa.Text(), primary_key=True),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("mtime_ns", sa.BigInteger(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("failed_at", sa.Float(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("failures")
    op.drop_index("ix_regions_kind", "regions")
    op.drop_index("ix_regions_image", "regions")
    op.drop_table("regions")
    op.drop_index("ix_images_content_hash", "images")
    op.drop_table("images")
    op.drop_table("settings")
