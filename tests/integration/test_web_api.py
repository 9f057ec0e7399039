"""The web API in-process (FastAPI's TestClient): every route, its errors, and the checks that
keep a browser page or a script from reaching what it should not."""

from __future__ import annotations

import io
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from searchapp.web.app import CSP, create_app
from tests.integration.helpers import index


@pytest.fixture(scope="module")
def client(sample_library: Any) -> TestClient:
    lib, _photos = sample_library
    return TestClient(create_app(lib))


def _id_of(sample_library: Any, name: str) -> int:
    lib, photos = sample_library
    return int(lib.catalog.image_by_path(str(photos / name)).id)


def _jpeg(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, "JPEG", quality=90)
    return out.getvalue()


def test_words_answer_like_search_json_with_id_thumb_and_size(client: TestClient) -> None:
    answer = client.get("/api/search", params={"q": "cat", "k": 3})
    assert answer.status_code == 200
    body = answer.json()
    assert (
        body["mode"] == "labels" and body["notes"]
    )  # the CNN matches ImageNet labels, and says so
    top = body["results"][0]
    assert Path(top["path"]).name in ("cat.jpg", "cat_small.jpg")
    assert set(top) >= {
        "path",
        "score",
        "date",
        "labels",
        "region",
        "verified",
        "id",
        "thumb",
        "size",
    }
    assert top["thumb"] == f"/api/photos/{top['id']}/thumb"
    photo = client.get(f"/api/photos/{top['id']}").json()
    assert photo["path"] == top["path"] and photo["size"] == top["size"]
    assert answer.headers["content-security-policy"] == CSP


def test_an_uploaded_crop_finds_its_source_with_its_box(
    client: TestClient, sample_library: Any
) -> None:
    _lib, photos = sample_library
    with Image.open(photos / "cameraman.jpg") as photo:
        crop = photo.crop((100, 60, 300, 260))
    answer = client.post(
        "/api/search", files={"image": ("part.jpg", _jpeg(crop), "image/jpeg")}, data={"k": "3"}
    )
    assert answer.status_code == 200, answer.text
    top = answer.json()["results"][0]
    assert Path(top["path"]).name == "cameraman.jpg"
    assert top["verified"] == "pixels"
    assert top["region"]["kind"] in ("tile", "object")  # a part wins, not the whole photo
    x0, y0, x1, y1 = top["region"]["bbox"]
    assert x0 < 300 and y0 < 260 and x1 > 100 and y1 > 60  # the box overlaps the crop


def test_a_box_drawn_on_a_photo_searches_with_that_part(
    client: TestClient, sample_library: Any
) -> None:
    rocket = _id_of(sample_library, "rocket.jpg")
    width, height = client.get(f"/api/photos/{rocket}").json()["size"]
    box = f"{width // 4},{height // 4},{width // 2},{height // 2}"
    answer = client.get("/api/search", params={"photo": rocket, "box": box, "k": 2})
    assert answer.status_code == 200, answer.text
    assert answer.json()["results"][0]["id"] == rocket
    tiny = client.get("/api/search", params={"photo": rocket, "box": "0,0,3,3"})
    assert tiny.status_code == 400 and "draw a larger box" in tiny.json()["error"]
    unboxed = client.get("/api/search", params={"photo": rocket})
    assert unboxed.status_code == 400 and "box" in unboxed.json()["error"]


def test_more_like_this_pages_and_sorts(client: TestClient, sample_library: Any) -> None:
    cat = _id_of(sample_library, "cat.jpg")
    first = client.get("/api/search", params={"like_id": cat, "k": 2, "kind": "scene"}).json()
    second = client.get(
        "/api/search", params={"like_id": cat, "k": 2, "offset": 2, "kind": "scene"}
    ).json()
    whole = client.get("/api/search", params={"like_id": cat, "k": 4, "kind": "scene"}).json()
    assert [r["id"] for r in first["results"] + second["results"]] == [
        r["id"] for r in whole["results"]
    ]
    assert cat not in [r["id"] for r in whole["results"]]  # the photo itself is left out
    # every other photo ranks: the page can size its grid for all nine before it has them
    assert (first["total"], first["estimate"]) == (None, 9)
    every = client.get("/api/search", params={"like_id": cat, "k": 50, "kind": "scene"}).json()
    assert every["total"] == len(every["results"]) == 9
    cut = client.get("/api/search", params={"like_id": cat, "k": 2, "min_score": 0.5}).json()
    words = client.get("/api/search", params={"q": "cat", "k": 1}).json()
    assert cut["estimate"] is None and words["estimate"] is None  # unknown beforehand
    by_date = client.get(
        "/api/search", params={"like_id": cat, "k": 6, "kind": "scene", "sort": "date"}
    ).json()
    dates = [r["date"] for r in by_date["results"]]
    assert dates == sorted(dates, reverse=True)


