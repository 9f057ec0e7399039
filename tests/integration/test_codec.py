"""Objects and tiles stored as int8 codes in a basis fitted on the library (store/codec.py)."""

from __future__ import annotations

import base64
import json
import shutil
from pathlib import Path

import faiss
import numpy as np
from PIL import Image

from searchapp.library import Library
from searchapp.store.codec import DIMS, RegionCodec
from searchapp.store.tables import settings
from searchapp.store.vector_rows import CODEC_SETTING
from tests.integration.helpers import HYBRID, assert_consistent, index
from tests.integration.test_dupes import _groups, dupe_folder  # noqa: F401 (a fixture)


def coded_library(library: Library) -> Library:
    library.catalog.codec_fit_at = 40  # five sample photos hold about 150 objects and tiles
    return library


def test_regions_are_coded_once_the_library_has_enough(library: Library, photos: Path) -> None:
    before = Library(library.directory)
    assert before.catalog.region_codec() is None
    before.close()
    coded_library(library)
    index(library, photos, options=HYBRID)
    codec = library.catalog.region_codec()
    assert codec is not None and codec.dim <= DIMS
    assert library.indexes().get("tile", persist=False).d == codec.dim
    assert library.indexes().get("scene", persist=False).d == 1280  # scenes stay whole
    # every stored tile is a code of the basis's width, the scene a float16 vector
    image = library.catalog.all_images()[0]
    assert library.catalog.region_vectors_of_image(image.id, "tile", 1280).shape[1] == codec.dim
    assert library.catalog.region_vectors_of_image(image.id, "scene", 1280).shape[1] == 1280
    assert_consistent(library)
    report = library.check()
    assert not report.findings, report.findings

    crop = photos.parent / "crop.jpg"
    with Image.open(photos / "astronaut.jpg") as opened:
        opened.crop((280, 40, 480, 240)).save(crop, quality=90)
    hits = library.search(image=str(crop), k=1, kinds=("tile",), verify=False).hits
    assert hits[0].path.endswith("astronaut.jpg") and hits[0].kind == "tile"
    assert 0.5 < hits[0].score <= 1.0  # a cosine, comparable with the scenes'


def test_coded_regions_survive_copies_moves_rebuilds_and_a_reopen(
    library: Library, photos: Path
) -> None:
    coded_library(library)
    index(library, photos, options=HYBRID)
    shutil.copy(photos / "camera.jpg", photos / "animals" / "camera-copy.jpg")  # cloned rows
    (photos / "things" / "coffee.jpg").rename(photos / "coffee-moved.jpg")  # a move
    summary = index(library, photos, options=HYBRID)
    assert summary.reused == 1 and summary.moved == 1
    assert_consistent(library)
    library.rebuild_index()
    reopened = Library(library.directory)
    try:
        assert not reopened.check().findings
        tiles = reopened.indexes().get("tile", persist=False)
        codec = reopened.catalog.region_codec()
        assert codec is not None and tiles.d == codec.dim
        by_path = {image.path: image.id for image in reopened.catalog.all_images()}
        copy = reopened.catalog.region_vectors_of_image(
            by_path[str(photos / "animals" / "camera-copy.jpg")], "tile", 1280
        )
        source = reopened.catalog.region_vectors_of_image(
            by_path[str(photos / "camera.jpg")], "tile", 1280
        )
        np.testing.assert_array_equal(copy, source)
    finally:
        reopened.close()


def test_the_codec_keeps_cosines_and_round_trips() -> None:
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(8, 64))
    sample = centres[rng.integers(0, 8, 500)] + 0.1 * rng.normal(size=(500, 64))
    sample /= np.linalg.norm(sample, axis=1, keepdims=True)
    codec = RegionCodec.fit(sample.astype(np.float32), dims=16)
    again = RegionCodec.from_json(codec.to_json())
    np.testing.assert_array_equal(again.basis, codec.basis)
    np.testing.assert_array_equal(again.ranges, codec.ranges)
    projected = codec.project(sample)  # every fitted vector within its ranges, with room
    assert (projected > codec.ranges[0]).all() and (projected < codec.ranges[1]).all()
    # the basis is kept as int8 rows: still near-orthonormal
    gram = codec.basis @ codec.basis.T
    assert np.abs(gram - np.eye(16)).max() < 0.02
    decoded = codec.decode(b"".join(codec.encode(sample[:50])), 50)
    exact = sample[:50] @ sample[:50].T
    assert np.abs(decoded @ decoded.T - exact).max() < 0.1  # 16 of 64 directions keep them
    assert np.allclose(np.linalg.norm(decoded, axis=1), 1, atol=1e-5)


