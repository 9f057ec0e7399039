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


def test_a_crop_aligns_at_its_offset() -> None:
    grey = np.asarray(sample_image("astronaut").convert("L"))
    crop = grey[60:290, 100:330]
    fitted, inliers = homography(orb_features(crop), orb_features(grey), crop.shape)
    assert fitted is not None and inliers >= 40
    np.testing.assert_allclose(fitted[:2, 2], [100, 60], atol=1.5)  # the crop's offset
    np.testing.assert_allclose(fitted[:2, :2], np.eye(2), atol=0.02)  # unscaled, unturned


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


def test_a_tilted_view_far_from_the_origin_is_plausible() -> None:
    """The top-left block of a homography is not its local stretch once there is perspective:
    measured at the picture's centre, this gentle tilt is a real view."""
    tilt = np.array([[1.0, 0.0, 600.0], [0.0, 1.0, 0.0], [8e-4, 0.0, 1.0]])
    assert plausible(tilt, SHAPE)


def test_pixels_need_the_aligned_pixels_to_agree_not_only_a_small_residual() -> None:
    from searchapp.query.verify import Match, verified_order

    lucky = Match(inliers=20, agreement=0.3, residual=0.5)  # smooth, enlarged, unrelated
    assert lucky.verdict == "geometry"
    assert Match(inliers=20, agreement=0.88, residual=0.9).verdict == "pixels"
    assert Match(inliers=0, agreement=0.95).verdict == "pixels"  # slid as a template
    matches = [
        Match(0, 0.0),
        Match(20, 0.5, 3.0),
        Match(60, 0.5, 3.0),
        Match(30, 0.92),
        Match(30, 0.99),
    ]
    # pixels first, most alike first; then geometry by inliers; then the rest in their order
    assert verified_order(matches) == [4, 3, 2, 1, 0]


def test_a_large_photo_decodes_small_and_still_confirms_its_crop(tmp_path: Path) -> None:
    """A 12 MP candidate is decoded reduced and cut around its winning region; stored sideways
    with EXIF orientation 6 it must give the same answer as stored upright."""
    from searchapp.query.verify import check

    big = Image.new("RGB", (4000, 3000))  # a 12 MP mosaic of real photos
    names = ("astronaut", "coffee", "chelsea", "rocket", "camera", "motorcycle_left")
    for cell in range(12):
        photo = sample_image(names[cell % 6]).resize((1000, 1000))
        if cell >= 6:
            photo = photo.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        big.paste(photo, (1000 * (cell % 4), 1000 * (cell // 4)))
    upright, sideways = tmp_path / "upright.jpg", tmp_path / "sideways.jpg"
    big.save(upright, quality=90)
    exif = Image.Exif()
    exif[0x0112] = 6  # display = stored turned 90 degrees clockwise
    big.transpose(Image.Transpose.ROTATE_90).save(sideways, quality=90, exif=exif)
    crop = big.crop((1600, 1000, 2400, 1600))
    tile = (1400, 800, 2600, 1800)
    matches = check(crop, [(str(upright), tile, None), (str(sideways), tile, None)])
    assert [m.verdict for m in matches] == ["pixels", "pixels"]
    assert check(crop, [(str(upright), (0, 0, 1000, 1000), None)])[0].verdict is None  # elsewhere
