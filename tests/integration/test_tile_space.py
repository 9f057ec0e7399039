"""A CLIP library keeps its tiles in the CNN's space: indexed by the CNN (as crops or pooled from
one pass), found by an image query embedded by both encoders and ranked across the two spaces,
out of reach of words, and kept consistent through reopening, the basis fit, checkup and dupes.

The CLIP model is a tiny random one (no weights download here), so its rankings are noise: a crop
is found through the CNN's tiles, which is what these tests show."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from searchapp.dupes.find import DupeOptions
from searchapp.encoders import registry
from searchapp.encoders.base import EncoderOptions
from searchapp.errors import QueryError
from searchapp.ingest.regions import RegionOptions
from searchapp.library import Library
from searchapp.vectors import faiss_index
from tests.integration.helpers import HYBRID, assert_consistent, index

CNN_WIDTH = 1280
BOX = (280, 40, 480, 240)  # 15% of the 512x512 astronaut photo


def clip_library(folder: Path, photos: Path, checkpoint: Path, vectors: str = "crops") -> Library:
    lib = Library(folder)
    options = replace(HYBRID, regions=RegionOptions(vectors=vectors))
    encoder_options = EncoderOptions(clip_weights=checkpoint)
    index(lib, photos, options=options, encoder="clip:tiny-test", encoder_options=encoder_options)
    return lib


def crop_of_astronaut(photos: Path, tmp_path: Path) -> Path:
    query = tmp_path / "crop.jpg"
    with Image.open(photos / "astronaut.jpg") as image:
        image.crop(BOX).save(query, quality=90)
    return query


@pytest.mark.parametrize("vectors", ["crops", "pooled"])
def test_a_clip_library_finds_a_crop_through_tiles_in_the_cnns_space(
    photos: Path, tmp_path: Path, tiny_clip_checkpoint: Path, vectors: str
) -> None:
    lib = clip_library(tmp_path / "lib", photos, tiny_clip_checkpoint, vectors)
    try:
        tiles = lib.catalog.tile_identity()
        assert tiles is not None and tiles.name == registry.DEFAULT_CNN
        assert lib.catalog.vector_dim("tile", 32) == CNN_WIDTH
        assert lib.catalog.vector_dim("object", 32) == 32  # objects stay in CLIP's space
        stats = lib.stats()
        assert stats.regions_by_kind["tile"] > 0 and stats.regions_by_kind["object"] > 0
        assert stats.as_dict()["tile_encoder"] == tiles.__dict__  # `stats` says so
        assert_consistent(lib)

        query = crop_of_astronaut(photos, tmp_path)
        results = lib.search(image=str(query), k=3)
        assert results[0].path == str(photos / "astronaut.jpg")
        assert results[0].kind == "tile"
        assert results.tile_vector is not None and results.tile_vector.shape == (1, CNN_WIDTH)
        assert results.vector is not None and results.vector.shape == (1, 32)
        # the heat map scores the photo's tiles in their space, its scene and objects in CLIP's
        hit = results[0]
        assert hit.image_id is not None
        scores = lib.region_scores(hit.image_id, results.vector, results.tile_vector)
        regions = lib.photo(hit.image_id).regions
        assert {region.kind for region in regions if region.id in scores} == {
            "scene",
            "tile",
            "object",
        }
        # a tile over the whole photo stands for the scene in the CNN's space (for `dupes`)
        assert (0, 0, 512, 512) in [tuple(r.bbox) for r in regions if r.kind == "tile"]
    finally:
        lib.close()


def test_words_search_scenes_and_objects_and_tiles_only_by_image(
    photos: Path, tmp_path: Path, tiny_clip_checkpoint: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lib = clip_library(tmp_path / "lib", photos, tiny_clip_checkpoint)
    lib.close()
    reopened = Library(tmp_path / "lib")  # a query process: the CNN loads for image queries
    searched: list[tuple[int, bool]] = []  # (width, searched as off the photos' clusters)
    plain_search = faiss_index.search

    def spy(index: Any, queries: Any, k: int, *args: Any) -> Any:
        searched.append((index.d, args[2]))
        return plain_search(index, queries, k, *args)

    monkeypatch.setattr(faiss_index, "search", spy)
    try:
        words = reopened.search("a cat", k=5)
        assert words.tile_vector is None and len(words) == 5
        assert {hit.kind for hit in words} <= {"scene", "object"}
        # words lie off the photos' clusters: every kind they search probes more lists
        assert searched and all(wide for _, wide in searched)
        searched.clear()
        with pytest.raises(QueryError, match="--image FILE"):
            reopened.search("a cat", kinds=("tile",))
        query = crop_of_astronaut(photos, tmp_path)
        tiles_only = reopened.search(image=str(query), k=1, kinds=("tile",))
        assert tiles_only[0].path == str(photos / "astronaut.jpg")
        assert set(searched) == {(CNN_WIDTH, False)}  # a photo's tiles lie among the photos'
        searched.clear()
        # an image with words: both reach CLIP's space, only the image the CNN's; no tiles
        mixed = reopened.search("a person", image=str(query), k=3)
        assert mixed.tile_vector is None
        assert all(hit.kind != "tile" for hit in mixed)
        assert searched and all(wide for _, wide in searched)
    finally:
        reopened.close()


def test_each_space_gets_its_own_basis_and_search_still_finds_the_crop(
    photos: Path, tmp_path: Path, tiny_clip_checkpoint: Path
) -> None:
    lib = Library(tmp_path / "lib")
    lib.catalog.codec_fit_at = 8  # fits both bases on these five photos
    try:
        options = EncoderOptions(clip_weights=tiny_clip_checkpoint)
        index(lib, photos, options=HYBRID, encoder="clip:tiny-test", encoder_options=options)
        objects, tiles = lib.catalog.region_codec("object"), lib.catalog.region_codec("tile")
        assert objects is not None and tiles is not None
        assert objects.basis.shape[1] == 32 and tiles.basis.shape[1] == CNN_WIDTH
        assert lib.catalog.get_setting("codec.tiles")
        assert_consistent(lib)
        lib.rebuild_index()  # from the catalog's codes, in each kind's width
        query = crop_of_astronaut(photos, tmp_path)
        assert lib.search(image=str(query), k=1)[0].path == str(photos / "astronaut.jpg")
    finally:
        lib.close()


def test_a_clip_library_whose_tiles_are_in_its_own_space_keeps_them_there(
    photos: Path, tmp_path: Path, tiny_clip_checkpoint: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A library indexed before tiles had a space of their own is not mixed: its tiles stay
    CLIP's, run after run."""
    first, later = tmp_path / "first", tmp_path / "later"
    first.mkdir()
    later.mkdir()
    (photos / "astronaut.jpg").rename(first / "astronaut.jpg")
    (photos / "camera.jpg").rename(later / "camera.jpg")
    lib = Library(tmp_path / "lib")
    options = EncoderOptions(clip_weights=tiny_clip_checkpoint)
    try:
        with monkeypatch.context() as patched:
            patched.setattr(registry, "TILE_ENCODERS", {})
            index(lib, first, options=HYBRID, encoder="clip:tiny-test", encoder_options=options)
        assert lib.catalog.region_count("tile") > 0
        index(lib, later, options=HYBRID, encoder_options=options)
        assert lib.catalog.tile_identity() is None
        assert lib.catalog.vector_dim("tile", 32) == 32
        assert_consistent(lib)
    finally:
        lib.close()


