"""Which packages the wheel holds, found rather than listed: a hand-kept list left out
searchapp.detect and searchapp.dupes, so `pip install .` gave a tool whose index and dupes failed.
The top-level migrations/ folder ships inside the package as searchapp.migrations, so an installed
searchapp can still migrate a library on open. Everything else is in pyproject.toml."""

from setuptools import find_packages, setup

MIGRATIONS = "searchapp.migrations"

setup(
    packages=[
        *find_packages(include=["searchapp", "searchapp.*"]),
        MIGRATIONS,
        *(f"{MIGRATIONS}.{name}" for name in find_packages(where="migrations")),
    ],
    package_dir={MIGRATIONS: "migrations"},
)
