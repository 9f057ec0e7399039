"""A real headless Chromium driven by Selenium, for the browser tests.

CI installs Debian's `chromium` and `chromium-driver` (.ci/run) and sets CI, and there these
tests never skip; a developer's machine without them skips, saying what to install."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

from tests.browser.chromium import INSTALL, binaries, start_chromium


@pytest.fixture(scope="session")
def chromium() -> Iterator[Any]:
    found = binaries()
    if found is None:
        if os.environ.get("CI"):
            pytest.fail(f"no chromium or chromedriver on PATH: {INSTALL}")
        pytest.skip(f"no chromium or chromedriver on PATH ({INSTALL})")
    driver = start_chromium(*found)
    yield driver
    driver.quit()


def screenshot(driver: Any, name: str, fallback: Any, colours: int | None = None) -> None:
    """Save the page as NAME.png: in SEARCHAPP_SCREENSHOTS when set (the README's pictures are
    made so), else in the test's own folder; a page that drew nothing fails. With `colours`, in
    a palette of that many: a page that is mostly one photo is a third of the size so."""
    folder = os.environ.get("SEARCHAPP_SCREENSHOTS") or str(fallback)
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, f"{name}.png")
    driver.save_screenshot(path)
    assert os.path.getsize(path) > 10_000, f"{path}: an empty page"
    if colours is not None:
        from PIL import Image

        with Image.open(path) as page:
            fewer = page.convert("RGB").quantize(colours, method=Image.Quantize.MEDIANCUT)
        fewer.save(path, optimize=True)