def test_a_basis_stored_before_the_int8_layout_still_reads() -> None:
    basis = np.linalg.qr(np.random.default_rng(1).normal(size=(64, 16)))[0].T
    legacy = json.dumps(
        {
            "shape": [16, 64],
            "basis": base64.b64encode(basis.astype(np.float16).tobytes()).decode("ascii"),
        }
    )
    codec = RegionCodec.from_json(legacy)
    np.testing.assert_array_equal(codec.basis, basis.astype(np.float16).astype(np.float32))
    assert codec.ranges is None  # no ranges known: its kinds stay fp16 in the index files


def test_a_library_whose_basis_has_no_ranges_keeps_fp16_index_files(
    library: Library, photos: Path
) -> None:
    coded_library(library)
    index(library, photos, options=HYBRID)
    codec = library.catalog.region_codec()
    assert codec is not None
    legacy = json.dumps(
        {
            "shape": list(codec.basis.shape),
            "basis": base64.b64encode(codec.basis.astype(np.float16).tobytes()).decode("ascii"),
        }
    )
    with library.catalog.engine.begin() as conn:
        conn.execute(settings.update().where(settings.c.key == CODEC_SETTING).values(value=legacy))
    library.close()
    reopened = Library(library.directory)
    try:
        reopened.rebuild_index()
        tiles = faiss.downcast_index(reopened.indexes().get("tile", persist=False).index)
        assert tiles.code_size == 2 * codec.dim  # fp16, not 8 bits over [-1, 1]
        assert not reopened.check().findings
    finally:
        reopened.close()


def test_coded_kinds_index_at_eight_bits_and_a_rebuild_stores_alike(
    library: Library, photos: Path
) -> None:
    coded_library(library)
    index(library, photos, options=HYBRID)
    followed = library.indexes().get("tile", persist=False)
    codec = library.catalog.region_codec()
    assert codec is not None
    inner = faiss.downcast_index(followed.index)
    assert inner.code_size == codec.dim  # one byte a component; the scene's stay fp16
    scene = faiss.downcast_index(library.indexes().get("scene", persist=False).index)
    assert scene.code_size == 2 * 1280
    queries = codec.project(library.catalog.region_vectors_of_image(1, "scene", 1280))
    before = followed.search(queries, 10)
    library.rebuild_index()
    rebuilt = library.indexes().get("tile", persist=False)
    after = rebuilt.search(queries, 10)
    np.testing.assert_array_equal(before[1], after[1])
    np.testing.assert_allclose(before[0], after[0], atol=1e-6)


def test_dupes_on_a_coded_library(library: Library, dupe_folder: Path) -> None:  # noqa: F811
    """The crop tier compares scenes with objects and tiles: onto the basis, it finds the same
    groups as on a scene-only library (test_dupes.test_each_tier_on_real_photos)."""
    coded_library(library)
    index(library, dupe_folder, options=HYBRID)
    assert library.catalog.region_codec() is not None
    groups = _groups(library.dupes())
    assert {"rocket.jpg", "rocket_cropped.jpg"} in groups
    assert {"coffee.jpg", "coffee_as_png.png"} in groups
    assert len(groups) == 4


def test_a_reader_open_across_the_fit(library: Library, photos: Path, sample_dir: Path) -> None:
    """A library object that loaded the float16 tile index before another one fitted the basis
    reads the index anew, instead of searching it with a query of the other width."""
    library.catalog.codec_fit_at = 10**9  # not yet
    index(library, photos, options=HYBRID)
    crop = photos.parent / "crop.jpg"
    with Image.open(photos / "astronaut.jpg") as opened:
        opened.crop((280, 40, 480, 240)).save(crop, quality=90)
    reader = Library(library.directory)
    try:
        before = reader.search(image=str(crop), k=1, kinds=("tile",), verify=False).hits
        assert reader.indexes().get("tile", persist=False).d == 1280
        coded_library(library)
        shutil.copy(sample_dir / "motorcycle_left.jpg", photos / "bike.jpg")  # one more photo
        index(library, photos, options=HYBRID)
        assert library.catalog.region_codec() is not None
        after = reader.search(image=str(crop), k=1, kinds=("tile",), verify=False).hits
        assert before[0].path == after[0].path and after[0].path.endswith("astronaut.jpg")
    finally:
        reader.close()
