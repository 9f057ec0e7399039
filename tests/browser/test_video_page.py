"""A video in the search page, in headless Chromium: a crop of one of its frames dropped on the
page finds it with the moment's badge; opened, it plays from that moment (the picture on screen
is that frame), and the strip under it has a cell per sampled frame, the best one marked, and
seeks where it is clicked. A screenshot of the viewer for the README."""

from __future__ import annotations

import base64
import io
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from searchapp.library import Library
from searchapp.web.app import create_app
from tests.browser.chromium import serve
from tests.browser.conftest import screenshot
from tests.browser.test_search_page import DROP, WAIT
from tests.conftest import sample_image
from tests.integration.helpers import index
from tests.videos import frame_at, write_clip

# frames are sampled at 0, 2 (astronaut), 4, 6 (coffee), 8 s (rocket, still until 12 s)
SHOTS = (("astronaut", 4, True), ("coffee", 4, True), ("rocket", 4, False))
H264 = 'video/mp4; codecs="avc1.640015"'  # what PyAV's libx264 writes: High profile

# the picture the <video> shows, as the user sees it: drawn onto a canvas
SHOWN = """
const clip = document.getElementById("clip");
const canvas = document.createElement("canvas");
[canvas.width, canvas.height] = [clip.videoWidth, clip.videoHeight];
canvas.getContext("2d").drawImage(clip, 0, 0);
return canvas.toDataURL("image/png");
"""

SETTLED = """
const clip = document.getElementById("clip");
return clip.readyState >= 2 && !clip.seeking && clip.videoWidth > 0 ? [clip.currentTime] : null;
"""

STRIP = """
return [...document.querySelectorAll("#strip .mark")].map((m) => ({
    time: Number(m.dataset.time), best: m.classList.contains("best"),
    moment: m.classList.contains("moment"), height: m.getBoundingClientRect().height,
}));
"""


@pytest.fixture(scope="module")
def video_site(tmp_path_factory: pytest.TempPathFactory, cnn_encoder: Any) -> Iterator[Any]:
    folder = tmp_path_factory.mktemp("video-site")
    photos = folder / "photos"
    photos.mkdir()
    shots = [(sample_image(name), seconds, moving) for name, seconds, moving in SHOTS]
    clip = write_clip(photos / "trip.mp4", shots)
    sample_image("coffee").save(photos / "coffee.jpg", quality=92)  # the photo the shot pans
    lib = Library(folder / "lib")
    lib._encoder = cnn_encoder
    lib.catalog.set_encoder_identity(cnn_encoder.identity)
    index(lib, photos)
    with serve(create_app(lib)) as address:
        yield address, clip
    lib.close()


def _png(data_url: str) -> Image.Image:
    data = base64.b64decode(data_url.split(",", 1)[1])
    return Image.open(io.BytesIO(data)).convert("RGB")


def _distance(a: Image.Image, b: Image.Image) -> float:
    small = (64, 48)
    pixels = [np.asarray(p.resize(small), np.float32) for p in (a, b)]
    return float(np.abs(pixels[0] - pixels[1]).mean())


def _settled(driver: Any) -> float:
    """The video's time once the frame there is shown (no seek under way)."""
    (at,) = WebDriverWait(driver, WAIT).until(lambda d: d.execute_script(SETTLED))
    return float(at)


