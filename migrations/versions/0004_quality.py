"""Per-photo quality metrics: blur (variance of the Laplacian), brightness, contrast, and the
reason a photo was kept out of the vectors by --skip-low-quality. Older rows get NULLs.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("images") as batch:
        batch.add_column(sa.Column("blur", sa.Float()))
        batch.add_column(sa.Column("brightness", sa.Float()))
        batch.add_column(sa.Column("contrast", sa.Float()))
        batch.add_column(sa.Column("quality_flag", sa.String(64)))


def downgrade() -> None:
    with op.batch_alter_table("images") as batch:
        batch.drop_column("quality_flag")
        batch.drop_column("contrast")
        batch.drop_column("brightness")
        batch.drop_column("blur")
