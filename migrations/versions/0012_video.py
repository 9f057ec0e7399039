"""Videos: their facts on images, and the time of each frame region.

A video is a library item like a photo: one images row (width and height as displayed, taken_at
from the container's creation time), with its duration, frame rate and codec here; NULL
duration means a photo. Its sampled frames are regions of kind "frame", each with the time it
shows, in seconds from the start. frames_until is how far a long video has been sampled and
committed while its run goes on (NULL once it is whole), so a killed run resumes from there
instead of decoding the video again.

Revision ID: 0012
Revises: 0011
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # plain ADD COLUMNs: batch mode would copy the tables, and SQLite's foreign-key cascade
    # would then empty the regions
    op.add_column("images", sa.Column("duration", sa.Float, nullable=True))
    op.add_column("images", sa.Column("frame_rate", sa.Float, nullable=True))
    op.add_column("images", sa.Column("codec", sa.String(32), nullable=True))
    op.add_column("images", sa.Column("frames_until", sa.Float, nullable=True))
    op.add_column("regions", sa.Column("time", sa.Float, nullable=True))


def downgrade() -> None:
    op.drop_column("regions", "time")
    for column in ("frames_until", "codec", "frame_rate", "duration"):
        op.drop_column("images", column)
