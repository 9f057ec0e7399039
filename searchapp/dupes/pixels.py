"""Is one photo an edited copy of another, a crop of it, or a second shot of the same scene?

Perceptual hashes and embeddings cannot tell: a burst shot a step to the side has a Hamming
distance of 6 and a cosine of 0.97, as close as a re-saved copy. The pixels can. ORB keypoints
and a RANSAC homography align the two photos; the aligned pair is cut into patches, each patch's
remaining shift is measured by phase correlation, and the homography is refined on those shifts.
What is left, at the 75th percentile of the patches: a copy (resized, recompressed, relit,
watermarked, turned) under 0.45 px; a second shot keeps its parallax, 1.7 px and more (measured
on ../shared/data/photos: BoofCV triplets, Lund views, HDR pairs; see benchmarks/README.md).
Where the aligned photo lies inside the other and covers only part of it, the pair is a crop.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from searchapp.errors import ImageLoadError
from searchapp.geometry import MIN_INLIERS, Features, homography, orb_features, residual
from searchapp.ingest import video
from searchapp.ingest.load import load_image
from searchapp.records import FileStat

COMPARE_SIDE = 640  # both photos are compared at most this large, never upscaled
MAX_RESIDUAL = 0.75  # px, 75th percentile of patch shifts; copies <= 0.45, second shots >= 1.7
CONTAINED = 0.95  # of the smaller photo that must fall inside the other
SAME_FRAME = 0.9  # of the larger photo the smaller must cover to be a copy, not a crop
MIN_TURN = 3.0  # degrees: a pan between two shots turns the frame less
TURNED_OVERLAP = 0.7  # a 30-degree turn of a 4:3 photo keeps 0.8 of it in frame
FILL_STD = 6.0  # grey spread of corners an editor fills; a rolled camera sees more scene there
CACHE_PHOTOS = 256

# Image.transpose steps for VARIANTS in ingest.hashes (numpy rot90 turns counter-clockwise)
_TURNS = {
    0: [],
    1: [Image.Transpose.ROTATE_90],
    2: [Image.Transpose.ROTATE_180],
    3: [Image.Transpose.ROTATE_270],
    4: [Image.Transpose.FLIP_LEFT_RIGHT],
    5: [Image.Transpose.FLIP_LEFT_RIGHT, Image.Transpose.ROTATE_90],
    6: [Image.Transpose.FLIP_LEFT_RIGHT, Image.Transpose.ROTATE_180],
    7: [Image.Transpose.FLIP_LEFT_RIGHT, Image.Transpose.ROTATE_270],
}


@dataclass(frozen=True)
class PixelEvidence:
    inliers: int
    residual: float  # px; inf when it could not be measured
    contained: float  # share of the smaller photo that lies inside the larger
    covers: float  # share of the larger photo that the smaller covers
    smaller_is_a: bool
    turn: float = 0.0  # degrees the alignment turns the picture in its plane
    filled_corners: bool = False  # what one photo shows beyond the other is flat fill
    unreadable: bool = False  # a photo could not be read: nothing was measured

    @property
    def aligned(self) -> bool:
        return self.inliers >= MIN_INLIERS and self.residual <= MAX_RESIDUAL

    @property
    def turned_edit(self) -> bool:
        """Turned by an odd angle, corners filled: neither photo lies inside the other, yet
        most of each is the other's pixels, turned about its middle."""
        return (
            abs(self.turn) >= MIN_TURN
            and self.filled_corners
            and self.contained >= TURNED_OVERLAP
            and self.covers >= TURNED_OVERLAP
        )

    @property
    def tier(self) -> str | None:
        """near, crop, or None when the pixels say these are different shots."""
        if not self.aligned:
            return None
        if self.contained >= CONTAINED:
            return "near" if self.covers >= SAME_FRAME else "crop"
        return "near" if self.turned_edit else None


