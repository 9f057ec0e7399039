"""The search page in headless Chromium: words, a dropped crop, a result opened with its box,
a box drawn on a photo; and a screenshot of a results page for the README."""

from __future__ import annotations

import base64
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait

from searchapp.web.app import create_app
from tests.browser.chromium import serve
from tests.browser.conftest import screenshot

WAIT = 60  # seconds: the first image query loads the encoder in the server

DROP = """
const [b64, name, done] = arguments;
const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
const transfer = new DataTransfer();
transfer.items.add(new File([bytes], name, { type: "image/jpeg" }));
document.dispatchEvent(new DragEvent("drop", { dataTransfer: transfer, bubbles: true }));
done();
"""


HEAT_ALPHAS = """
const canvas = document.getElementById("heat-canvas");
if (!canvas) return null;
const data = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
return [...data.filter((_, i) => i % 4 === 3)];
"""


@pytest.fixture(scope="module")
def address(sample_library: Any) -> Iterator[str]:
    lib, _photos = sample_library
    with serve(create_app(lib)) as address:
        yield address


def _results(driver: Any) -> list[dict[str, Any]]:
    """The cards shown once their thumbnails have loaded: name, verdict, box drawn or not."""

    def ready(d: Any) -> list[dict[str, Any]] | bool:
        if d.find_element(By.ID, "status").get_attribute("class") == "error":
            raise AssertionError(d.find_element(By.ID, "status").text)
        cards = d.execute_script(
            """return [...document.querySelectorAll('.card')].map((c) => ({
                name: c.querySelector('.path').title.split('/').pop(),
                loaded: c.querySelector('img').complete && c.querySelector('img').naturalWidth > 0,
                box: !!c.querySelector('.box.win'),
                badge: c.querySelector('.badge') ? c.querySelector('.badge').textContent : null,
            }))"""
        )
        return cards if cards and all(card["loaded"] for card in cards) else False

    return WebDriverWait(driver, WAIT).until(ready)


def test_words_show_thumbnails_and_the_address_holds_the_query(chromium: Any, address: str) -> None:
    chromium.get(f"{address}/?q=cat")
    cards = _results(chromium)
    assert cards[0]["name"] in ("cat.jpg", "cat_small.jpg")
    assert "label matching" in chromium.find_element(By.ID, "notes").text
    chromium.find_elements(By.CSS_SELECTOR, ".card")[0].click()  # its copy is in the viewer
    copies = chromium.find_element(By.ID, "copies")
    # the page's "-" until the viewer asks, "looking..." while it does
    WebDriverWait(chromium, WAIT).until(lambda d: copies.text not in ("", "-", "looking..."))
    other = ({"cat.jpg", "cat_small.jpg"} - {cards[0]["name"]}).pop()
    assert copies.text.startswith(f"near: {other}")
    chromium.find_element(By.ID, "close").click()
    box = chromium.find_element(By.ID, "q")
    box.clear()
    box.send_keys("espresso", Keys.ENTER)
    WebDriverWait(chromium, WAIT).until(lambda d: "q=espresso" in d.current_url)
    cards = _results(chromium)
    assert cards[0]["name"] in ("coffee.jpg", "coffee_copy.png")


def test_a_dropped_crop_finds_its_photo_and_shows_the_box(
    chromium: Any, address: str, sample_library: Any, tmp_path: Path
) -> None:
    _lib, photos = sample_library
    with Image.open(photos / "cameraman.jpg") as photo:
        crop = photo.crop((100, 60, 300, 260)).convert("RGB")
    out = io.BytesIO()
    crop.save(out, "JPEG", quality=90)
    chromium.get(f"{address}/")
    chromium.execute_async_script(DROP, base64.b64encode(out.getvalue()).decode(), "crop.jpg")
    cards = _results(chromium)
    assert cards[0] == {"name": "cameraman.jpg", "loaded": True, "box": True, "badge": "pixels"}
    screenshot(chromium, "search-page", tmp_path)

    chromium.find_elements(By.CSS_SELECTOR, ".card")[0].click()
    viewer = chromium.find_element(By.ID, "viewer")
    WebDriverWait(chromium, WAIT).until(lambda d: viewer.is_displayed())
    WebDriverWait(chromium, WAIT).until(
        lambda d: d.execute_script("return document.getElementById('large').naturalWidth") > 0
    )
    assert chromium.find_element(By.ID, "name").text.endswith("cameraman.jpg")
    copies = chromium.find_element(By.ID, "copies")
    WebDriverWait(chromium, WAIT).until(lambda d: copies.text not in ("", "-", "looking..."))
    assert copies.text == "none found"  # the cameraman has no copy among the samples
    assert "confirmed by the pixels" in chromium.find_element(By.ID, "why").text
    match = chromium.find_element(By.CSS_SELECTOR, "#boxes .box.win")
    assert match.size["width"] > 20 and match.size["height"] > 20
    # a tile won: the heat map warms where the tiles score best, and leaves most of the photo
    alphas = WebDriverWait(chromium, WAIT).until(lambda d: d.execute_script(HEAT_ALPHAS))
    assert max(alphas) == 170  # the best tile's cells
    warm = sum(1 for alpha in alphas if alpha > 0) / len(alphas)
    assert 0 < warm < 0.5, f"{warm:.0%} of the photo warmed: no place stands out"
    screenshot(chromium, "viewer", tmp_path)
    chromium.find_element(By.ID, "less-like").click()  # the same image, minus this photo
    WebDriverWait(chromium, WAIT).until(lambda d: "minus_id=" in d.current_url)
    assert _results(chromium)[0]["name"] != "cameraman.jpg"


def test_a_box_drawn_on_a_photo_searches_with_that_part(chromium: Any, address: str) -> None:
    chromium.get(f"{address}/?q=rocket&kind=scene")
    _results(chromium)
    chromium.find_elements(By.CSS_SELECTOR, ".card")[0].click()
    large = chromium.find_element(By.ID, "large")
    WebDriverWait(chromium, WAIT).until(
        lambda d: (
            large.is_displayed() and d.execute_script("return arguments[0].naturalWidth", large)
        )
    )
    width, height = large.size["width"], large.size["height"]
    (
        ActionChains(chromium)
        .move_to_element_with_offset(large, -width // 6, -height // 6)
        .click_and_hold()
        .move_by_offset(width // 3, height // 3)
        .release()
        .perform()
    )
    WebDriverWait(chromium, WAIT).until(lambda d: "box=" in d.current_url)
    assert "photo=" in chromium.current_url
    cards = _results(chromium)
    assert cards[0]["name"] == "rocket.jpg" and cards[0]["badge"] == "pixels"
