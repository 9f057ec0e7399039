"""Parsing user-facing filter values into a Filters record, with messages that say the format."""

from __future__ import annotations

import os
from collections.abc import Sequence
from datetime import datetime

from searchapp.errors import QueryError
from searchapp.query.labels import match_labels
from searchapp.records import Filters

DATE_FORMATS = ("%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M", "%Y-%m-%d", "%Y-%m", "%Y")
FORMAT_ALIASES = {
    "JPG": "JPEG",
    "JPE": "JPEG",
    "TIF": "TIFF",
    "HEIC": "HEIF",
    "PGM": "PPM",
    "PBM": "PPM",
}


def parse_date(text: str, flag: str) -> float:
    """Start of the given year, month, day or minute, local time, as unix seconds."""
    cleaned = text.strip().replace(" ", "T")
    for fmt in DATE_FORMATS:
        try:
            return datetime.strptime(cleaned, fmt).timestamp()
        except ValueError:
            continue
    raise QueryError(
        f"{flag} {text!r}: date in the wrong format; use YYYY-MM-DD (or YYYY, YYYY-MM, "
        "YYYY-MM-DDTHH:MM)"
    )


def parse_formats(text: str | None) -> tuple[str, ...]:
    if not text:
        return ()
    names = [part.strip().upper().lstrip(".") for part in text.split(",") if part.strip()]
    return tuple(sorted({FORMAT_ALIASES.get(name, name) for name in names}))


def build_filters(
    *,
    after: str | float | None = None,
    before: str | float | None = None,
    folder: str | None = None,
    camera: str | None = None,
    min_width: int | None = None,
    min_pixels: int | None = None,
    formats: str | tuple[str, ...] | None = None,
    min_score: float | None = None,
    tags: Sequence[str] | None = None,
) -> Filters:
    def when(value: str | float | None, flag: str) -> float | None:
        if value is None or isinstance(value, float | int):
            return value
        return parse_date(value, flag)

    start, end = when(after, "--after"), when(before, "--before")
    if start is not None and end is not None and start >= end:
        raise QueryError("--after must be earlier than --before")
    for flag, value in (("--min-width", min_width), ("--min-pixels", min_pixels)):
        if value is not None and value < 1:
            raise QueryError(f"{flag} must be at least 1 (got {value})")
    if min_score is not None and not -1.0 <= min_score <= 1.0:
        raise QueryError(f"--min-score is a cosine similarity between -1 and 1 (got {min_score})")
    if isinstance(formats, tuple):
        formats = ",".join(formats)
    return Filters(
        after=start,
        before=end,
        folder=os.path.abspath(os.path.expanduser(folder)) if folder else None,
        camera=camera.strip() or None if camera else None,
        min_width=min_width,
        min_pixels=min_pixels,
        formats=parse_formats(formats),
        min_score=min_score,
        tags=tuple(tag_names(tag) for tag in tags or ()),
    )


def tag_names(tag: str) -> tuple[str, ...]:
    """The stored label names a --tag stands for: itself (a user's vocabulary stores its tags
    as written) and the ImageNet classes its words name ("beach": seashore, sandbar)."""
    tag = tag.strip()
    if not tag:
        raise QueryError("--tag needs a word, such as --tag beach")
    names = {tag, tag.lower()}
    for found in match_labels(tag).values():
        names |= found
    return tuple(sorted(names))