@pytest.mark.parametrize(
    ("params", "words"),
    [
        ({"q": "cat", "k": "many"}, "k: Input should be a valid integer"),
        ({"q": "cat", "kind": "face"}, "valid kinds are any, scene, object, tile"),
        ({"q": "cat", "sort": "size"}, "sort by score or by date"),
        ({"q": "cat", "k": 600}, "k from 1 to 500"),
        ({"q": "cat", "after": "yesterday"}, "--after"),
        ({"q": "qwxzv"}, "no ImageNet label matches"),
        ({}, "nothing to search for: give q (words), like or like_id"),
        ({"like": "/etc/passwd"}, "not in the library"),
        ({"photo": 1, "box": "a,b"}, "give four numbers"),
    ],
)
def test_bad_searches_are_answered_in_words(client: TestClient, params: dict, words: str) -> None:
    answer = client.get("/api/search", params=params)
    assert answer.status_code == 400
    assert words in answer.json()["error"]


def test_uploads_that_are_not_photos_or_too_large_are_refused(sample_library: Any) -> None:
    lib, photos = sample_library
    small = TestClient(create_app(lib, upload_limit=10_000))
    text = small.post("/api/search", files={"image": ("notes.txt", b"hello", "text/plain")})
    assert text.status_code == 400
    assert text.json()["error"].startswith("the uploaded image notes.txt: not an image")
    assert "searchapp-query-" not in text.json()["error"]  # the temporary file is not named
    big = small.post(
        "/api/search", files={"image": ("big.jpg", (photos / "rocket.jpg").read_bytes())}
    )
    assert big.status_code == 400 and "over the 0 MiB limit" in big.json()["error"]


def test_photos_thumbnails_and_files_by_id(client: TestClient, sample_library: Any) -> None:
    lib, photos = sample_library
    cat = _id_of(sample_library, "cat.jpg")
    photo = client.get(f"/api/photos/{cat}").json()
    assert photo["regions"][0]["kind"] == "scene"
    assert {r["kind"] for r in photo["regions"]} >= {"scene", "tile"}
    assert photo["labels"] and photo["format"] == "JPEG"
    thumb = client.get(f"/api/photos/{cat}/thumb", params={"size": 100})
    assert thumb.headers["content-type"] == "image/jpeg"
    with Image.open(io.BytesIO(thumb.content)) as small:
        assert max(small.size) == 160  # the next size up of those kept
    cached = list((lib.directory / "thumbs" / "160").rglob("*.jpg"))
    assert cached, "the thumbnail is kept in the library"
    original = client.get(f"/api/photos/{cat}/image")
    assert original.content == (photos / "cat.jpg").read_bytes()
    assert original.headers["content-type"] == "image/jpeg"
    assert client.get(f"/api/photos/{cat}/thumb", params={"size": 0}).status_code == 400
    head = client.head(f"/api/photos/{cat}/image")
    assert head.status_code == 200 and head.headers["content-type"] == "image/jpeg"


@pytest.mark.parametrize(
    "path",
    [
        "/api/photos/..%2F..%2Fetc%2Fpasswd/image",
        "/api/photos/%2Fetc%2Fpasswd/image",
        "/api/photos/../../etc/passwd",
        "/static/../app.py",
        "/static/..%2fapp.py",
        "/static/%2e%2e/%2e%2e/library.py",
        "/static/",
        "/etc/passwd",
        "/api/photos/999999/image",
    ],
)
def test_no_path_in_a_request_reaches_a_file(client: TestClient, path: str) -> None:
    answer = client.get(path)
    assert answer.status_code in (400, 404), answer.text
    assert "error" in answer.json()


def test_a_photo_replaced_by_a_link_to_a_private_file_is_not_served(
    library: Any, photos: Path, tmp_path: Path
) -> None:
    index(library, photos)
    client = TestClient(create_app(library))
    found = client.get("/api/search", params={"q": "cat", "k": 1}).json()["results"][0]
    secret = tmp_path / "private" / "key.jpg"
    secret.parent.mkdir()
    secret.write_bytes(b"-----BEGIN PRIVATE KEY----- not for the web")
    os.remove(found["path"])
    os.symlink(secret, found["path"])
    for route in ("image", "thumb"):
        answer = client.get(f"/api/photos/{found['id']}/{route}")
        assert answer.status_code == 410
        assert b"PRIVATE" not in answer.content
        assert "changed since it was indexed" in answer.json()["error"]
    os.remove(found["path"])  # a link to another real photo outside the folder: refused too
    other = tmp_path / "elsewhere.jpg"
    shutil.copy(photos / "astronaut.jpg", other)
    os.symlink(other, found["path"])
    assert client.get(f"/api/photos/{found['id']}/image").status_code == 410
    os.remove(found["path"])
    gone = client.get(f"/api/photos/{found['id']}/image")
    assert gone.status_code == 410 and "searchapp index" in gone.json()["error"]


