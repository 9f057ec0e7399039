"""Videos in the web API (FastAPI's TestClient): a thumbnail of the frame at a time, the file
served in byte ranges for a player to seek, the video's facts, and a search's scores over its
frames, which the page draws as a strip along the scrub bar."""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from searchapp.library import Library
from searchapp.web.app import create_app
from tests.conftest import sample_image
from tests.integration.helpers import index
from tests.videos import frame_at, write_clip

# frames are sampled at 0, 2 (astronaut), 4, 6 (coffee) and 8 s (rocket, still after that)
SHOTS = (("astronaut", 4, True), ("coffee", 4, True), ("rocket", 4, False))


@pytest.fixture(scope="module")
def video_library(
    tmp_path_factory: pytest.TempPathFactory, cnn_encoder: Any
) -> Iterator[tuple[Library, Path]]:
    folder = tmp_path_factory.mktemp("web-video")
    photos = folder / "photos"
    photos.mkdir()
    shots = [(sample_image(name), seconds, moving) for name, seconds, moving in SHOTS]
    clip = write_clip(photos / "three.mp4", shots)
    sample_image("chelsea").save(photos / "cat.jpg", quality=92)
    lib = Library(folder / "lib")
    lib._encoder = cnn_encoder
    lib.catalog.set_encoder_identity(cnn_encoder.identity)
    index(lib, photos)
    yield lib, clip
    lib.close()


@pytest.fixture(scope="module")
def client(video_library: tuple[Library, Path]) -> TestClient:
    return TestClient(create_app(video_library[0]))


def _id(lib: Library, path: Path) -> int:
    found = lib.catalog.image_by_path(str(path))
    assert found is not None
    return int(found.id)


def _picture(data: bytes) -> Image.Image:
    return Image.open(io.BytesIO(data)).convert("RGB")


def _distance(a: Image.Image, b: Image.Image) -> float:
    """Mean absolute difference of two pictures brought to one size, 0 to 255."""
    small = (64, 48)
    return float(
        np.abs(
            np.asarray(a.resize(small), np.float32) - np.asarray(b.resize(small), np.float32)
        ).mean()
    )