def test_a_video_hit_plays_from_its_moment_with_the_strip_of_scores(
    chromium: Any, video_site: Any, tmp_path: Path
) -> None:
    address, clip = video_site
    frame = frame_at(clip, 6.0)
    width, height = frame.size
    crop = frame.crop((width // 5, height // 5, width - width // 5, height - height // 5))
    out = io.BytesIO()
    crop.save(out, "JPEG", quality=95)
    chromium.get(f"{address}/")
    # the browser decodes this stream itself (Debian's Chromium carries H.264): no fallback
    assert chromium.execute_script(
        "return document.createElement('video').canPlayType(arguments[0])", H264
    )
    chromium.execute_async_script(DROP, base64.b64encode(out.getvalue()).decode(), "crop.jpg")

    def first_card(d: Any) -> Any:
        if d.find_element(By.ID, "status").get_attribute("class") == "error":
            raise AssertionError(d.find_element(By.ID, "status").text)
        cards = d.find_elements(By.CSS_SELECTOR, ".card")
        loaded = cards and d.execute_script(
            "const i = arguments[0].querySelector('img'); return i.complete && i.naturalWidth",
            cards[0],
        )
        return cards[0] if loaded else False

    card = WebDriverWait(chromium, WAIT).until(first_card)
    hit = chromium.execute_script("return state.hits[0]")
    assert hit["path"] == str(clip) and 4.0 <= hit["time"] < 8.0  # the coffee shot
    tenths = round(hit["time"] * 10)
    badge = card.find_element(By.CSS_SELECTOR, ".clock").text
    assert badge == f"\u25b6 {tenths // 600:02d}:{tenths % 600 / 10:04.1f}"
    # the card's picture is the frame of the moment, not the video's first frame
    shown = chromium.execute_script(
        "const i = arguments[0].querySelector('img'); const c = document.createElement('canvas');"
        "[c.width, c.height] = [i.naturalWidth, i.naturalHeight];"
        "c.getContext('2d').drawImage(i, 0, 0); return c.toDataURL('image/png');",
        card,
    )
    assert _distance(_png(shown), frame_at(clip, hit["time"])) < 8

    card.click()
    WebDriverWait(chromium, WAIT).until(lambda d: d.find_element(By.ID, "clip").is_displayed())
    assert not chromium.find_element(By.ID, "large").is_displayed()  # the photo viewer's image
    # the player opens at 0 and then seeks: wait for the seek to land at the moment
    WebDriverWait(chromium, WAIT).until(lambda d: abs(_settled(d) - hit["time"]) <= 0.5)
    on_screen = _png(chromium.execute_script(SHOWN))
    assert on_screen.size == (320, 240)  # decoded by the browser, at the video's size
    assert _distance(on_screen, frame_at(clip, hit["time"])) < 8
    assert _distance(on_screen, frame_at(clip, 0.0)) > 30
    assert "at 00:0" in chromium.find_element(By.ID, "why").text

    marks = WebDriverWait(chromium, WAIT).until(
        lambda d: (found := d.execute_script(STRIP)) and len(found) == 5 and found
    )
    assert [m["time"] for m in marks] == [0.0, 2.0, 4.0, 6.0, 8.0]  # one per sampled frame
    (best,) = [m for m in marks if m["best"]]
    assert best["time"] == hit["time"] and best["moment"]
    assert best["height"] == max(m["height"] for m in marks)  # the best score stands tallest
    assert min(m["height"] for m in marks) < best["height"] / 2
    pins = chromium.find_elements(By.CSS_SELECTOR, "#strip .pin")
    assert len(pins) == len(hit["moments"])
    assert len(chromium.find_elements(By.CSS_SELECTOR, "#strip .pin.best")) == 1

    strip = chromium.find_element(By.ID, "strip")
    assert abs(strip.size["width"] - chromium.find_element(By.ID, "clip").size["width"]) <= 1
    window = chromium.get_window_size()
    chromium.set_window_size(1000, 660)  # the README's picture: small, the viewer's parts legible
    try:
        WebDriverWait(chromium, WAIT).until(
            lambda d: (
                strip.size["width"] < 700
                and d.execute_script("return document.getElementById('clip').readyState") >= 3
            )
        )
        time.sleep(0.5)  # the player's loading sign fades out
        screenshot(chromium, "video", tmp_path, colours=256)
    finally:
        chromium.set_window_size(window["width"], window["height"])
    WebDriverWait(chromium, WAIT).until(lambda d: strip.size["width"] > 700)
    # a click a quarter of the way along seeks to a quarter of the 12 s: the astronaut again
    quarter = -strip.size["width"] // 4  # from the strip's centre
    ActionChains(chromium).move_to_element_with_offset(strip, quarter, 0).click().perform()
    WebDriverWait(chromium, WAIT).until(lambda d: abs(_settled(d) - 3.0) <= 0.5)
    playhead = chromium.find_element(By.ID, "playhead").value_of_css_property("left")
    assert abs(float(playhead.removesuffix("px")) - strip.size["width"] / 4) <= 3

    chromium.find_element(By.ID, "close").click()
    left = chromium.execute_script(
        "const c = document.getElementById('clip');"
        "return [c.getAttribute('src'), c.paused, c.networkState, c.readyState]"
    )
    # the file let go, nothing playing behind the page: no src, paused, no network resource
    # (EMPTY, or NO_SOURCE once a loaded machine's Chromium has run its source selection)
    src, paused, network, ready = left
    assert (src, paused, ready) == (None, True, 0) and network in (0, 3), left


def test_words_find_the_moment_and_the_strip_shows_the_frames_unscored(
    chromium: Any, video_site: Any
) -> None:
    address, clip = video_site
    # the CNN matches words to labels: no vector, so the strip marks the frames without scores
    chromium.get(f"{address}/?q=espresso&kind=frame")
    card = WebDriverWait(chromium, WAIT).until(
        lambda d: (cards := d.find_elements(By.CSS_SELECTOR, ".card")) and cards[0]
    )
    assert chromium.find_element(By.ID, "kind").get_attribute("value") == "frame"
    hit = chromium.execute_script("return state.hits[0]")
    assert hit["path"] == str(clip) and 4.0 <= hit["time"] < 8.0
    assert card.find_element(By.CSS_SELECTOR, ".clock").text.startswith("\u25b6 00:0")
    card.click()
    WebDriverWait(chromium, WAIT).until(lambda d: abs(_settled(d) - hit["time"]) <= 0.5)
    marks = WebDriverWait(chromium, WAIT).until(
        lambda d: (found := d.execute_script(STRIP)) and len(found) == 5 and found
    )
    assert len({m["height"] for m in marks}) == 1  # no scores to tell them apart
    assert [m["time"] for m in marks if m["best"]] == [hit["time"]]
    chromium.find_element(By.ID, "close").click()
