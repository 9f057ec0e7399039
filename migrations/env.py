"""Alembic environment. searchapp passes an open connection in config.attributes['connection']."""

from __future__ import annotations

from alembic import context

from searchapp.store.models import metadata

config = context.config
target_metadata = metadata


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is None:
        raise RuntimeError("searchapp migrations run only through searchapp.store.catalog")
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=True,  # SQLite cannot ALTER most things in place
    )
    with context.begin_transaction():
        context.run_migrations()


run_migrations_online()
