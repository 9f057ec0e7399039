"""Exploring a library of real photos: clusters keep each photo's edited copies together,
outliers put a black frame and a test chart first, the map is stored and extended, and `stats`
reports the embedding's health. Through the Library and through the real CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageEnhance

from tests.conftest import sample_image, searchapp_here
from tests.integration.helpers import index

GROUPS = ("chelsea", "coffee", "astronaut", "rocket")


def variants(image: Image.Image) -> dict[str, Image.Image]:
    width, height = image.size
    return {
        "a": image,
        "flipped": image.transpose(Image.Transpose.FLIP_LEFT_RIGHT),
        "cropped": image.crop((width // 10, height // 10, width * 9 // 10, height * 9 // 10)),
        "brighter": ImageEnhance.Brightness(image).enhance(1.3),
    }


@pytest.fixture(scope="module")
def collection(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("explore") / "photos"
    for name in GROUPS:
        (root / name).mkdir(parents=True)
        for variant, image in variants(sample_image(name)).items():
            image.save(root / name / f"{variant}.jpg", quality=90)
    # the odd frames as the README makes them: a black frame and a camera test chart
    script = Path(__file__).resolve().parents[2] / "examples" / "odd_photos.py"
    subprocess.run([sys.executable, str(script), str(root / "odd")], check=True, timeout=120)
    return root


@pytest.fixture
def explored(library, collection: Path):  # type: ignore[no-untyped-def]
    index(library, collection)
    return library


def test_clusters_keep_each_photos_copies_together_and_name_them(explored, collection) -> None:
    report = explored.clusters()
    cluster_of = {path: c.id for c in report.clusters for path in c.paths}
    found = set()
    for name in GROUPS:
        members = {
            cluster_of.get(str(collection / name / f"{v}.jpg"), -1)
            for v in ["a", "flipped", "cropped", "brighter"]
        }
        assert len(members) == 1 and members != {-1}, name
        found |= members
    assert len(found) == len(GROUPS)  # four groups, not one
    cat = next(c for c in report.clusters if str(collection / "chelsea" / "a.jpg") in c.paths)
    assert any(word in cat.name for word in ("cat", "tabby")), cat.name
    assert cat.size == 4 and len(cat.representatives) == 4
    assert all(Path(p).is_absolute() for p in cat.paths)
    assert set(report.noise) >= {str(collection / "odd" / "black_frame.jpg")}


def test_outliers_put_the_black_frame_and_test_chart_first(explored, collection) -> None:
    ranked = explored.photo_scores(by="outlier")
    assert {s.path for s in ranked[:2]} == {
        str(collection / "odd" / "black_frame.jpg"),
        str(collection / "odd" / "test_chart.png"),
    }
    assert all(0.0 <= s.representativeness <= 1.0 for s in ranked)
    labels = explored.catalog.image_labels(s.image_id for s in ranked)
    for score in ranked:  # "recognised" is the photo's stored top label probability
        assert score.recognised == pytest.approx(labels[score.image_id][0][1])
    by_uniqueness = explored.photo_scores()
    assert by_uniqueness[0].uniqueness == pytest.approx(1.0)
    assert [s.uniqueness for s in by_uniqueness] == sorted(
        (s.uniqueness for s in by_uniqueness), reverse=True
    )


def test_health_records_norms_and_stays_within_thresholds(explored) -> None:
    figures = explored.health()
    assert figures is not None and figures.count == 18
    assert figures.norms_known == 18 and figures.norm_spread is not None
    assert figures.warnings == []
    assert explored.health() == figures  # kept until the vectors change


def test_map_is_stored_and_new_photos_are_placed_without_a_refit(
    explored, collection, tmp_path
) -> None:
    first = explored.map_points()
    assert first.method == "umap" and first.fitted_count == 18
    extra = tmp_path / "more"
    extra.mkdir()
    sample_image("chelsea").rotate(4).save(extra / "cat_again.jpg", quality=85)
    index(explored, extra)
    second = explored.map_points()
    assert second.fitted_count == 18 and len(second.paths) == 19
    kept = dict(zip(first.region_ids.tolist(), first.coords.tolist(), strict=True))
    for region_id, coords in zip(second.region_ids.tolist(), second.coords.tolist(), strict=True):
        if region_id in kept:
            assert coords == pytest.approx(kept[region_id])
    where = {p: c for p, c in zip(second.paths, second.coords, strict=True)}
    cats = np.array([where[str(collection / "chelsea" / f"{v}.jpg")] for v in ("a", "flipped")])
    new = where[str(extra / "cat_again.jpg")]
    spread = np.ptp(second.coords, axis=0).max()
    assert np.linalg.norm(cats.mean(axis=0) - new) < 0.25 * spread
    assert explored.map_points(method="pca").method == "pca"  # another method refits


def test_cli_clusters_outliers_map_and_stats(explored, collection, tmp_path) -> None:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return searchapp_here(*args, "--library", str(explored.directory))

    explored.close()
    groups = run("clusters", "--json")
    assert groups.returncode == 0, groups.stderr
    data = json.loads(groups.stdout)
    assert set(data) >= {"clusters", "noise"}
    assert set(data["clusters"][0]) >= {"id", "name", "size", "paths", "representatives"}
    odd = run("outliers", "-k", "2", "--json")
    assert {Path(p["path"]).name for p in json.loads(odd.stdout)["photos"]} == {
        "black_frame.jpg",
        "test_chart.png",
    }
    table = run("clusters")
    assert "most representative" in table.stdout and "photos in none" in table.stderr
    out = tmp_path / "map.html"
    made = run("map", "--out", str(out), "--color", "cluster")
    assert made.returncode == 0, made.stderr
    assert "18 scene points" in made.stderr and "<canvas" not in out.read_text()  # drawn by JS
    assert "window.SEARCHAPP_MAP" in out.read_text()
    coords = json.loads(run("map", "--json", "--color", "cluster").stdout)
    assert len(coords["points"]) == 18 and {"path", "x", "y", "cluster"} <= set(coords["points"][0])
    stats = json.loads(run("stats", "--json").stdout)
    assert stats["health"]["warnings"] == [] and stats["health"]["norms_recorded"] == 18
    assert "hubness" in run("stats").stdout
    assert len(json.loads(run("clusters", "--kmeans", "3", "--json").stdout)["clusters"]) == 3
    bad = run("clusters", "--kmeans", "0")
    assert bad.returncode == 2 and "give 1 or more" in bad.stderr


def decode_uint16(text: str) -> np.ndarray:
    import base64

    return np.frombuffer(base64.b64decode(text), dtype=np.uint16)


def test_the_web_api_serves_the_same_map(explored) -> None:
    from fastapi.testclient import TestClient

    from searchapp.web.app import create_app

    client = TestClient(create_app(explored))
    answer = client.get("/api/map", params={"colour": "cluster"})
    assert answer.status_code == 200
    data = answer.json()
    assert len(data["paths"]) == 18 and len(data["imageIds"]) == 18
    assert data["colourBy"] == "cluster" and data["thumbs"] == {}
    for path, image_id in zip(data["paths"], data["imageIds"], strict=True):  # shuffled together
        assert explored.photo(image_id).path == path
    names = data["categories"]
    cats = {data["paths"][k]: names[c] for k, c in enumerate(decode_uint16(data["category"]))}
    for name in GROUPS:  # each photo's copies share a cluster colour, not noise
        colours = {cats[str(p)] for p in (Path(data["paths"][0]).parents[1] / name).glob("*.jpg")}
        assert len(colours) == 1 and colours != {"noise"}, (name, colours)
    assert client.get("/map").status_code == 200
    bad = client.get("/api/map", params={"colour": "mood"})
    assert bad.status_code == 400 and "choose from" in bad.json()["error"]
    assert client.get("/api/map", params={"kind": "frames"}).status_code == 400


def test_objects_and_tiles_have_maps_of_their_own(sample_library) -> None:  # type: ignore[no-untyped-def]
    lib, _ = sample_library
    counts = lib.stats().regions_by_kind
    for kind in ("object", "tile"):
        points = lib.map_points(kind)
        assert len(points.paths) == counts[kind] and points.coords.shape == (counts[kind], 2)
        assert np.isfinite(points.coords).all()
        found = lib.kind_vectors(kind)
        assert points.boxes == [tuple(int(v) for v in box) for box in found.boxes]
        assert "cluster" not in points.facets  # clusters are of photos
    objects = lib.map_points("object")
    assert "moped" in objects.facets["label"]  # the motorcycle's object keeps its label


def test_an_emptied_library_says_so_instead_of_drawing_nothing(library, collection, tmp_path):  # type: ignore[no-untyped-def]
    from searchapp.errors import SearchappError, UsageError
    from searchapp.library import Library
    from searchapp.query.filters import build_filters

    with Library(tmp_path / "never") as never, pytest.raises(SearchappError, match="is empty"):
        never.tagged_photos(build_filters(tags=["cat"]), 5)
    gone = tmp_path / "gone"
    gone.mkdir()
    sample_image("coffee").save(gone / "coffee.jpg")
    index(library, gone)
    (gone / "coffee.jpg").unlink()
    index(library, gone)
    for call, message in (
        (lambda: library.map_points(), "no scene regions to map"),
        (lambda: library.map_points("object"), "no object regions"),
        (lambda: library.clusters(), "no photos to group"),
        (lambda: library.clusters(k=3), "no photos to group"),
        (lambda: library.photo_scores(), "no photos to rank"),
    ):
        with pytest.raises(UsageError, match=message):
            call()
    assert library.health() is None


def test_a_refit_forgets_the_places_of_photos_set_aside(explored, collection) -> None:
    from sqlalchemy import update

    from searchapp.store.tables import images

    explored.map_points()
    aside = explored.catalog.image_by_path(str(collection / "coffee" / "a.jpg"))
    region = int(explored.kind_vectors("scene").region_ids[0])
    with explored.catalog.engine.begin() as conn:
        conn.execute(update(images).where(images.c.id == aside.id).values(set_aside=True))
    assert aside.id not in explored.kind_vectors("scene").image_ids  # out of search and the map
    assert explored.map_points(refit=True).fitted_count == 17
    with explored.catalog.engine.connect() as conn:
        from sqlalchemy import select

        from searchapp.store.tables import map_points, regions

        left = conn.execute(
            select(map_points.c.region_id)
            .join(regions, regions.c.id == map_points.c.region_id)
            .where(regions.c.image_id == aside.id)
        ).all()
    assert left == []  # its old place is gone with the old layout
    with explored.catalog.engine.begin() as conn:
        conn.execute(update(images).where(images.c.id == aside.id).values(set_aside=False))
    back = explored.map_points()
    assert len(back.paths) == 18 and back.fitted_count == 17  # placed beside its neighbours
    assert region in explored.kind_vectors("scene").region_ids
