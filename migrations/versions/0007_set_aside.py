"""Photos set aside by `searchapp dupes --move-to ... --apply`: the row follows the moved file, so
that `--undo` brings it back without re-embedding, but search and `dupes` leave it out.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # a plain ADD COLUMN: batch mode would copy the table, and SQLite's foreign-key cascade
    # would then empty the regions
    op.add_column(
        "images", sa.Column("set_aside", sa.Boolean(), nullable=False, server_default=sa.false())
    )


def downgrade() -> None:
    with op.batch_alter_table("images") as batch:
        batch.drop_column("set_aside")
