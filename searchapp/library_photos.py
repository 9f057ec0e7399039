"""The Library's photos by id, for viewers (the web app): details, files checked against their
indexed bytes, thumbnails, where a search matched, and what an edit changed. Files are reached
through the catalog only, never through a path a caller names."""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import TYPE_CHECKING

from searchapp.dupes.pixels import difference_image
from searchapp.errors import UsageError
from searchapp.query import photos
from searchapp.records import BBox, EncoderIdentity, Filters, PhotoDetails

if TYPE_CHECKING:
    import numpy as np

    from searchapp.store.catalog import Catalog


def roots_covering(paths: list[str]) -> list[str]:
    """The fewest folders that contain all the paths (their parents, nested ones dropped)."""
    parents = sorted({os.path.dirname(p) for p in paths})
    roots: list[str] = []
    for parent in parents:
        if not any(parent == r or parent.startswith(r.rstrip("/") + "/") for r in roots):
            roots.append(parent)
    return roots


class PhotoViews:
    catalog: Catalog
    directory: Path

    def require_identity(self) -> EncoderIdentity:
        raise NotImplementedError

    def photo(self, photo_id: int) -> PhotoDetails:
        return photos.details(self.catalog, photo_id)

    def photo_bytes(self, photo_id: int) -> tuple[PhotoDetails, bytes]:
        return photos.original_bytes(self.catalog, photo_id)

    def video_stat(self, video: PhotoDetails) -> os.stat_result:
        """The video's file, checked by size and time against the catalog (not hashed)."""
        return photos.video_stat(self.catalog, video)

    def thumbnail(self, photo_id: int, size: int | None = None, time: float | None = None) -> Path:
        """A video's at `time` seconds, else its first frame."""
        return photos.thumbnail(self.catalog, self.directory / "thumbs", photo_id, size, time)

    def cached_thumbnails(
        self, photo_ids: list[int], size: int, times: dict[int, float] | None = None
    ) -> dict[int, bytes]:
        cache = self.directory / "thumbs"
        return photos.cached_thumbnails(self.catalog, cache, photo_ids, size, times)

    def region_scores(
        self, photo_id: int, vector: np.ndarray, tile_vector: np.ndarray | None = None
    ) -> dict[int, float]:
        """Each region of the photo against a search's vectors (SearchResults.vector, and
        .tile_vector where the tiles are in a space of their own)."""
        self.photo(photo_id)  # an unknown id is an error, not an empty map
        dim = self.require_identity().dim
        return photos.region_scores(self.catalog, dim, photo_id, vector, tile_vector)

    def region_jpeg(self, photo_id: int, bbox: BBox) -> bytes:
        return photos.region_jpeg(self.catalog, photo_id, bbox)

    def difference_image(self, photo_a: int, photo_b: int) -> bytes:
        """Photo B aligned onto photo A and their difference, as a JPEG (dupes.pixels)."""
        paths = [self.photo_bytes(photo_id)[0].path for photo_id in (photo_a, photo_b)]
        image = difference_image(*paths)  # of the files as indexed: their bytes were checked
        if image is None:
            raise UsageError(f"photos {photo_a} and {photo_b} do not align: no difference to show")
        out = io.BytesIO()
        image.save(out, "JPEG", quality=85)
        return out.getvalue()

    def photo_count(self, filters: Filters, kinds: tuple[str, ...]) -> int:
        """Photos that pass these filters with a region of these kinds: as many as a search by
        example ranks, when no score cut-off drops any."""
        return self.catalog.photo_count_where(filters, kinds)

    def low_quality(self, limit: int = 500) -> list[tuple[int, str, str]]:
        """(id, path, why) of the photos `--skip-low-quality` kept out of the vectors."""
        return self.catalog.flagged_photos(limit)

    def folders(self) -> list[str]:
        """The fewest folders that hold every photo of the library."""
        return roots_covering([image.path for image in self.catalog.all_images()])