class PixelComparer:
    """Compares photo pairs, caching each photo's grey pixels and keypoints across pairs."""

    def __init__(self) -> None:
        import cv2

        self.cv2: Any = cv2
        self._cache: OrderedDict[tuple[str, int], Any] = OrderedDict()

    def _photo(
        self, path: str, variant: int, time: float | None = None
    ) -> tuple[np.ndarray, Features] | None:
        key = (path, variant) if time is None else (f"{path}@{time}", variant)
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        try:
            if time is None:
                st = os.stat(path)
                stat = FileStat(path, st.st_size, st.st_mtime_ns)
                image = load_image(stat, min_side=COMPARE_SIDE).image
            else:  # a video's frame
                image = video.frame_at(path, time, side=COMPARE_SIDE)
        except (OSError, ImageLoadError):
            entry = None  # gone or unreadable since indexing: such a pair is not confirmed
        else:
            for step in _TURNS[variant]:
                image = image.transpose(step)
            factor = min(1.0, COMPARE_SIDE / max(image.size))
            if factor < 1.0:
                size = (max(1, round(image.width * factor)), max(1, round(image.height * factor)))
                image = image.resize(size, Image.Resampling.BOX)
            grey = np.asarray(image.convert("L"))
            entry = (grey, orb_features(grey))
        self._cache[key] = entry
        if len(self._cache) > CACHE_PHOTOS:
            self._cache.popitem(last=False)
        return entry

    def compare(
        self,
        path_a: str,
        path_b: str,
        variant: int = 0,
        time_a: float | None = None,
        time_b: float | None = None,
    ) -> PixelEvidence:
        """Evidence for the pair; `variant` turns photo A as a pHash match found it turned;
        with a time, that side is the frame its video shows then."""
        a, b = self._photo(path_a, variant, time_a), self._photo(path_b, 0, time_b)
        if a is None or b is None:
            return PixelEvidence(0, float("inf"), 0.0, 0.0, True, unreadable=True)
        a_to_b, inliers = homography(a[1], b[1], a[0].shape)
        if a_to_b is None:
            return PixelEvidence(inliers, float("inf"), 0.0, 0.0, True)
        b_over_a, a_over_b = self._overlap(a[0], b[0], a_to_b)
        a_in_b, b_in_a = float(b_over_a.mean()), float(a_over_b.mean())
        turn = float(np.degrees(np.arctan2(a_to_b[1, 0], a_to_b[0, 0])))
        filled = _flat_beyond(a[0], b_over_a) or _flat_beyond(b[0], a_over_b)
        if a_in_b >= b_in_a:
            left = residual(a[0], b[0], a_to_b)
            return PixelEvidence(inliers, left, a_in_b, b_in_a, True, turn, filled)
        left = residual(b[0], a[0], np.linalg.inv(a_to_b))
        return PixelEvidence(inliers, left, b_in_a, a_in_b, False, turn, filled)

    def _overlap(
        self, a: np.ndarray, b: np.ndarray, homography: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Masks of (A's pixels that B covers, B's pixels that A covers). Masks, not polygon
        clipping: the coincident edges of identical frames trip the clipping."""
        cv2 = self.cv2
        (a_h, a_w), (b_h, b_w) = a.shape, b.shape
        inverse = cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP
        b_over_a = cv2.warpPerspective(np.ones_like(b), homography, (a_w, a_h), flags=inverse)
        a_over_b = cv2.warpPerspective(
            np.ones_like(a), homography, (b_w, b_h), flags=cv2.INTER_NEAREST
        )
        return b_over_a.astype(bool), a_over_b.astype(bool)


def _flat_beyond(grey: np.ndarray, covered: np.ndarray) -> bool:
    """Is what this photo shows beyond the other one flat fill (the corners of a turned edit)?"""
    beyond = ~covered
    if beyond.mean() < 0.05:
        return False
    import cv2

    inner = cv2.erode(beyond.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
    return bool(inner.any() and grey[inner].std() < FILL_STD)


def difference_image(path_a: str, path_b: str) -> Image.Image | None:
    """Photo B aligned onto photo A (at most COMPARE_SIDE px) and their difference, for a person
    to see what an edit changed: black where the pixels agree, bright where they differ, blue
    where B does not cover A. A is tried turned and flipped as pHash variants are. None when
    no alignment holds (or a file is gone)."""
    comparer = PixelComparer()
    b = comparer._photo(path_b, 0)
    for variant in _TURNS:
        a = comparer._photo(path_a, variant)
        if a is None or b is None:
            return None
        a_to_b, _ = homography(a[1], b[1], a[0].shape)
        if a_to_b is not None:
            break
    else:
        return None
    cv2 = comparer.cv2
    height, width = a[0].shape
    inverse = cv2.WARP_INVERSE_MAP
    warped = cv2.warpPerspective(b[0], a_to_b, (width, height), flags=cv2.INTER_LINEAR | inverse)
    covered = cv2.warpPerspective(
        np.ones_like(b[0]), a_to_b, (width, height), flags=cv2.INTER_NEAREST | inverse
    ).astype(bool)
    difference = np.abs(a[0].astype(np.int16) - warped.astype(np.int16))
    shown = np.repeat(np.clip(4 * difference, 0, 255).astype(np.uint8)[..., None], 3, axis=2)
    shown[~covered] = (30, 60, 140)
    return Image.fromarray(shown)
