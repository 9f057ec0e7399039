"""Pixel geometry shared by search verification and duplicate detection: ORB keypoints, and the
RANSAC homography that aligns two pictures of the same thing.

One implementation, one set of parameters: a pair that verification confirms is aligned the
same way `dupes` would align it. A homography is only trusted when it could be a view of a real
picture: unrelated photos usually keep 8-12 RANSAC inliers by chance, but sometimes more, and the
homography fitted to them then folds the picture over itself (a cat photo "matched" a turned copy
of a coffee cup on 18 inliers, through a mirroring, nearly singular homography).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

ORB_FEATURES = 2000
RATIO = 0.8  # Lowe's ratio test on the two nearest descriptors
RANSAC_PX = 3.0  # reprojection error of an inlier, in pixels of the target
RANSAC_CONFIDENCE = 0.995  # OpenCV's default
RANSAC_MAX_ITERATIONS = 2000  # OpenCV's default
MIN_INLIERS = 15  # unrelated photos usually reach 8-12 by chance; real matches median 30
MAX_ANISOTROPY = 4.0  # ratio of the homography's singular values: a steeper view is a fold
AREA_RANGE = (1e-3, 1e3)  # of the mapped source over the source, both in their own pixels
MIN_PATCHES = 6
MIN_PATCH_TEXTURE = 8.0  # grey-level std below which a patch cannot show a shift
RESIDUAL_PERCENTILE = 75  # parallax may touch only the foreground; a watermark, few patches


def _cv2() -> Any:
    import cv2  # imported on first use: `searchapp --help` and text queries never need it

    return cv2


@dataclass(frozen=True)
class Features:
    keypoints: Any  # cv2.KeyPoint sequence
    descriptors: Any  # uint8 rows, or None where nothing was found

    @property
    def usable(self) -> bool:
        return self.descriptors is not None and len(self.keypoints) >= 8


def orb_features(grey: np.ndarray) -> Features:
    """ORB keypoints of a grey image. A detector is made per call: callers run on several
    threads, and OpenCV does not promise a shared one is safe (making one takes microseconds)."""
    cv2 = _cv2()
    keypoints, descriptors = cv2.ORB_create(nfeatures=ORB_FEATURES).detectAndCompute(grey, None)
    return Features(keypoints, descriptors)


def homography(
    source: Features, target: Features, source_shape: tuple[int, ...]
) -> tuple[np.ndarray | None, int]:
    """The homography taking source pixels to target pixels and its RANSAC inlier count; None
    when there are fewer than MIN_INLIERS or the fit is no possible view of the source."""
    cv2 = _cv2()

    if not (source.usable and target.usable):
        return None, 0
    pairs = cv2.BFMatcher(cv2.NORM_HAMMING).knnMatch(source.descriptors, target.descriptors, k=2)
    good = [p[0] for p in pairs if len(p) == 2 and p[0].distance < RATIO * p[1].distance]
    if len(good) < MIN_INLIERS:
        return None, len(good)
    points = np.array([source.keypoints[m.queryIdx].pt for m in good], dtype=np.float32)
    moved = np.array([target.keypoints[m.trainIdx].pt for m in good], dtype=np.float32)
    fitted, mask = cv2.findHomography(
        points, moved, cv2.RANSAC, RANSAC_PX, maxIters=_iterations(len(good))
    )
    inliers = int(mask.sum()) if mask is not None else 0
    if fitted is None or inliers < MIN_INLIERS or not plausible(fitted, source_shape):
        return None, inliers
    return fitted, inliers


def _iterations(matches: int) -> int:
    """RANSAC samples enough to find a homography held by MIN_INLIERS of these matches, at
    RANSAC_CONFIDENCE, and no more: a fit with fewer is refused anyway. OpenCV's fixed 2000
    cost an unrelated candidate 20 ms (45 matches need 430), most of a search's pixel check."""
    share = MIN_INLIERS / matches
    needed = math.log(1 - RANSAC_CONFIDENCE) / math.log1p(-(share**4)) if share < 1 else 1
    return int(min(RANSAC_MAX_ITERATIONS, math.ceil(needed)))