def test_duplicates_of_a_clip_library_with_tiles_apart(
    photos: Path, tmp_path: Path, tiny_clip_checkpoint: Path
) -> None:
    """The crop tier compares scenes with the objects in their space, and each photo's
    whole-photo tile with the tiles in the CNN's: a crop is found there, where the random
    CLIP model could not find it; exact copies are found as ever."""
    (photos / "copy.jpg").write_bytes((photos / "camera.jpg").read_bytes())
    with Image.open(photos / "things" / "deep" / "rocket.jpg") as rocket:
        width, height = rocket.size
        box = (int(width * 0.1), int(height * 0.05), int(width * 0.85), int(height * 0.9))
        rocket.crop(box).save(photos / "rocket_cropped.jpg", quality=92)
    lib = clip_library(tmp_path / "lib", photos, tiny_clip_checkpoint)
    try:
        report = lib.dupes()
        groups = [{Path(report.table.paths[r]).name for r in g.rows} for g in report.groups]
        assert {"camera.jpg", "copy.jpg"} in groups
        assert {"rocket.jpg", "rocket_cropped.jpg"} in groups
        crop = next(p for p in report.pairs if p.tier == "crop")
        assert Path(report.table.paths[crop.a]).name == "rocket_cropped.jpg"
        # what proposes it in the CNN's space, where the random CLIP model proposes noise: the
        # crop's whole-photo tile is nearest a tile of the rocket, above the crop tier's floor
        by_id = {image.id: Path(image.path).name for image in lib.catalog.all_images()}
        catalog = lib.catalog
        owners, wholes = next(catalog.region_vectors_by_image(("tile",), 32, whole=True))
        assert sorted(by_id[i] for i in owners.tolist()) == sorted(by_id.values())
        tile_owners, tiles = next(catalog.region_vectors_by_image(("tile",), 32))
        mine = wholes[[by_id[i] for i in owners.tolist()].index("rocket_cropped.jpg")]
        scores = tiles.astype("float32") @ mine.astype("float32")
        others = [j for j, owner in enumerate(tile_owners) if by_id[owner] != "rocket_cropped.jpg"]
        best = max(others, key=lambda j: scores[j])
        assert by_id[int(tile_owners[best])] == "rocket.jpg"
        assert scores[best] >= DupeOptions().crop_cosine
    finally:
        lib.close()
