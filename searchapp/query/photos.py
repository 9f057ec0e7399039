"""Photos by id, for viewers: the catalog's facts about one photo, its file's bytes, a thumbnail,
and a part of it cut out as a query. A video is an item too: its thumbnail is the frame shown
at a time, and its file is served as it lies on disk.

A photo is reached only through its catalog row, never through a path a caller names. What is
read from its path must still hash to the content hash stored when it was indexed: a file
replaced since (by a symlink to a private file, say) is refused, not served. A video's file is
checked by its size and modification time instead (see `video_stat`).
"""

from __future__ import annotations

import io
import math
import os
from pathlib import Path
from stat import S_ISREG
from typing import TYPE_CHECKING

import numpy as np

from searchapp.errors import ImageLoadError, PhotoChangedError, PhotoNotFoundError, QueryError
from searchapp.ingest.load import LoadLimits, content_hash, decode, read_bytes
from searchapp.ingest.regions import REGION_KINDS
from searchapp.ingest.video import frame_at
from searchapp.records import BBox, FileStat, PhotoDetails

if TYPE_CHECKING:
    from PIL import Image

    from searchapp.store.catalog import Catalog

THUMB_SIZES = (160, 320, 640, 1280)  # longer side, px; a request is served the next size up
THUMB_QUALITY = 82


def details(catalog: Catalog, photo_id: int) -> PhotoDetails:
    found = catalog.photo_details(photo_id)
    if found is None:
        raise PhotoNotFoundError(f"no photo with id {photo_id} in this library")
    return found


def original_bytes(catalog: Catalog, photo_id: int) -> tuple[PhotoDetails, bytes]:
    """The photo's file as indexed: its bytes, checked against the stored content hash."""
    photo = details(catalog, photo_id)
    try:
        st = os.stat(photo.path)
        data = read_bytes(FileStat(photo.path, st.st_size, st.st_mtime_ns), LoadLimits())
    except (OSError, ImageLoadError) as exc:
        reason = exc.reason if isinstance(exc, ImageLoadError) else exc.strerror
        raise PhotoChangedError(
            f"{photo.path}: {reason}; reconnect its drive, or run `searchapp index` on its "
            "folder to drop it from the library"
        ) from None
    if content_hash(data) != photo.content_hash:
        raise PhotoChangedError(
            f"{photo.path} changed since it was indexed; run `searchapp index` on its folder"
        )
    return photo, data


def _displayed(catalog: Catalog, photo_id: int, min_side: int) -> Image.Image:
    photo, data = original_bytes(catalog, photo_id)
    st = FileStat(photo.path, len(data), 0)
    try:
        limits = LoadLimits()
        return decode(data, st, min_side=min_side, limits=limits, digest=photo.content_hash).image
    except ImageLoadError as exc:
        raise PhotoChangedError(f"{photo.path}: {exc.reason}") from None


def thumb_size(requested: int | None) -> int:
    if requested is None:
        return THUMB_SIZES[1]
    if requested < 1:
        raise QueryError(f"thumbnail size must be a positive number of pixels (got {requested})")
    return next((size for size in THUMB_SIZES if size >= requested), THUMB_SIZES[-1])


def video_stat(catalog: Catalog, photo: PhotoDetails) -> os.stat_result:
    """The stat of a video's file, refused unless its size and modification time are those the
    catalog holds. Not its hash, as photos are checked: a viewer's <video> asks for many byte
    ranges of a file of gigabytes, and hashing it whole for each would take seconds. A file
    replaced since indexing differs in size or time; one only touched is refused until the
    next `searchapp index` records its new time."""
    known = catalog.image_by_path(photo.path)
    try:
        st = os.stat(photo.path)
    except OSError as exc:
        raise PhotoChangedError(
            f"{photo.path}: {exc.strerror}; reconnect its drive, or run `searchapp index` on its "
            "folder to drop it from the library"
        ) from None
    if (
        known is None
        or not S_ISREG(st.st_mode)
        or (st.st_size, st.st_mtime_ns) != (known.size, known.mtime_ns)
    ):
        raise PhotoChangedError(
            f"{photo.path} changed since it was indexed; run `searchapp index` on its folder"
        )
    return st


def _frame(catalog: Catalog, photo: PhotoDetails, time: float, side: int) -> Image.Image:
    """The picture a video shows at `time`, decoded at about `side` px on its longer side."""
    video_stat(catalog, photo)
    width, height = photo.meta.width, photo.meta.height
    shorter = math.ceil(side * min(width, height) / max(width, height, 1))
    try:
        return frame_at(photo.path, time, shorter)
    except ImageLoadError as exc:
        raise PhotoChangedError(f"{photo.path}: {exc.reason}") from None


