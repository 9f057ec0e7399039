"""Duplicates through the web API: the groups with what the page needs to show them, a move
away and its undo, and the errors a script can meet."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
from fastapi.testclient import TestClient
from PIL import Image

from searchapp.web.app import create_app
from tests.integration.helpers import index


def _with_copies(photos: Path) -> tuple[Path, Path]:
    """A half-size recompressed cat (near) and the coffee's pixels as PNG (exact)."""
    with Image.open(photos / "animals" / "cat.jpg") as cat:
        small = photos / "animals" / "cat_small.jpg"
        cat.resize((cat.width // 2, cat.height // 2)).save(small, quality=60)
    with Image.open(photos / "things" / "coffee.jpg") as coffee:
        png = photos / "coffee_copy.png"
        coffee.save(png)
    return small, png


def test_groups_move_and_undo(library: Any, photos: Path, tmp_path: Path) -> None:
    small, png = _with_copies(photos)
    assert png.exists()
    index(library, photos)
    client = TestClient(create_app(library))
    report = client.get("/api/dupes").json()
    assert report["summary"]["groups"] == 2
    assert report["move_to"].endswith("searchapp-set-aside")
    by_keep = {Path(g["keep"]).name: g for g in report["groups"]}
    cat = by_keep["cat.jpg"]
    assert cat["confirmed"] and {p["tier"] for p in cat["pairs"]} == {"near"}
    small_entry = next(p for p in cat["photos"] if p["path"] == str(small))
    assert (
        small_entry["bytes"] == small.stat().st_size and cat["bytes_freed"] == small_entry["bytes"]
    )
    assert small_entry["size"] == [225, 150]
    assert report["summary"]["bytes_freed"] == sum(g["bytes_freed"] for g in report["groups"])

    of_cat = client.get(f"/api/dupes/of/{cat['photos'][0]['id']}").json()["groups"]
    assert [group["keep"] for group in of_cat] == [cat["keep"]]
    rocket = library.catalog.image_by_path(str(photos / "things" / "deep" / "rocket.jpg")).id
    assert client.get(f"/api/dupes/of/{rocket}").json() == {"groups": []}

    aside = tmp_path / "aside"
    moved = client.post("/api/dupes/move", json={"ids": [small_entry["id"]], "folder": str(aside)})
    assert moved.status_code == 200, moved.text
    body = moved.json()
    assert [m["from"] for m in body["moved"]] == [str(small)] and not body["not_moved"]
    assert not small.exists() and Path(body["moved"][0]["to"]).exists()
    assert client.get("/api/dupes").json()["summary"]["groups"] == 1  # set aside: out of the groups
    found = client.get("/api/search", params={"like_id": cat["photos"][0]["id"], "k": 10}).json()
    assert str(small) not in {hit["path"] for hit in found["results"]}

    undone = client.post("/api/dupes/undo", json={"journal": body["journal"]})
    assert undone.status_code == 200, undone.text
    assert small.exists() and [m["to"] for m in undone.json()["moved"]] == [str(small)]
    assert client.get("/api/dupes").json()["summary"]["groups"] == 2


def test_bad_moves_are_answered_in_words(library: Any, photos: Path, tmp_path: Path) -> None:
    index(library, photos)
    client = TestClient(create_app(library))
    aside = tmp_path / "aside"
    aside.mkdir()
    assert client.post("/api/dupes/move", json={"ids": []}).json()["error"].startswith("no photos")
    unknown = client.post("/api/dupes/move", json={"ids": [9999], "folder": str(aside)})
    assert unknown.status_code == 404 and "no photo with id 9999" in unknown.json()["error"]
    root = client.post("/api/dupes/move", json={"ids": [1], "folder": "/"})
    assert root.status_code == 400 and "every file onto itself" in root.json()["error"]
    journal = aside / "journal.json"
    journal.write_text("{not json")
    damaged = client.post("/api/dupes/undo", json={"journal": str(journal)})
    assert damaged.status_code == 400
    assert str(journal) in damaged.json()["error"]
    tier = client.get("/api/dupes", params={"tier": "twins"})
    assert tier.status_code == 400 and "unknown tier twins" in tier.json()["error"]
    missing = client.post("/api/dupes/move", json={"folder": str(aside)})
    assert missing.status_code == 400 and "ids" in missing.json()["error"]
    assert os.listdir(aside) == ["journal.json"]  # nothing moved by any of these


def test_the_difference_of_an_aligned_pair(library: Any, photos: Path) -> None:
    small, _png = _with_copies(photos)
    index(library, photos)
    client = TestClient(create_app(library))
    cat = library.catalog.image_by_path(str(photos / "animals" / "cat.jpg")).id
    copy = library.catalog.image_by_path(str(small)).id
    shown = client.get("/api/dupes/difference", params={"a": cat, "b": copy})
    assert shown.status_code == 200 and shown.headers["content-type"] == "image/jpeg"
    import io

    with Image.open(io.BytesIO(shown.content)) as image:
        assert image.size == (451, 300)  # the cat's frame, the copy aligned onto it
        pixels = np.asarray(image.convert("L"), dtype=float)
    assert pixels.mean() < 40  # a resized copy: the pixels agree nearly everywhere
    rocket = library.catalog.image_by_path(str(photos / "things" / "deep" / "rocket.jpg")).id
    unrelated = client.get("/api/dupes/difference", params={"a": cat, "b": rocket})
    assert unrelated.status_code == 400 and "do not align" in unrelated.json()["error"]
