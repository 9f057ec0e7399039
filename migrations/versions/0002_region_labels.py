"""Top-5 classifier labels per region, so a CNN library can answer word queries by label.

Libraries created before this revision get an empty table; `searchapp reindex` fills it.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "region_labels",
        sa.Column(
            "region_id",
            sa.Integer(),
            sa.ForeignKey("regions.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("rank", sa.Integer(), primary_key=True),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("prob", sa.Float(), nullable=False),
    )
    op.create_index("ix_region_labels_name", "region_labels", ["name"])


def downgrade() -> None:
    op.drop_index("ix_region_labels_name", "region_labels")
    op.drop_table("region_labels")
