"""The map file `searchapp map` writes, opened from disk in headless Chromium: WebGL draws the
points, hovering one shows its thumbnail, a shift-drag lasso lists the paths it caught."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait

from searchapp.web.map_page import map_html, thumbnails_for
from tests.browser.conftest import screenshot
from tests.integration.helpers import index

WAIT = 60

COUNT_INKED = """
const gl = document.querySelector('.sa-map-gl');
const copy = document.createElement('canvas');
copy.width = gl.width; copy.height = gl.height;
const ctx = copy.getContext('2d');
ctx.drawImage(gl, 0, 0);
const pixels = ctx.getImageData(0, 0, copy.width, copy.height).data;
let inked = 0;
for (let i = 0; i < pixels.length; i += 4) {
  if (pixels[i] + pixels[i + 1] + pixels[i + 2] < 700) inked++;
}
return inked;
"""


def lasso_everything(driver: Any, overlay: Any, margin: int = 6) -> None:
    """Shift-drag a lasso around the whole view, as a user draws one."""
    size = overlay.size
    half_w, half_h = size["width"] / 2 - margin, size["height"] / 2 - margin
    corners = [(-half_w, -half_h), (half_w, -half_h), (half_w, half_h), (-half_w, half_h)]
    actions = ActionChains(driver).key_down(Keys.SHIFT)
    actions.move_to_element_with_offset(overlay, int(corners[0][0]), int(corners[0][1]))
    actions.click_and_hold()
    for cx, cy in [*corners[1:], corners[0]]:
        actions.move_to_element_with_offset(overlay, int(cx), int(cy))
    actions.release().key_up(Keys.SHIFT).perform()


def test_the_map_draws_hovers_with_thumbnails_and_lassoes_paths(
    chromium: Any, library: Any, photos: Path, tmp_path: Path
) -> None:
    index(library, photos)
    points = library.map_points()
    page = tmp_path / "map.html"
    page.write_text(map_html(points, "folder", thumbnails_for(library, points, 100)))
    chromium.get(page.as_uri())
    WebDriverWait(chromium, WAIT).until(lambda d: d.execute_script("return !!window.searchappMap"))
    assert chromium.execute_script("return window.searchappMap.points") == 5
    assert chromium.execute_script(COUNT_INKED) > 100  # WebGL drew the points

    overlay = chromium.find_element(By.CSS_SELECTOR, ".sa-map-overlay")
    size = overlay.size
    # the screen place of the first point (shuffled order: whichever photo that is)
    x, y = chromium.execute_script(
        "const m = window.searchappMap; const s = window.SEARCHAPP_MAP;"
        "const xs = new Float32Array(Uint8Array.from(atob(s.x), c => c.charCodeAt(0)).buffer);"
        "const ys = new Float32Array(Uint8Array.from(atob(s.y), c => c.charCodeAt(0)).buffer);"
        "return m.toScreen(xs[0], ys[0]);"
    )
    ActionChains(chromium).move_to_element_with_offset(
        overlay, int(x - size["width"] / 2), int(y - size["height"] / 2)
    ).perform()
    tip = chromium.find_element(By.CSS_SELECTOR, ".sa-map-tip")
    WebDriverWait(chromium, WAIT).until(lambda d: tip.is_displayed())
    image = tip.find_element(By.TAG_NAME, "img")
    WebDriverWait(chromium, WAIT).until(
        lambda d: d.execute_script(
            "return arguments[0].complete && arguments[0].naturalWidth", image
        )
    )
    first_path = chromium.execute_script("return window.SEARCHAPP_MAP.paths[0]")
    assert first_path in tip.text and first_path.startswith(str(photos))
    screenshot(chromium, "map-hover", tmp_path)

    lasso_everything(chromium, overlay)
    panel = chromium.find_element(By.CSS_SELECTOR, ".sa-map-selection")
    WebDriverWait(chromium, WAIT).until(lambda d: panel.is_displayed())
    assert panel.text.startswith("5 selected")
    listed = panel.find_element(By.TAG_NAME, "textarea").get_attribute("value").split("\n")
    assert sorted(listed) == sorted(points.paths)


def test_the_web_apps_map_filters_the_grid_to_a_lasso(
    chromium: Any, library: Any, photos: Path, tmp_path: Path
) -> None:
    from searchapp.web.app import create_app
    from tests.browser.chromium import serve

    index(library, photos)
    with serve(create_app(library)) as address:
        chromium.get(f"{address}/map")
        WebDriverWait(chromium, WAIT).until(
            lambda d: d.execute_script("return !!window.searchappMap")
        )
        assert chromium.execute_script("return window.searchappMap.points") == 5
        assert chromium.execute_script(COUNT_INKED) > 100
        grid = chromium.find_element(By.ID, "map-grid")
        assert grid.find_elements(By.TAG_NAME, "figure") == []
        lasso_everything(chromium, chromium.find_element(By.CSS_SELECTOR, ".sa-map-overlay"))
        WebDriverWait(chromium, WAIT).until(
            lambda d: len(grid.find_elements(By.TAG_NAME, "figure")) == 5
        )
        assert chromium.find_element(By.ID, "map-selected").text == "5 photos selected"
        images = grid.find_elements(By.TAG_NAME, "img")
        WebDriverWait(chromium, WAIT).until(
            lambda d: all(d.execute_script("return arguments[0].naturalWidth", i) for i in images)
        )
        screenshot(chromium, "web-map", tmp_path)
