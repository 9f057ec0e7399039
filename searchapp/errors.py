"""Typed errors with user-facing messages.

Library code raises these; only the CLI turns them into exit codes. Each message names what went
wrong and how to fix it.
"""

from __future__ import annotations


class SearchappError(Exception):
    """Base class: a whole operation failed. `exit_code` is what the CLI returns."""

    exit_code = 1


class UsageError(SearchappError):
    """Bad flags or arguments."""

    exit_code = 2


class LibraryBusyError(SearchappError):
    """Another process holds the write lock."""

    exit_code = 3


class SchemaTooNewError(SearchappError):
    """The catalog was written by a newer searchapp."""

    exit_code = 4


class EncoderMismatchError(SearchappError):
    """The library's vectors come from another encoder."""

    exit_code = 5


class UnknownNameError(UsageError):
    """A registry lookup failed; the message lists the valid names."""


class WeightsUnavailableError(SearchappError):
    """Model weights could not be found locally nor downloaded."""

    exit_code = 6


class DiskFullError(SearchappError):
    exit_code = 7


class QueryError(UsageError):
    """A search query that cannot be answered as asked."""


class ImageLoadError(Exception):
    """One file could not be read as an image. Not fatal: it becomes a line in the report."""

    def __init__(self, path: str, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


class DamagedCatalogError(SearchappError):
    """catalog.db is not a database, or failed SQLite's integrity check: nothing writes to it."""

    exit_code = 8


class JournalError(SearchappError):
    """A `dupes` journal that is damaged, edited, or from another library."""

    exit_code = 9


class LibraryProblemsError(SearchappError):
    """`searchapp check` found what it reports."""

    exit_code = 10


class PhotoNotFoundError(SearchappError):
    """No photo in the catalog has this id."""


class PhotoChangedError(SearchappError):
    """The file at a photo's path is gone or no longer holds the bytes that were indexed."""
