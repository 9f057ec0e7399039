"""Index the date taken, so --after/--before filters read only the photos they keep.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_images_taken_at", "images", ["taken_at"])


def downgrade() -> None:
    op.drop_index("ix_images_taken_at", "images")
