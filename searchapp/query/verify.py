"""Geometric verification of image-query hits: each candidate photo is aligned to the query by
the ORB + RANSAC homography of searchapp.geometry, and the aligned pixels are compared.

Embeddings find the right neighbourhood; they cannot tell the photo a crop was cut from from a
second shot of the same scene a step to the side (29 photos of one cathedral, overlapping kayak
views). The pixels can. Each candidate gets a verdict: "pixels" when, aligned, it shows the
query's very pixels (normalised cross-correlation, or the patch shift the alignment leaves);
"geometry" when one plausible homography holds at MIN_INLIERS keypoints or more, as for a second
shot of the scene; None otherwise. Confirmed candidates move ahead of the rest (verified_order);
scores are not changed, and every hit carries its verdict so that the order can be read.
Measured on ../shared/data/photos (benchmarks/crop_eval.py, 2026-12-01), this lifts hybrid
crop-to-source recall@1 from 0.752 to 0.920 for crops of 3-10% of a photo, and from 0.850 to
0.987 for 10-30%. It costs 65-130 ms of a core per 12 MP candidate (a reduced decode of 25-80 ms,
then ORB and the alignment at most 1000 px), so the candidates are checked on a thread per core.
"""

from __future__ import annotations

import math
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from searchapp.errors import ImageLoadError
from searchapp.geometry import MIN_INLIERS, homography, orb_features, residual
from searchapp.ingest import video
from searchapp.ingest.load import heif_opener, load_image
from searchapp.records import BBox, FileStat

CANDIDATES = 10
# A candidate shows the query's very pixels when they agree to SAME_PIXELS (NCC, aligned) or the
# alignment leaves at most SAME_PIXELS_RESIDUAL px of patch shift (geometry.residual). Crops of
# the scikit-image photos, plain, recompressed, relit or halved, mostly meet one of the two on
# their source (NCC 0.71-1.0, residual 0.12-3.9); the other view of the stereo pair meets
# neither (NCC 0.75-0.85, residual 3.1-4.1). Those that meet neither are confirmed by geometry.
SAME_PIXELS = 0.9
SAME_PIXELS_RESIDUAL = 1.5
# The residual route needs the pixels to agree too: patch shifts measured on the smooth pixels
# of an enlarged, unrelated candidate come out small (a cat on the rocket: 1.09 px)
RESIDUAL_MIN_AGREEMENT = 0.6
MIN_COVERED = 0.5  # of the query, that the aligned candidate must cover to be compared
MIN_TEXTURE = 4.0  # grey-level std below which a query is too flat to slide as a template
# Sliding the query over the candidate catches what keypoints miss: flat crops (sky, haze, water)
# and small unresized ones. A large textured query that no keypoint aligns has nothing to find
# that way, and costs 50-60 ms a candidate at 1000 px to slide
TEMPLATE_MAX_AREA = 640 * 480
MIN_QUERY_SIDE = 320  # small crops are upscaled: ORB needs pixels to find keypoints
# the query decodes at least this large on its shorter side: WORK_SIDE on the longer of a 4:3
DECODE_SIDE = 750
# Query and candidate pixels are matched at most this large on the longer side. 1600 cost a cold
# query on 12 MP phone photos 0.8-1.5 s of checks (ORB alone 47 ms a candidate at 1600 px, 12 ms
# at 1000); and a candidate then decodes only as large as that needs.
WORK_SIDE = 1000
REGION_MARGIN = 0.5  # around a winning tile or object, this much of its size on each side
MAX_LEVEL = 3  # the query is halved at most this many times to meet a large candidate
MAX_CANDIDATE_SIDE = 1600  # a candidate a small query cannot be halved to meet: matched this large


def _grey(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("L"))


def _stored_size(path: str) -> tuple[int, int]:
    """The photo's size from its header alone (HEIF once pillow-heif is taught to Pillow)."""
    try:
        with Image.open(path) as header:
            return header.size
    except UnidentifiedImageError:
        if not heif_opener():
            raise
        with Image.open(path) as header:
            return header.size


def _level(query_scale: float, cap: float, max_level: int) -> int:
    """How many times to halve the query so that the candidate, at the query's scale, is about
    WORK_SIDE large at most (within a factor of 1.4): both sides are then matched at one scale.
    A query is never halved below MIN_QUERY_SIDE: the candidate is then matched larger."""
    level = 0
    while level < max_level and query_scale / 2**level > cap * math.sqrt(2):
        level += 1
    return level


def _decoded(path: str, time: float | None, needed: int) -> tuple[Image.Image, float]:
    """The photo, or a video's frame at `time`, decoded with its shorter side `needed` px at
    least where it has them, and its displayed pixels per decoded pixel."""
    if time is None:
        st = os.stat(path)
        loaded = load_image(FileStat(path, st.st_size, st.st_mtime_ns), min_side=needed)
        return loaded.image, loaded.scale
    info = video.probed(path)
    picture = video.frame_at(path, time, side=max(needed, 1))
    return picture, info.width / picture.width


