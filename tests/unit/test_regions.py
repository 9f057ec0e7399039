"""Region geometry: tiles on a grid, edge cases, blank tiles, EXIF rotation; quality metrics."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFilter

from searchapp.errors import UsageError
from searchapp.ingest.load import load_image
from searchapp.ingest.quality import measure
from searchapp.ingest.regions import (
    RegionOptions,
    TileOptions,
    cut_regions,
    parse_kinds,
    tile_boxes,
)
from searchapp.records import FileStat
from tests.conftest import sample_image

HALF = TileOptions(scales=(0.5,), overlap=0.2, min_tile_px=100, max_tiles=1000)


def covered(width: int, height: int, boxes: list) -> np.ndarray:  # type: ignore[type-arg]
    mask = np.zeros((height, width), dtype=bool)
    for x0, y0, x1, y1 in boxes:
        mask[y0:y1, x0:x1] = True
    return mask


def test_tiny_photos_get_no_tiles() -> None:
    assert tile_boxes(150, 120, HALF) == []  # half of 120 px is under the 100 px minimum


def test_exact_multiples_tile_evenly_and_cover_everything() -> None:
    boxes = tile_boxes(1024, 1024, HALF)
    assert len(boxes) == 9
    assert {(x1 - x0, y1 - y0) for x0, y0, x1, y1 in boxes} == {(512, 512)}
    assert covered(1024, 1024, boxes).all()
    xs = sorted({b[0] for b in boxes})
    assert xs == [0, 256, 512]  # overlap 50% here: three starts spread evenly, last flush


def test_overlap_is_at_least_the_requested_fraction() -> None:
    boxes = tile_boxes(4000, 3000, HALF)
    starts = sorted({b[0] for b in boxes})
    side = boxes[0][2] - boxes[0][0]
    assert min(np.diff(starts)) <= side * (1 - HALF.overlap) + 1


def test_extreme_aspect_ratio_is_capped_and_reaches_both_ends() -> None:
    options = TileOptions(scales=(0.5,), min_tile_px=100, max_tiles=1000)
    boxes = tile_boxes(6000, 300, options)
    assert all(x1 <= 6000 and y1 <= 300 for _, _, x1, y1 in boxes)
    assert min(b[0] for b in boxes) == 0 and max(b[2] for b in boxes) == 6000
    assert covered(6000, 300, boxes).all()


@pytest.mark.parametrize("size", [(1000, 750), (750, 1000), (3000, 3000), (4032, 1960)])
def test_every_scale_covers_the_whole_photo(size: tuple[int, int]) -> None:
    options = TileOptions(scales=(0.5, 1 / 3), min_tile_px=100, max_tiles=1000)
    for scale in options.scales:
        single = TileOptions(scales=(scale,), min_tile_px=100, max_tiles=1000)
        assert covered(*size, tile_boxes(*size, single)).all()


def loaded_from(tmp_path: Path, image: Image.Image, exif: bytes | None = None):  # type: ignore[no-untyped-def]
    path = tmp_path / "p.jpg"
    image.save(path, quality=95, **({"exif": exif} if exif else {}))
    st = os.stat(path)
    return load_image(FileStat(str(path), st.st_size, st.st_mtime_ns))


def test_blank_tiles_are_skipped_and_the_cap_holds(tmp_path: Path) -> None:
    pixels = np.full((800, 1600, 3), 255, dtype=np.uint8)
    pixels[:, 800:] = np.asarray(sample_image("astronaut").resize((800, 800)))
    loaded = loaded_from(tmp_path, Image.fromarray(pixels))
    cuts = cut_regions(loaded, RegionOptions(kinds=("tile",), tiles=HALF))
    assert cuts and all(cut.bbox[2] > 800 for cut in cuts)  # none lies wholly on white
    capped = cut_regions(
        loaded,
        RegionOptions(
            kinds=("tile",), tiles=TileOptions(scales=(0.25,), min_tile_px=100, max_tiles=3)
        ),
    )
    assert len(capped) == 3


def test_tiles_of_an_exif_rotated_photo_are_in_displayed_pixels(tmp_path: Path) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # stored 1000x600 landscape, displayed 600x1000 portrait
    stored = sample_image("rocket").resize((1000, 600))
    loaded = loaded_from(tmp_path, stored, exif.tobytes())
    assert (loaded.meta.width, loaded.meta.height) == (600, 1000)
    cuts = cut_regions(loaded, RegionOptions(kinds=("scene", "tile"), tiles=HALF))
    assert cuts[0].kind == "scene" and cuts[0].bbox == (0, 0, 600, 1000)
    tiles = [cut for cut in cuts if cut.kind == "tile"]
    assert tiles and all(x1 <= 600 and y1 <= 1000 for _, _, x1, y1 in (t.bbox for t in tiles))
    displayed = stored.transpose(Image.Transpose.ROTATE_270)
    for tile in tiles:  # the tile's pixels are the displayed photo's pixels inside its bbox
        expected = np.asarray(displayed.crop(tile.bbox), dtype=np.float32)
        got = np.asarray(tile.image.resize(expected.shape[1::-1]), dtype=np.float32)
        assert np.abs(expected - got).mean() < 6


def test_region_kinds_are_checked() -> None:
    assert parse_kinds("scene, tile") == ("scene", "tile")
    with pytest.raises(UsageError, match="valid: scene, object, tile"):
        parse_kinds("scene,sky")
    with pytest.raises(UsageError, match="must include scene"):
        parse_kinds("tile")


def test_quality_flags_blurry_dark_and_flat_photos() -> None:
    photo = sample_image("astronaut")
    assert measure(photo).flag is None
    assert measure(photo.filter(ImageFilter.GaussianBlur(6))).flag == "blurry"
    assert measure(Image.eval(photo, lambda v: v // 12)).flag == "too dark"
    flat = Image.fromarray((np.asarray(photo) // 16 + 120).astype(np.uint8))
    assert measure(flat).flag == "no contrast"
    sharp, soft = measure(photo).blur, measure(photo.filter(ImageFilter.GaussianBlur(2))).blur
    assert sharp > 4 * soft
