"""The duplicates page in headless Chromium: the groups, a copy moved away and put back."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import WebDriverWait

from searchapp.library import Library
from searchapp.web.app import create_app
from tests.browser.chromium import serve
from tests.browser.conftest import screenshot
from tests.integration.helpers import index

WAIT = 60
SAMPLES = Path(__file__).resolve().parents[2] / "examples" / "sample_photos.py"


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, cnn_encoder: Any) -> Iterator[tuple]:
    """The README's sample photos, three of them copies, in a library of the test's own."""
    folder = tmp_path_factory.mktemp("dupes-page")
    photos = folder / "photos"
    subprocess.run([sys.executable, str(SAMPLES), str(photos)], check=True, capture_output=True)
    lib = Library(folder / "lib")
    lib._encoder = cnn_encoder
    lib.catalog.set_encoder_identity(cnn_encoder.identity)
    index(lib, photos)
    with serve(create_app(lib)) as address:
        yield address, photos, folder
    lib.close()


def _groups(driver: Any) -> list[dict[str, Any]]:
    return driver.execute_script(
        """return [...document.querySelectorAll('.group')].map((g) => ({
            moved: g.classList.contains('moved'),
            names: [...g.querySelectorAll('.copy')].map((c) => c.title.split('/').pop()),
            keep: g.querySelector('.copy.keep').title.split('/').pop(),
            facts: [...g.querySelectorAll('.copy dt')].map((d) => d.textContent),
        }))"""
    )


def test_a_copy_moved_away_from_the_review_and_put_back(chromium: Any, served: tuple) -> None:
    address, photos, folder = served
    chromium.get(f"{address}/dupes")
    WebDriverWait(chromium, WAIT).until(lambda d: len(_groups(d)) >= 2)
    groups = {group["keep"]: group for group in _groups(chromium)}
    cat = groups["cat.jpg"]
    assert sorted(cat["names"]) == ["cat.jpg", "cat_small.jpg"]
    assert {"bytes", "size"} <= set(cat["facts"]) and "camera" not in cat["facts"]
    assert "to free" in chromium.find_element(By.ID, "dupes-summary").text
    cat_group = next(
        g
        for g in chromium.find_elements(By.CSS_SELECTOR, ".group")
        if g.find_element(By.CSS_SELECTOR, ".copy.keep").get_attribute("title").endswith("/cat.jpg")
    )
    cat_group.find_element(By.CSS_SELECTOR, "button.difference").click()
    difference = cat_group.find_element(By.CSS_SELECTOR, "img.difference-image")
    WebDriverWait(chromium, WAIT).until(
        lambda d: d.execute_script("return arguments[0].naturalWidth", difference) == 451
    )  # the copy aligned onto the cat's own frame
    screenshot(chromium, "dupes-page", folder)
    aside = folder / "aside"
    move_to = chromium.find_element(By.ID, "move-to")
    move_to.clear()
    move_to.send_keys(str(aside))

    chromium.find_element(By.ID, "review").click()
    body = chromium.find_element(By.TAG_NAME, "body")
    while chromium.find_element(By.CSS_SELECTOR, ".group.current .copy.keep").get_attribute(
        "title"
    ) != str(photos / "cat.jpg"):
        body.send_keys("n")  # the next group, until the cat's is on screen
    body.send_keys("2" if cat["names"][1] == "cat_small.jpg" else "1")  # keep the small one
    assert chromium.find_element(By.CSS_SELECTOR, ".group.current .copy.keep").get_attribute(
        "title"
    ) == str(photos / "cat_small.jpg")
    body.send_keys("m")
    WebDriverWait(chromium, WAIT).until(expected_conditions.alert_is_present())
    alert = chromium.switch_to.alert
    assert "Move 1 photo" in alert.text
    alert.accept()
    undo = chromium.find_element(By.ID, "undo")
    WebDriverWait(chromium, WAIT).until(lambda d: undo.is_displayed())
    assert not (photos / "cat.jpg").exists()
    assert (aside / str(photos / "cat.jpg").lstrip("/")).exists()
    assert any(g["moved"] and g["keep"] == "cat_small.jpg" for g in _groups(chromium))

    undo.click()
    WebDriverWait(chromium, WAIT).until(lambda d: (photos / "cat.jpg").exists())
    WebDriverWait(chromium, WAIT).until(
        lambda d: "moved 1 back" in d.find_element(By.ID, "status").text
    )
    assert not any(g["moved"] for g in _groups(chromium))