def _candidate_pixels(
    path: str, bbox: BBox, query_scale: float, max_level: int = MAX_LEVEL, time: float | None = None
) -> tuple[np.ndarray, int] | None:
    """The candidate's pixels near its winning region, at the scale of one of the query's
    levels, and that level.

    A tile or object that won tells where the crop lies: matching there puts all of ORB's
    keypoints where they can match, where over the whole photo a 3% crop would get 3% of them.
    The query was resized by query_scale, and a crop is taken to show the photo's displayed
    pixels 1:1, so the candidate is resized to the same scale, halved with the query where it
    would be much larger than WORK_SIDE; it is decoded (in the JPEG's DCT domain where it can) no
    larger than that needs.
    """
    x0, y0, x1, y1 = bbox
    try:
        # a video frame's box is the whole frame, as displayed
        width, height = _stored_size(path) if time is None else (x1 - x0, y1 - y0)
    except (OSError, Image.DecompressionBombError):
        return None  # moved or unreadable since indexing: it simply is not verified
    whole = (x1 - x0) * (y1 - y0) >= 0.5 * width * height
    margin_x, margin_y = (x1 - x0) * REGION_MARGIN, (y1 - y0) * REGION_MARGIN
    if whole:
        margin_x = margin_y = 0
    region_side = max(1, x1 - x0 + 2 * margin_x, y1 - y0 + 2 * margin_y)
    level = _level(query_scale, WORK_SIDE / region_side, max_level)
    # working px per displayed px: the query level's, unless that is far too large to match
    factor = min(query_scale / 2**level, MAX_CANDIDATE_SIDE / region_side)
    shorter = min(width, height)  # of the photo: an EXIF turn keeps it the shorter side
    try:
        needed = shorter if factor >= 1 else math.ceil(factor * shorter)
        image, scale = _decoded(path, time, needed)  # scale: displayed pixels per decoded pixel
    except (OSError, ImageLoadError):
        return None  # moved or unreadable since indexing: it simply is not verified
    pixels = _grey(image)
    if not whole:
        top, left = max(0, int((y0 - margin_y) / scale)), max(0, int((x0 - margin_x) / scale))
        pixels = pixels[
            top : int((y1 + margin_y) / scale) + 1, left : int((x1 + margin_x) / scale) + 1
        ]
    resize = scale * factor
    if pixels.size and abs(resize - 1) > 0.05:
        import cv2

        size = (max(1, round(pixels.shape[1] * resize)), max(1, round(pixels.shape[0] * resize)))
        pixels = cv2.resize(
            pixels, size, interpolation=cv2.INTER_AREA if resize < 1 else cv2.INTER_LINEAR
        )
    return pixels, level


@dataclass(frozen=True)
class Match:
    inliers: int  # RANSAC inliers of a plausible homography (geometry.py); 0 without one
    agreement: float  # normalised cross-correlation of the aligned pixels, -1..1
    residual: float = float("inf")  # px of patch shift the alignment leaves (geometry.residual)

    @property
    def verdict(self) -> str | None:
        """ "pixels": the candidate shows the query's very pixels; "geometry": one homography
        aligns them at MIN_INLIERS keypoints or more; None: not confirmed."""
        if self.agreement >= SAME_PIXELS:
            return "pixels"
        if self.residual <= SAME_PIXELS_RESIDUAL and self.agreement >= RESIDUAL_MIN_AGREEMENT:
            return "pixels"
        return "geometry" if self.inliers >= MIN_INLIERS else None


