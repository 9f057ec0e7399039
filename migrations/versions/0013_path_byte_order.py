"""Paths compare byte by byte on PostgreSQL, as they do on SQLite.

A folder filter is a range on the path ("root/" <= path < "root0", store/tables.under), which
holds only where '/' sorts just before '0'. A server whose locale collates linguistically
(en_US.UTF-8, ICU) sorts punctuation otherwise, or ignores it, and would put "root#1" under
"root/". The "C" collation is byte order; SQLite's default already is. Nothing changes on SQLite.

Revision ID: 0013
Revises: 0012
"""

from __future__ import annotations

from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

PATH_COLUMNS = (("images", "path"), ("failures", "path"))


def _alter(collation: str) -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table, column in PATH_COLUMNS:
        op.execute(f'ALTER TABLE {table} ALTER COLUMN {column} TYPE TEXT COLLATE "{collation}"')


def upgrade() -> None:
    _alter("C")


def downgrade() -> None:
    _alter("default")
