"""Colourfulness of each photo (so that a greyscale copy is not the one suggested for keeping),
and the evidence of every pixel check `dupes` ran, keyed by the two files' content hashes, so that
a second run does not check them again. Older rows get NULL colourfulness; `searchapp dupes`
measures it with the hashes it backfills.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    inspector = sa.inspect(op.get_bind())
    # a development build had both in 0005; catalogs it made already hold them
    if "colourfulness" not in {column["name"] for column in inspector.get_columns("images")}:
        with op.batch_alter_table("images") as batch:
            batch.add_column(sa.Column("colourfulness", sa.Float()))
    if inspector.has_table("pixel_evidence"):
        return
    op.create_table(
        "pixel_evidence",
        sa.Column("hash_a", sa.String(64), primary_key=True),
        sa.Column("hash_b", sa.String(64), primary_key=True),
        sa.Column("method", sa.Integer(), primary_key=True),
        sa.Column("evidence", sa.Text(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("pixel_evidence")
    with op.batch_alter_table("images") as batch:
        batch.drop_column("colourfulness")