def test_a_token_guards_every_route_when_set(sample_library: Any) -> None:
    lib, _photos = sample_library
    guarded = TestClient(create_app(lib, token="s3cret"))
    for path in ("/", "/api/stats", "/static/app.js", "/openapi.json"):
        answer = guarded.get(path)
        assert answer.status_code == 401 and "token" in answer.json()["error"]
    assert guarded.get("/api/stats", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert guarded.get("/api/stats", headers={"Authorization": "Bearer s3cret"}).status_code == 200
    page = guarded.get("/", params={"token": "s3cret"})
    assert page.status_code == 200 and "searchapp_token" in page.headers["set-cookie"]
    assert guarded.get("/api/stats").status_code == 200  # the cookie the page was given


def test_a_post_from_another_site_is_refused(client: TestClient) -> None:
    evil = client.post("/api/search", data={"q": "cat"}, headers={"Origin": "https://evil.example"})
    assert evil.status_code == 403
    same = client.post("/api/search", data={"q": "cat"}, headers={"Origin": "http://testserver"})
    assert same.status_code == 200


def test_stats_page_and_schema(client: TestClient) -> None:
    stats = client.get("/api/stats").json()
    assert stats["images"] == 10 and stats["regions"]["scene"] == 10
    page = client.get("/")
    assert page.headers["content-type"].startswith("text/html") and "/static/app.js" in page.text
    assert client.head("/").status_code == 200 and client.head("/dupes").status_code == 200
    assert "http" not in page.text.replace("http-equiv", "")  # nothing from another host
    schema = client.get("/openapi.json").json()
    assert {"/api/search", "/api/photos/{photo_id}", "/api/stats"} <= set(schema["paths"])
    assert {"get", "post"} <= set(schema["paths"]["/api/search"])


def test_thumbnails_made_already_come_inside_the_answer(client: TestClient) -> None:
    import base64

    params = {"q": "cat", "k": 3, "inline": 160}
    first = client.get("/api/search", params=params).json()["results"]
    made = first[0]["id"]
    thumb = client.get(f"/api/photos/{made}/thumb", params={"size": 160}).content
    answer = client.get("/api/search", params=params).json()["results"]
    inline = {hit["id"]: hit.get("thumb_data") for hit in answer}
    assert inline[made] == "data:image/jpeg;base64," + base64.b64encode(thumb).decode()
    plain = client.get("/api/search", params={"q": "cat", "k": 3}).json()["results"]
    assert not any("thumb_data" in hit for hit in plain)  # only when asked


def test_a_photos_regions_scored_against_a_search(client: TestClient, sample_library: Any) -> None:
    """The heat map's numbers: each region of a result against the search's vector, the
    winning region's score the hit's own."""
    rocket = _id_of(sample_library, "rocket.jpg")
    width, height = client.get(f"/api/photos/{rocket}").json()["size"]
    box = f"{width // 4},{height // 4},{width // 2},{height // 2}"
    answer = client.get("/api/search", params={"photo": rocket, "box": box, "k": 3}).json()
    hit = answer["results"][0]
    scored = client.get(f"/api/rankings/{answer['ranking']}/photos/{hit['id']}/regions")
    assert scored.status_code == 200, scored.text
    regions = scored.json()["regions"]
    assert {r["kind"] for r in regions} >= {"scene", "tile"}
    winner = [
        r
        for r in regions
        if r["kind"] == hit["region"]["kind"] and r["bbox"] == hit["region"]["bbox"]
    ]
    assert winner and abs(winner[0]["score"] - hit["score"]) < 1e-4
    assert (
        max(r["score"] for r in regions if r["kind"] == hit["region"]["kind"]) == winner[0]["score"]
    )
    gone = client.get(f"/api/rankings/99999/photos/{hit['id']}/regions")
    assert gone.status_code == 404 and "search again" in gone.json()["error"]
    words = client.get("/api/search", params={"q": "cat", "k": 1}).json()
    labels = client.get(f"/api/rankings/{words['ranking']}/photos/{hit['id']}/regions")
    assert labels.status_code == 400 and "labels" in labels.json()["error"]


def test_less_like_a_photo(client: TestClient, sample_library: Any) -> None:
    cat = _id_of(sample_library, "cat.jpg")
    small = _id_of(sample_library, "cat_small.jpg")
    plain = client.get("/api/search", params={"like_id": cat, "k": 9, "kind": "scene"}).json()
    assert plain["results"][0]["id"] == small
    less = client.get(
        "/api/search", params={"like_id": cat, "minus_id": small, "k": 9, "kind": "scene"}
    ).json()
    ranks = [r["id"] for r in less["results"]]
    assert small not in ranks[:1] and ranks != [r["id"] for r in plain["results"]]