class Verifier:
    def __init__(
        self,
        query: Image.Image,
        decoded_scale: float = 1.0,
        exact: bool = False,
        slide: bool | None = None,
    ):
        """`query` as decoded, `decoded_scale` displayed pixels of the query file per pixel of
        it (a large JPEG decodes reduced); `exact`: match it at the size it is; `slide`: whether
        a candidate no homography aligns is slid over (decided on the query at its own size)."""
        import cv2

        self.cv2: Any = cv2
        grey = _grey(query)
        # working px per decoded px: small crops up to MIN_QUERY_SIDE, large ones down
        resize = max(1.0, MIN_QUERY_SIDE / max(1, min(grey.shape)))
        resize = 1.0 if exact else min(resize, WORK_SIDE / max(grey.shape))
        if abs(resize - 1.0) > 0.01:
            interpolation = cv2.INTER_CUBIC if resize > 1 else cv2.INTER_AREA
            grey = cv2.resize(grey, None, fx=resize, fy=resize, interpolation=interpolation)
        # a crop shows its photo's displayed pixels 1:1: candidates are matched at this many
        # working px per displayed px
        self.scale = resize / decoded_scale
        self.query = grey
        self.smooth_query = _smooth(cv2, grey)
        self.features = orb_features(grey)
        # A large textured query that no keypoint aligns has nothing to find by sliding. Its
        # halvings inherit that: halved to meet a 12 MP candidate, a phone crop looked small and
        # was slid over every unrelated candidate, 25 ms each
        small = grey.size <= TEMPLATE_MAX_AREA or len(self.features.keypoints) < 300
        self.slide = small if slide is None else slide
        self._halved: Verifier | None = None
        halvings = math.floor(math.log2(max(1.0, min(grey.shape) / MIN_QUERY_SIDE)))
        self.max_level = min(MAX_LEVEL, halvings)  # halved, the query keeps MIN_QUERY_SIDE
        self._lock = threading.Lock()

    def at(self, level: int) -> Verifier:
        """This query halved `level` times, for candidates matched at that scale (built once,
        on first use, whichever thread asks)."""
        if level == 0:
            return self
        with self._lock:
            if self._halved is None:
                half = self.cv2.resize(
                    self.query, None, fx=0.5, fy=0.5, interpolation=self.cv2.INTER_AREA
                )
                self._halved = Verifier(
                    Image.fromarray(half), 2.0 / self.scale, exact=True, slide=self.slide
                )
        return self._halved.at(level - 1)

    def match(self, candidate: np.ndarray) -> Match:
        if candidate.size == 0:
            return Match(0, 0.0)
        aligned, inliers = self._homography(candidate)
        if aligned is not None:
            agreement = self._aligned_agreement(candidate, aligned)
            if agreement >= SAME_PIXELS:  # settled: skip the patch-by-patch measure
                return Match(inliers, agreement)
            return Match(inliers, agreement, residual(self.query, candidate, aligned))
        if not self.slide:
            return Match(0, 0.0)  # large and textured, and no keypoints agree: nothing to slide
        return Match(0, self._template_agreement(candidate))

    def _homography(self, candidate: np.ndarray) -> tuple[np.ndarray | None, int]:
        if candidate.size == 0:
            return None, 0
        return homography(self.features, orb_features(candidate), self.query.shape)

    def _aligned_agreement(self, candidate: np.ndarray, homography: np.ndarray) -> float:
        """NCC of the query with the candidate warped onto it, over the part both cover."""
        cv2 = self.cv2
        height, width = self.query.shape
        flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
        warped = cv2.warpPerspective(
            _smooth(cv2, candidate), homography, (width, height), flags=flags
        )
        inside = cv2.warpPerspective(
            np.ones_like(candidate, dtype=np.uint8), homography, (width, height), flags=flags
        ).astype(bool)
        if inside.mean() < MIN_COVERED:
            return 0.0
        return _ncc(self.smooth_query[inside], warped[inside])

    def _template_agreement(self, candidate: np.ndarray) -> float:
        """Where keypoints are too few (sky, haze, water): the query slid over the candidate at
        the same scale, best NCC. Catches unresized crops, which is what people usually post."""
        cv2 = self.cv2
        query = self.smooth_query
        too_big = query.shape[0] > candidate.shape[0] or query.shape[1] > candidate.shape[1]
        if too_big or query.std() < MIN_TEXTURE:
            return 0.0
        scores = cv2.matchTemplate(_smooth(cv2, candidate), query, cv2.TM_CCOEFF_NORMED)
        return float(np.nan_to_num(scores).max())


def _smooth(cv2: Any, grey: np.ndarray) -> np.ndarray:
    """Blur away JPEG blocks and resampling noise, which differ between copies of one picture."""
    return cv2.GaussianBlur(grey, (5, 5), 1.2).astype(np.float32)


def _ncc(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a - a.mean(), b - b.mean()
    denominator = float(np.sqrt((a * a).sum() * (b * b).sum()))
    return float((a * b).sum() / denominator) if denominator > 0 else 0.0


Place = tuple[str, BBox, float | None]  # a candidate's path, its region's box, a frame's time


def check(query: Image.Image, places: list[Place], decoded_scale: float = 1.0) -> list[Match]:
    """Each candidate photo or video frame (its path, the box of its region that matched, the
    frame's time) against the query's pixels (decoded at `decoded_scale` displayed px per
    px)."""
    if not places:
        return []
    verifier = Verifier(query, decoded_scale)

    def one(place: Place) -> Match:
        path, bbox, time = place
        found = _candidate_pixels(path, bbox, verifier.scale, verifier.max_level, time)
        if found is None:
            return Match(0, 0.0)
        pixels, level = found
        return verifier.at(level).match(pixels)

    # Decoding and OpenCV release the GIL: a 12 MP library's 10 candidates take 1.15 s on one
    # thread of a 2-core machine, and this is most of a cold image query.
    with ThreadPoolExecutor(max_workers=min(len(places), os.cpu_count() or 1)) as pool:
        return list(pool.map(one, places))


def verified_order(matches: list[Match]) -> list[int]:
    """Positions in the order shown (shown_before's)."""
    return sorted(
        range(len(matches)),
        key=lambda i: shown_before(matches[i].verdict, matches[i].agreement, matches[i].inliers, i),
    )


def shown_before(verdict: str | None, agreement: float, inliers: int, position: int) -> tuple:
    """The sort key of a checked candidate: "pixels" first, the most alike first (a second shot
    of the scene can pass for the same pixels, but its pixels agree less than the source's);
    then "geometry", most inliers first (the source of a crop keeps more keypoints than a second
    shot of its scene); then the unconfirmed in their embedding order. fanout.py orders the
    candidates that several machines checked with it."""
    if verdict == "pixels":
        return (0, -agreement, position)
    if verdict == "geometry":
        return (1, -inliers, position)
    return (2, position)
