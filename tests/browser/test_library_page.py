"""The library page in headless Chromium: counts, and an index run watched to its end."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select, WebDriverWait

from searchapp.web.app import create_app
from tests.browser.chromium import serve
from tests.browser.conftest import screenshot
from tests.integration.helpers import index

WAIT = 60


def test_an_index_run_started_and_watched_from_the_page(
    chromium: Any, library: Any, photos: Path, tmp_path: Path
) -> None:
    index(library, photos / "animals")
    for number in range(6):
        shutil.copy(photos / "astronaut.jpg", photos / "animals" / f"astronaut{number}.jpg")
    with serve(create_app(library, folders=[str(photos)])) as address:
        chromium.get(f"{address}/library")
        counts = chromium.find_element(By.ID, "counts")
        WebDriverWait(chromium, WAIT).until(lambda d: "photos" in counts.text)
        assert "photos 1 regions" in counts.text.replace("\n", " ")
        folders = Select(chromium.find_element(By.ID, "index-folder"))
        assert {o.text for o in folders.options} == {str(photos), str(photos / "animals")}
        folders.select_by_visible_text(str(photos))
        chromium.find_element(By.ID, "index-start").click()
        text = chromium.find_element(By.ID, "run-text")
        seen: set[str] = set()

        def finished(driver: Any) -> bool:
            seen.add(text.text)
            return text.text.startswith("done:")

        WebDriverWait(chromium, WAIT, poll_frequency=0.05).until(finished)
        assert "10 new" in text.text and "0 failed" in text.text
        assert any(" photos/s, " in line and "left" in line for line in seen)  # rate and ETA shown
        bar = chromium.find_element(By.ID, "run-bar")
        assert bar.get_attribute("value") == bar.get_attribute("max")
        WebDriverWait(chromium, WAIT).until(lambda d: "photos 11" in counts.text.replace("\n", " "))
        screenshot(chromium, "library-page", tmp_path)