def plausible(fitted: np.ndarray, shape: tuple[int, ...]) -> bool:
    """Could this homography be a real view of a picture of this (height, width)? Its corners
    must stay a convex quadrilateral of the same orientation (no fold, no mirror), of a sane
    area, and not stretched much more one way than the other."""
    height, width = shape[:2]
    corners = np.array([[0, 0], [width, 0], [width, height], [0, height]], dtype=np.float64)
    ones = np.ones((4, 1))
    mapped = (np.hstack([corners, ones]) @ fitted.T).astype(np.float64)
    if np.any(mapped[:, 2] <= 1e-9):  # a corner maps through infinity
        return False
    quad = mapped[:, :2] / mapped[:, 2:]
    edges = np.roll(quad, -1, axis=0) - quad
    turns = (
        edges[:, 0] * np.roll(edges, -1, axis=0)[:, 1]
        - edges[:, 1] * np.roll(edges, -1, axis=0)[:, 0]
    )
    if not np.all(turns > 0):  # image corners run clockwise on screen, so turns are positive
        return False
    area = 0.5 * abs(
        float(np.sum(quad[:, 0] * np.roll(quad[:, 1], -1) - np.roll(quad[:, 0], -1) * quad[:, 1]))
    )
    low, high = AREA_RANGE
    if not low <= area / (width * height) <= high:
        return False
    singular = np.linalg.svd(_jacobian(fitted, width / 2, height / 2), compute_uv=False)
    return bool(singular[1] > 0 and singular[0] / singular[1] <= MAX_ANISOTROPY)


def _jacobian(fitted: np.ndarray, x: float, y: float) -> np.ndarray:
    """How the homography stretches the picture around (x, y): its local linear part, which
    is not the top-left block once there is perspective."""
    mapped = fitted @ np.array([x, y, 1.0])
    w = mapped[2]
    return (fitted[:2, :2] - np.outer(mapped[:2] / w, fitted[2, :2])) / w


def residual(small: np.ndarray, large: np.ndarray, small_to_large: np.ndarray) -> float:
    """How far the aligned pictures still disagree, in px of the smaller: the patch shifts left
    once the homography (small to large) is refined on the patches themselves, at the 75th
    percentile; inf where too few patches have texture. A copy or a crop of the same pixels
    keeps well under a pixel; a second shot of the scene keeps its parallax, 1.7 px and more."""
    cv2 = _cv2()

    h, w = small.shape
    centre = _jacobian(small_to_large, small.shape[1] / 2, small.shape[0] / 2)
    scale = float(np.sqrt(abs(np.linalg.det(centre))))  # large px per small px
    source: Any = large.astype(np.float32)
    if scale > 1.2:  # shrink the large photo by area first: warping it down would alias
        source = cv2.resize(source, None, fx=1 / scale, fy=1 / scale, interpolation=cv2.INTER_AREA)
        small_to_large = np.diag([1 / scale, 1 / scale, 1.0]) @ small_to_large
        large = np.ones(source.shape, dtype=np.uint8)
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    warped = cv2.warpPerspective(source, small_to_large, (w, h), flags=flags)
    inside = cv2.warpPerspective(
        np.ones_like(large, dtype=np.uint8),
        small_to_large,
        (w, h),
        flags=cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP,
    ).astype(bool)
    mine = cv2.GaussianBlur(small.astype(np.float32), (3, 3), 0.8)
    theirs = cv2.GaussianBlur(warped, (3, 3), 0.8)
    side = int(np.clip(min(h, w) // 6, 16, 48))
    window = cv2.createHanningWindow((side, side), cv2.CV_32F)
    shifts = []
    for y in range(0, h - side + 1, side):
        for x in range(0, w - side + 1, side):
            patch = mine[y : y + side, x : x + side]
            if not inside[y : y + side, x : x + side].all() or patch.std() < MIN_PATCH_TEXTURE:
                continue
            (dx, dy), _ = cv2.phaseCorrelate(patch, theirs[y : y + side, x : x + side], window)
            shifts.append((x + side / 2, y + side / 2, dx, dy))
    if len(shifts) < MIN_PATCHES:
        return float("inf")
    return _refit_residual(cv2, np.array(shifts, dtype=np.float32))


def _refit_residual(cv2: Any, shifts: np.ndarray) -> float:
    """Patch shift (75th percentile) once the keypoint homography is refined on the patches:
    a copy's shifts are a slightly-off homography, and vanish; parallax does not fit one.
    Refit once without the worst third, so a watermark or a moving object does not bend it."""
    points, moved = shifts[:, :2], shifts[:, :2] + shifts[:, 2:]
    keep = np.ones(len(points), dtype=bool)
    left = np.hypot(*shifts[:, 2:].T)
    for _ in range(2):
        refined, _ = cv2.findHomography(points[keep], moved[keep], 0)
        if refined is None:
            return float(np.percentile(left, RESIDUAL_PERCENTILE))
        fitted = cv2.perspectiveTransform(points[None], refined)[0]
        left = np.hypot(*(moved - fitted).T)
        keep = left <= np.percentile(left, 67)
    return float(np.percentile(left, RESIDUAL_PERCENTILE))
