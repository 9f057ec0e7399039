"""regions.norm and map_points: what `stats` health and `searchapp map` keep.

- regions.norm: a vector's length before it was normalised, for the norm-spread figure of the
  embedding health check. NULL for regions indexed before this revision (the length cannot be
  re-derived from the stored unit vector).
- map_points: a region's place on the 2-D map of its kind, fitted once and extended with new
  photos; the fit's own facts (method, count it was fitted on) live in settings.

Revision ID: 0011
Revises: 0010
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # a plain ADD COLUMN: batch mode would copy the table, and the cascade would empty labels
    op.add_column("regions", sa.Column("norm", sa.Float, nullable=True))
    op.create_table(
        "map_points",
        sa.Column(
            "region_id",
            sa.Integer,
            sa.ForeignKey("regions.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("x", sa.Float, nullable=False),
        sa.Column("y", sa.Float, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("map_points")
    op.drop_column("regions", "norm")
