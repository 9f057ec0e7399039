"""Hashes for duplicate detection: the perceptual hash of each photo under its eight rotations
and flips (64 bytes), and a hash of its decoded pixels. Older rows get NULLs; `searchapp dupes`
computes them from the files the first time it runs.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("images") as batch:
        batch.add_column(sa.Column("phash", sa.LargeBinary()))
        batch.add_column(sa.Column("pixel_hash", sa.String(32)))
    op.create_index("ix_images_pixel_hash", "images", ["pixel_hash"])


def downgrade() -> None:
    op.drop_index("ix_images_pixel_hash", "images")
    with op.batch_alter_table("images") as batch:
        batch.drop_column("pixel_hash")
        batch.drop_column("phash")
