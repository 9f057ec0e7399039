"""Alembic migrations of the searchapp catalog. Installed as `searchapp.migrations`."""
