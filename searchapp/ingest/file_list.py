"""A list of photo files to index, in place of folders to walk: a text file of one path a line,
or a parquet table with a `path` column (as a dataset team or another tool writes them).

A list says what to index, not what a folder holds: a photo missing from it stays in the
library, and a listed file that is gone is reported, as a missing path argument is. Relative
paths are taken from the list's own folder, so that a list travels with its photos. In a text
list, blank lines and lines starting with # are skipped (write ./#name for such a file). Every path
must be readable where the run reads it (on a cluster, a shared filesystem mounted alike on
every node): object-store URLs are refused with the way to mount them.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from searchapp.errors import UsageError

PATH_COLUMN = "path"
URL = re.compile(rb"^[A-Za-z][A-Za-z0-9+.-]*://")
PARQUET_MISSING = (
    "reading a parquet file list needs pyarrow: pip install 'searchapp[ray]' "
    "(or give a text list, one path a line)"
)


def read_file_list(listing: Path) -> list[str]:
    """The listed paths, absolute, in the list's order, each once."""
    try:
        if listing.suffix.lower() == ".parquet":
            raw = _parquet_paths(listing)
        else:
            text = listing.read_bytes().removeprefix(b"\xef\xbb\xbf")  # an editor's UTF-8 BOM
            raw = [line.rstrip(b"\r") for line in text.split(b"\n")]
    except OSError as exc:
        why = exc.strerror or str(exc)
        raise UsageError(f"cannot read the file list {listing}: {why}") from exc
    base = listing.resolve().parent
    paths: dict[str, None] = {}
    for number, line in enumerate(raw, start=1):
        if not line.strip() or line.lstrip().startswith(b"#"):
            continue  # a blank line, or a comment
        if URL.match(line):
            raise UsageError(
                f"{listing} line {number}: {os.fsdecode(line[:80])} is an object-store URL; "
                "searchapp reads files: mount the bucket on every node (s3fs, gcsfuse, "
                "rclone mount) and list the mounted paths"
            )
        path = os.fsdecode(line)  # a name that is not UTF-8 keeps its bytes
        paths[os.path.normpath(os.path.join(base, os.path.expanduser(path)))] = None
    if not paths:
        raise UsageError(f"the file list {listing} names no file")
    return list(paths)


def _parquet_paths(listing: Path) -> list[bytes]:
    try:
        import pyarrow.parquet as pq
    except ImportError as exc:
        raise UsageError(PARQUET_MISSING) from exc
    import pyarrow as pa

    try:
        names = pq.read_schema(listing).names
        if PATH_COLUMN not in names:
            raise UsageError(
                f"{listing} has no `{PATH_COLUMN}` column (it has {', '.join(names)}); "
                f"name the column of file paths `{PATH_COLUMN}`"
            )
        column = pq.read_table(listing, columns=[PATH_COLUMN]).column(PATH_COLUMN)
    except pa.ArrowInvalid as exc:
        raise UsageError(f"{listing} is not a parquet file ({exc})") from exc
    if pa.types.is_dictionary(column.type):
        column = column.cast(column.type.value_type)
    if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
        return [os.fsencode(value) if value else b"" for value in column.to_pylist()]
    if pa.types.is_binary(column.type) or pa.types.is_large_binary(column.type):
        return [value or b"" for value in column.to_pylist()]
    raise UsageError(f"{listing}: its `{PATH_COLUMN}` column holds {column.type}, not paths")
