"""Crop search on real photos: tiles find the source of a crop, with a bbox over the crop, and
geometric verification tells the source from other photos."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from PIL import Image

from searchapp.ingest.regions import RegionOptions
from searchapp.query.search import SearchHit, verified_first
from searchapp.query.verify import MIN_INLIERS, SAME_PIXELS, SAME_PIXELS_RESIDUAL, Verifier
from tests.conftest import sample_image
from tests.integration.helpers import HYBRID, index


def overlap(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    """Intersection over the area of b."""
    width = min(a[2], b[2]) - max(a[0], b[0])
    height = min(a[3], b[3]) - max(a[1], b[1])
    if width <= 0 or height <= 0:
        return 0.0
    return width * height / ((b[2] - b[0]) * (b[3] - b[1]))


@pytest.mark.parametrize("vectors", ["crops", "pooled"])
def test_a_crop_finds_its_photo_through_a_tile_over_the_crop(
    library, photos: Path, tmp_path: Path, vectors: str
) -> None:  # type: ignore[no-untyped-def]
    index(library, photos, options=replace(HYBRID, regions=RegionOptions(vectors=vectors)))
    assert library.stats().regions_by_kind.get("tile", 0) > 0
    box = (280, 40, 480, 240)  # 15% of the 512x512 astronaut photo
    query = tmp_path / "crop.jpg"
    with Image.open(photos / "astronaut.jpg") as image:
        image.crop(box).save(query, quality=90)
    results = library.search(image=str(query), k=3)
    top = results[0]
    assert top.path == str(photos / "astronaut.jpg")
    assert top.kind == "tile"
    assert overlap(top.bbox, box) > 0.5  # the returned tile shows the cropped part
    scene_only = library.search(image=str(query), k=3, kinds=("scene",))
    assert scene_only[0].kind == "scene"


@pytest.mark.parametrize("vectors", ["crops", "pooled"])
def test_an_object_crop_finds_its_photo_through_the_object_box(
    library, photos: Path, tmp_path: Path, vectors: str
) -> None:  # type: ignore[no-untyped-def]
    """The cup's box and label, with objects encoded as crops or pooled from one pass (where
    the CAM maps come from that pass too)."""
    regions = RegionOptions(kinds=("scene", "object"), vectors=vectors)
    options = replace(HYBRID, regions=regions)
    index(library, photos, options=options)
    cup = (165, 15, 415, 245)  # the espresso cup, 24% of the coffee photo
    query = tmp_path / "cup.jpg"
    with Image.open(photos / "things" / "coffee.jpg") as image:
        image.crop(cup).save(query, quality=90)
    for kinds in (("object",), ("scene", "object")):
        top = library.search(image=str(query), k=3, kinds=kinds)[0]
        assert top.path == str(photos / "things" / "coffee.jpg")
        assert top.kind == "object" and top.label in {"espresso", "cup", "coffee mug"}
        assert overlap(top.bbox, cup) > 0.5


def test_detector_none_stores_no_objects(library, photos: Path) -> None:  # type: ignore[no-untyped-def]
    regions = RegionOptions(kinds=("scene", "object"), detector="none")
    index(library, photos, options=replace(HYBRID, regions=regions))
    assert set(library.stats().regions_by_kind) == {"scene"}


def test_verifier_counts_many_inliers_on_the_source_and_few_elsewhere() -> None:
    astronaut = sample_image("astronaut")
    crop = astronaut.crop((100, 60, 330, 290))
    verifier = Verifier(crop)
    import numpy as np

    on_source = verifier.match(np.asarray(astronaut.convert("L"))).inliers
    elsewhere = verifier.match(np.asarray(sample_image("coffee").convert("L"))).inliers
    assert on_source >= 40
    assert elsewhere < MIN_INLIERS


def test_the_check_moves_the_confirmed_source_first(tmp_path: Path) -> None:
    paths = {}
    for name in ("coffee", "astronaut", "rocket"):
        paths[name] = tmp_path / f"{name}.jpg"
        sample_image(name).save(paths[name], quality=92)

    def hit(name: str, score: float) -> SearchHit:
        with Image.open(paths[name]) as image:
            width, height = image.size
        return SearchHit(str(paths[name]), score, "scene", (0, 0, width, height), None, 0.0)

    hits = [hit("coffee", 0.9), hit("rocket", 0.8), hit("astronaut", 0.7)]
    crop = sample_image("astronaut").crop((100, 60, 330, 290))
    ranked = verified_first(crop, hits)
    assert [Path(h.path).stem for h in ranked] == ["astronaut", "coffee", "rocket"]
    assert ranked[0].score == 0.7  # order changes, scores do not
    assert [h.verified for h in ranked] == ["pixels", None, None]  # and each says why


def _scene_hit(path: Path, score: float) -> SearchHit:
    with Image.open(path) as image:
        width, height = image.size
    return SearchHit(str(path), score, "scene", (0, 0, width, height), None, 0.0)


def test_the_check_tells_the_source_from_a_second_view_of_the_scene(tmp_path: Path) -> None:
    """The stereo pair shows one scene from two viewpoints: both fit a homography on the
    motorcycle, only the source agrees pixel for pixel."""
    left, right = tmp_path / "left.jpg", tmp_path / "right.jpg"
    sample_image("motorcycle_left").save(left, quality=92)
    sample_image("motorcycle_right").save(right, quality=92)
    crop = sample_image("motorcycle_left").crop((250, 150, 500, 350))
    verifier = Verifier(crop)
    import numpy as np

    on_source = verifier.match(np.asarray(Image.open(left).convert("L")))
    on_sibling = verifier.match(np.asarray(Image.open(right).convert("L")))
    assert (on_source.verdict, on_sibling.verdict) == ("pixels", "geometry")
    assert on_sibling.residual > 2 * SAME_PIXELS_RESIDUAL  # parallax that no homography removes
    ranked = verified_first(crop, [_scene_hit(right, 0.9), _scene_hit(left, 0.8)])
    assert [(Path(h.path), h.verified) for h in ranked] == [(left, "pixels"), (right, "geometry")]


def test_a_crop_too_flat_for_keypoints_is_confirmed_by_its_pixels(tmp_path: Path) -> None:
    """Haze, sky, water: too few keypoints for a homography, but the pixels still match."""
    import numpy as np

    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:600, 0:800].astype(np.float32)
    clouds = 120 + 40 * np.sin(x / 90) * np.cos(y / 70) + 15 * np.sin((x + 2 * y) / 40)
    sky = Image.fromarray(np.clip(clouds + rng.normal(0, 1, clouds.shape), 0, 255).astype(np.uint8))
    other = Image.fromarray(np.clip(255 - clouds.T[:600, :800], 0, 255).astype(np.uint8))
    paths = [tmp_path / "sky.png", tmp_path / "other.png"]
    sky.convert("RGB").save(paths[0])
    other.convert("RGB").save(paths[1])
    crop = sky.crop((200, 150, 560, 490)).convert("RGB")  # over 320 px: not upscaled
    verifier = Verifier(crop)
    assert verifier.match(np.asarray(sky)).inliers < MIN_INLIERS  # no homography to be had
    assert verifier.match(np.asarray(sky)).agreement > SAME_PIXELS
    ranked = verified_first(crop, [_scene_hit(paths[1], 0.9), _scene_hit(paths[0], 0.8)])
    assert Path(ranked[0].path) == paths[0]
