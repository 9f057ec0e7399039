"""The one ORB + RANSAC alignment that verification and duplicate detection share."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from searchapp.geometry import homography, orb_features, plausible
from searchapp.query.search import SearchHit, verified_first
from tests.conftest import sample_image

SHAPE = (300, 400)  # height, width


def test_real_views_are_plausible_and_folds_and_mirrors_are_not() -> None:
    turn = np.radians(25)
    rotated = np.array(
        [[np.cos(turn), -np.sin(turn), 50], [np.sin(turn), np.cos(turn), 10], [0, 0, 1]]
    )
    assert plausible(np.eye(3), SHAPE)
    assert plausible(np.diag([0.2, 0.2, 1.0]), SHAPE)  # a crop seen inside its photo
    assert plausible(rotated, SHAPE)
    assert plausible(np.array([[1, 0.05, 0], [0, 1, 0], [1e-4, 0, 1]]), SHAPE)  # a little tilt
    # what RANSAC fitted to 18 chance matches between the cat and a turned coffee photo
    fold = np.array([[-1.0623, 0.5695, 129.72], [-1.2604, 0.6933, 152.0], [-0.0082, 0.0045, 1]])
    assert not plausible(fold, SHAPE)
    assert not plausible(np.diag([-1.0, 1.0, 1.0]), SHAPE)  # a mirror image
    assert not plausible(np.diag([5.0, 0.5, 1.0]), SHAPE)  # stretched 10:1


def test_the_same_pair_aligns_the_same_way_every_time() -> None:
    grey = np.asarray(sample_image("astronaut").convert("L"))
    crop = grey[60:290, 100:330]
    runs = {str(np.round(homography(orb_features(crop), orb_features(grey), crop.shape)[0], 6))}
    runs |= {str(np.round(homography(orb_features(crop), orb_features(grey), crop.shape)[0], 6))}
    assert len(runs) == 1
    fitted, inliers = homography(orb_features(crop), orb_features(grey), crop.shape)
    assert fitted is not None and inliers >= 40
    np.testing.assert_allclose(fitted[:2, 2], [100, 60], atol=1.5)  # the crop's offset


def test_an_unrelated_photo_is_not_confirmed_and_keeps_its_place(tmp_path: Path) -> None:
    """The reported case: a cat query ranked a turned copy of the coffee photo (score 0.15)
    above the astronaut (0.23), on 18 chance inliers under a folding homography."""
    sample_image("coffee").save(tmp_path / "coffee.jpg", quality=92)
    with Image.open(tmp_path / "coffee.jpg") as coffee:
        coffee.transpose(Image.Transpose.ROTATE_90).save(tmp_path / "coffee_rot.png")
    sample_image("astronaut").save(tmp_path / "astronaut.jpg", quality=92)
    sample_image("chelsea").save(tmp_path / "cat.jpg", quality=92)
    with Image.open(tmp_path / "cat.jpg") as cat:
        query = cat.convert("RGB")
    hits = [
        SearchHit(str(tmp_path / "astronaut.jpg"), 0.23, "tile", (114, 0, 285, 171), None, 0.0),
        SearchHit(str(tmp_path / "coffee.jpg"), 0.19, "tile", (400, 0, 600, 200), None, 0.0),
        SearchHit(str(tmp_path / "coffee_rot.png"), 0.15, "tile", (89, 0, 222, 133), None, 0.0),
    ]
    ranked = verified_first(query, hits)
    assert [h.score for h in ranked] == [0.23, 0.19, 0.15]
    assert [h.verified for h in ranked] == [None, None, None]
