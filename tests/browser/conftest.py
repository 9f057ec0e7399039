"""A real server on a free port, and a real headless Chromium driven by Selenium.

CI installs Debian's `chromium` and `chromium-driver` (.ci/run) and sets CI, and there these
tests never skip; a developer's machine without them skips, saying what to install."""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

INSTALL = "apt-get install -y chromium chromium-driver"


def _binaries() -> tuple[str, str] | None:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    return (browser, driver) if browser and driver else None


@pytest.fixture(scope="session")
def chromium() -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    found = _binaries()
    if found is None:
        if os.environ.get("CI"):
            pytest.fail(f"no chromium or chromedriver on PATH: {INSTALL}")
        pytest.skip(f"no chromium or chromedriver on PATH ({INSTALL})")
    browser, driver_path = found
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for argument in (
        "--headless=new",
        "--no-sandbox",  # CI runs as root
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1400,1000",
    ):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


@contextmanager
def serve(app: Any) -> Iterator[str]:
    """Serve `app` from a thread on 127.0.0.1 and a free port; yields its address."""
    import uvicorn

    listening = socket.socket()
    listening.bind(("127.0.0.1", 0))
    listening.listen(64)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listening]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the test server did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{listening.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        listening.close()


def screenshot(driver: Any, name: str, fallback: Any) -> None:
    """Save the page as NAME.png: in SEARCHAPP_SCREENSHOTS when set (the README's pictures are
    made so), else in the test's own folder; a page that drew nothing fails."""
    folder = os.environ.get("SEARCHAPP_SCREENSHOTS") or str(fallback)
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, f"{name}.png")
    driver.save_screenshot(path)
    assert os.path.getsize(path) > 10_000, f"{path}: an empty page"
