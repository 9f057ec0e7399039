"""images.regions_pending: the region kinds a photo still waits for.

Indexing embeds every new photo's scene first, so a library answers searches at scene-only speed,
and then cuts and embeds its objects and tiles in a second stage. A photo between the two stages
names the kinds it still lacks here ("object,tile"); NULL means it has all it was indexed for. A
killed run leaves the column set, and the next run resumes from it.

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # a plain ADD COLUMN: batch mode would copy the table, and SQLite's foreign-key cascade
    # would then empty the regions
    op.add_column("images", sa.Column("regions_pending", sa.String(64), nullable=True))
    op.create_index(
        "ix_images_regions_pending",
        "images",
        ["id"],
        sqlite_where=sa.text("regions_pending IS NOT NULL"),
        postgresql_where=sa.text("regions_pending IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_images_regions_pending", "images")
    # a plain DROP COLUMN (SQLite 3.35+): batch mode would copy the table, and dropping the old
    # one would cascade to the regions
    op.drop_column("images", "regions_pending")
