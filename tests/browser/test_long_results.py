"""Thousands of results in headless Chromium: the grid keeps only the rows near the screen,
and scrolling reaches the last result, fetched page by page from one kept ranking."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from searchapp.library import Library
from searchapp.records import (
    CatalogBatch,
    EncoderIdentity,
    FileStat,
    ImageMeta,
    NewImage,
    RegionData,
)
from searchapp.web.app import create_app
from tests.browser.chromium import serve

PHOTOS = 5000
DIM = 32


@pytest.fixture(scope="module")
def address(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A catalog of PHOTOS rows with random scene vectors; their files do not exist (their
    thumbnails answer 410), which a grid of results does not need."""
    lib = Library(tmp_path_factory.mktemp("long") / "lib")
    lib.catalog.set_encoder_identity(EncoderIdentity("cnn:efficientnet-lite0", "test", DIM, "-"))
    vectors = np.random.default_rng(0).normal(size=(PHOTOS, DIM)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    batch = CatalogBatch()
    for row, vector in enumerate(vectors):
        meta = ImageMeta(
            width=400, height=300, format="JPEG", taken_at=1.6e9 + row, taken_source="exif"
        )
        stat = FileStat(f"/synthetic/{row:05d}.jpg", 1000, row)
        batch.new.append(
            NewImage(stat, f"{row:032x}", meta, [RegionData("scene", (0, 0, 400, 300), vector)])
        )
    lib.catalog.apply(batch)
    with serve(create_app(lib)) as served:
        yield served
    lib.close()


def _shown(driver: Any) -> list[int]:
    return driver.execute_script(
        "return [...document.querySelectorAll('.card')].map((c) => Number(c.dataset.index))"
    )


def test_scrolling_to_the_end_of_thousands_keeps_few_cards(chromium: Any, address: str) -> None:
    chromium.get(f"{address}/?like=/synthetic/00000.jpg&kind=scene")
    status = chromium.find_element(By.ID, "status")
    WebDriverWait(chromium, 60).until(lambda d: "photos" in status.text)
    most = 0

    def at_the_end(driver: Any) -> bool:
        """Scrolled down again; the last result is in the page. (All but the photo asked
        about: PHOTOS - 1 results.)"""
        nonlocal most
        driver.execute_script("window.scrollTo(0, document.documentElement.scrollHeight)")
        shown = _shown(driver)
        most = max(most, len(shown))
        assert "error" not in (status.get_attribute("class") or ""), status.text
        return status.text.startswith(f"{PHOTOS - 1} photos") and PHOTOS - 2 in shown

    WebDriverWait(chromium, 120, poll_frequency=0.05).until(at_the_end)
    assert most < 300, f"{most} cards in the page at once: the grid is not virtual"
    last = chromium.find_element(By.CSS_SELECTOR, f'.card[data-index="{PHOTOS - 2}"]')
    assert (
        last.find_element(By.CSS_SELECTOR, ".path").get_attribute("title").startswith("/synthetic/")
    )
    chromium.execute_script("window.scrollTo(0, 0)")
    WebDriverWait(chromium, 60).until(lambda d: 0 in _shown(d))
    names = chromium.execute_script(
        "return [...document.querySelectorAll('.card .path')].map((p) => p.title)"
    )
    assert len(set(names)) == len(names)  # no result twice
