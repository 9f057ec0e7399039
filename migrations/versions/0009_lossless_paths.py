"""Paths are stored in searchapp.paths' lossless form: a backslash is written twice.

A file name that is not UTF-8 (cafe\\xe9.jpg from an old camera) crashed the catalog insert and
took its whole batch with it. Such names are now stored with each undecodable byte as \\xNN, and
so a backslash already in a stored path must be doubled to keep the form one-to-one.

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

COLUMNS = (("images", "path"), ("failures", "path"), ("failures", "reason"))


def upgrade() -> None:
    for table, column in COLUMNS:
        op.execute(
            f"UPDATE {table} SET {column} = replace({column}, '\\', '\\\\') "
            f"WHERE {column} LIKE '%\\%' ESCAPE '!'"
        )


def downgrade() -> None:
    # names stored with \\xNN escapes cannot go back: the old schema could not hold them
    for table, column in COLUMNS:
        op.execute(
            f"UPDATE {table} SET {column} = replace({column}, '\\\\', '\\') "
            f"WHERE {column} LIKE '%\\%' ESCAPE '!'"
        )