def _thumb_path(cache: Path, side: int, digest: str, time: float | None = None) -> Path:
    """By content hash; a video's other frames than its first by their time, to the ms."""
    name = f"{digest}-{round(time * 1000)}ms" if time else digest
    return cache / str(side) / digest[:2] / f"{name}.jpg"


def _thumb_time(time: float | None) -> float | None:
    if time is not None and not (math.isfinite(time) and time >= 0):
        raise QueryError(f"time {time}: give the seconds from a video's start, 0 or more")
    return time


def cached_thumbnails(
    catalog: Catalog,
    cache: Path,
    photo_ids: list[int],
    size: int,
    times: dict[int, float] | None = None,
) -> dict[int, bytes]:
    """The thumbnails of these photos that are made already, by id (a video's at its time in
    `times`, else its first frame); none is made here."""
    side = thumb_size(size)
    times = times or {}
    made: dict[int, bytes] = {}
    for photo_id, digest in catalog.content_hashes(photo_ids).items():
        try:
            made[photo_id] = _thumb_path(cache, side, digest, times.get(photo_id)).read_bytes()
        except FileNotFoundError:
            continue
    return made


def thumbnail(
    catalog: Catalog,
    cache: Path,
    photo_id: int,
    size: int | None = None,
    time: float | None = None,
) -> Path:
    """A JPEG of the photo as displayed (EXIF-oriented), its longer side at most `size`, made
    once and kept under `cache` by content hash: a changed photo gets a new one. For a video,
    the frame shown at `time` seconds (its first frame without one); a photo ignores `time`."""
    side = thumb_size(size)
    time = _thumb_time(time)
    digest = catalog.content_hashes([photo_id]).get(photo_id)  # one small read: most are made
    if digest is None:
        raise PhotoNotFoundError(f"no photo with id {photo_id} in this library")
    path = _thumb_path(cache, side, digest, time)
    if path.exists():
        return path
    photo = details(catalog, photo_id)
    if photo.meta.is_video:
        # past the end shows the last frame: one cached picture for every such time
        time = min(time or 0.0, photo.meta.duration or 0.0)
        path = _thumb_path(cache, side, digest, time)
        if path.exists():
            return path
        image = _frame(catalog, photo, time, side)
    else:
        path = _thumb_path(cache, side, digest)  # one picture, whatever the time
        if path.exists():
            return path
        image = _displayed(catalog, photo_id, min_side=side)
    image.thumbnail((side, side))
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.part")  # two viewers, one thumbnail
    image.save(partial, "JPEG", quality=THUMB_QUALITY)
    os.replace(partial, path)
    return path


def region_scores(
    catalog: Catalog,
    dim: int,
    photo_id: int,
    vector: np.ndarray,
    tile_vector: np.ndarray | None = None,
) -> dict[int, float]:
    """Every region of a photo scored against a search's vector as the search scored regions:
    the cosine in its kind's space. For a heat map of where in the photo the query matched.
    Tiles in a space of their own are scored by `tile_vector`, or not at all without one."""
    scores: dict[int, float] = {}
    for kind in REGION_KINDS:
        searched = vector if catalog.same_space(kind) else tile_vector
        ids, vectors = catalog.image_region_vectors(photo_id, kind, dim)
        if len(ids) and searched is not None:
            query = catalog.project_query(kind, searched)[0]
            scores.update(zip(ids.tolist(), (vectors @ query).tolist(), strict=True))
    return scores


def region_jpeg(catalog: Catalog, photo_id: int, bbox: BBox) -> bytes:
    """The part of a photo inside `bbox` (displayed pixels), as a JPEG to search with."""
    photo = details(catalog, photo_id)
    if photo.meta.is_video:
        raise QueryError(
            f"photo {photo_id} is a video: search with a crop of one of its frames instead"
        )
    x0, y0, x1, y1 = bbox
    width, height = photo.meta.width, photo.meta.height
    x0, x1 = max(0, min(x0, x1)), min(width, max(x0, x1))
    y0, y1 = max(0, min(y0, y1)), min(height, max(y0, y1))
    if x1 - x0 < 8 or y1 - y0 < 8:
        raise QueryError(
            f"box {list(bbox)} holds less than 8 x 8 pixels of the {width} x {height} photo; "
            "draw a larger box"
        )
    image = _displayed(catalog, photo_id, min_side=0)
    scale = image.width / width  # decoded pixels per displayed one
    part = image.crop((round(x0 * scale), round(y0 * scale), round(x1 * scale), round(y1 * scale)))
    out = io.BytesIO()
    part.save(out, "JPEG", quality=95)
    return out.getvalue()