def _crop(clip: Path, time: float) -> bytes:
    frame = frame_at(clip, time)
    width, height = frame.size
    part = frame.crop((width // 5, height // 5, width - width // 5, height - height // 5))
    out = io.BytesIO()
    part.save(out, "JPEG", quality=95)
    return out.getvalue()


def test_a_video_thumbnail_is_the_frame_at_the_time_asked(
    client: TestClient, video_library: tuple[Library, Path]
) -> None:
    lib, clip = video_library
    video = _id(lib, clip)
    first = client.get(f"/api/photos/{video}/thumb")
    assert first.status_code == 200, first.text
    assert first.headers["content-type"] == "image/jpeg"
    assert _picture(first.content).size == (320, 240)  # the clip's size, 320 on its longer side
    small = client.get(f"/api/photos/{video}/thumb", params={"size": 160})
    assert _picture(small.content).size == (160, 120)

    at_six = _picture(client.get(f"/api/photos/{video}/thumb", params={"time": 6.0}).content)
    shown = {time: frame_at(clip, time) for time in (0.0, 6.0)}
    # the astronaut first, the coffee at 6 s: each thumbnail is its own frame, not the other
    assert _distance(_picture(first.content), shown[0.0]) < 6
    assert _distance(at_six, shown[6.0]) < 6
    assert _distance(at_six, shown[0.0]) > 30
    # kept by time: the second request for 6 s is served from the cache, not decoded again
    cached = sorted(p.name for p in (lib.directory / "thumbs" / "320").rglob("*.jpg"))
    digest = lib.catalog.content_hashes([video])[video]
    assert f"{digest}.jpg" in cached and f"{digest}-6000ms.jpg" in cached
    assert client.get(f"/api/photos/{video}/thumb", params={"time": 6.0}).content == (
        (lib.directory / "thumbs" / "320" / digest[:2] / f"{digest}-6000ms.jpg").read_bytes()
    )

    late = client.get(f"/api/photos/{video}/thumb", params={"time": 99})  # past the end
    assert late.status_code == 200 and _distance(_picture(late.content), shown[0.0]) > 30
    bad = client.get(f"/api/photos/{video}/thumb", params={"time": -1})
    assert bad.status_code == 400 and "time" in bad.json()["error"]
    cat = _id(lib, clip.parent / "cat.jpg")  # a photo has one picture, whatever the time
    assert (
        client.get(f"/api/photos/{cat}/thumb", params={"time": 3}).content
        == client.get(f"/api/photos/{cat}/thumb").content
    )


def test_a_video_file_is_served_in_the_ranges_a_player_asks_for(
    client: TestClient, video_library: tuple[Library, Path]
) -> None:
    lib, clip = video_library
    video = _id(lib, clip)
    data = clip.read_bytes()
    whole = client.get(f"/api/photos/{video}/image")
    assert whole.status_code == 200 and whole.content == data
    assert whole.headers["content-type"] == "video/mp4"
    assert whole.headers["accept-ranges"] == "bytes"

    part = client.get(f"/api/photos/{video}/image", headers={"Range": "bytes=100-1123"})
    assert part.status_code == 206
    assert part.content == data[100:1124]
    assert part.headers["content-range"] == f"bytes 100-1123/{len(data)}"
    tail = client.get(f"/api/photos/{video}/image", headers={"Range": "bytes=-500"})
    assert tail.status_code == 206 and tail.content == data[-500:]
    head = client.head(f"/api/photos/{video}/image")
    assert head.status_code == 200 and head.headers["content-length"] == str(len(data))

    # a file changed since it was indexed is refused (size and time, not a hash: see photos.py)
    st = os.stat(clip)
    os.utime(clip, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    try:
        changed = client.get(f"/api/photos/{video}/image", headers={"Range": "bytes=0-99"})
        assert changed.status_code == 410 and "searchapp index" in changed.json()["error"]
    finally:
        os.utime(clip, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert (
        client.get(f"/api/photos/{video}/image", headers={"Range": "bytes=0-9"}).content
        == (data[:10])
    )


def test_a_video_says_what_it_is_and_when_its_frames_are(
    client: TestClient, video_library: tuple[Library, Path]
) -> None:
    lib, clip = video_library
    video = client.get(f"/api/photos/{_id(lib, clip)}").json()
    assert video["video"]["codec"] == "h264" and video["video"]["frame_rate"] == 10.0
    assert video["video"]["duration"] == pytest.approx(12.0, abs=0.15)
    assert video["format"] == "MP4" and video["size"] == [320, 240]
    assert [r["kind"] for r in video["regions"]] == ["frame"] * 5
    assert sorted(r["time"] for r in video["regions"]) == [0.0, 2.0, 4.0, 6.0, 8.0]
    cat = client.get(f"/api/photos/{_id(lib, clip.parent / 'cat.jpg')}").json()
    assert cat["video"] is None and all(r["time"] is None for r in cat["regions"])
    boxed = client.get("/api/search", params={"photo": video["id"], "box": "0,0,100,100"})
    assert boxed.status_code == 400 and "video" in boxed.json()["error"]


def test_a_search_gives_the_moment_and_the_score_of_every_frame(
    client: TestClient, video_library: tuple[Library, Path]
) -> None:
    lib, clip = video_library
    video = _id(lib, clip)
    crop = ("crop.jpg", _crop(clip, 6.0), "image/jpeg")
    answer = client.post("/api/search", files={"image": crop}, data={"k": "5"})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    top = body["results"][0]
    assert top["id"] == video and top["region"]["kind"] == "frame"
    assert 4.0 <= top["time"] < 8.0  # the coffee shot
    assert top["moments"][0]["time"] == top["time"]
    assert top["thumb"] == f"/api/photos/{video}/thumb?time={top['time']}"
    thumb = client.get(top["thumb"] + "&size=320")
    assert _distance(_picture(thumb.content), frame_at(clip, top["time"])) < 6
    # once made, the frame's thumbnail comes inside the answer
    inline = client.post("/api/search", files={"image": crop}, data={"k": "5", "inline": "320"})
    assert inline.json()["results"][0]["thumb_data"].startswith("data:image/jpeg;base64,")

    frames = client.get(f"/api/rankings/{body['ranking']}/photos/{video}/regions").json()
    regions = frames["regions"]
    assert sorted(r["time"] for r in regions) == [0.0, 2.0, 4.0, 6.0, 8.0]
    best = max(regions, key=lambda r: r["score"])
    assert best["time"] == top["time"] and best["score"] == pytest.approx(top["score"], abs=1e-4)
    only = client.get("/api/search", params={"like_id": video, "kind": "frame"})
    assert only.status_code == 200, only.text  # "frame" is a kind the page may ask for
