"""The vector change log: what each batch added to and removed from each region kind.

A reader (a search while an indexing run commits) whose index file is some batches behind the
catalog applies the batches since its file instead of rebuilding the kind from every vector,
which takes minutes at ten million. The log starts now: `vectors.logged_since` records the
generation from which it is whole, and a file older than that is rebuilt as before.

Revision ID: 0014
Revises: 0013
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "vector_changes",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("generation", sa.Integer, nullable=False),
        sa.Column("change", sa.Integer, nullable=False),
        sa.Column("first_id", sa.Integer, nullable=False),
        sa.Column("last_id", sa.Integer, nullable=False),
    )
    op.create_index("ix_vector_changes_kind_generation", "vector_changes", ["kind", "generation"])
    # a new catalog has no generation yet, and so its log is whole from generation 0
    op.execute(
        "INSERT INTO settings (key, value) "
        "SELECT 'vectors.logged_since', value FROM settings WHERE key = 'vectors.generation'"
    )


def downgrade() -> None:
    op.execute("DELETE FROM settings WHERE key = 'vectors.logged_since'")
    op.drop_index("ix_vector_changes_kind_generation", table_name="vector_changes")
    op.drop_table("vector_changes")
