"""The web app's speed: what `/api/search` adds to `Library.search` at 100,000 photos, and how soon
the first screen of 50 thumbnails is complete in Chromium on real 12 MP phone photos.

    python benchmarks/web_speed.py [--photos 100000] [--queries 200] [--rounds 3]

1. A synthetic library of --photos scene rows (dupes_scale.build: 1280-d clustered vectors,
   written through the catalog's own write path). The same queries (`like` an indexed photo,
   k=50, scene kind) go to `Library.search` in this process and, interleaved, to `/api/search`
   of `searchapp serve` in a process of its own (over loopback, one kept-alive connection); the
   added time is the API's p50 less the direct p50. (A server on a thread of the client's
   process measured 50 ms added: the threads took turns at the GIL.)
2. The 43 real phone photos of ../shared/data/phone12mp, twice, each copy with a few bytes after
   the JPEG's end (86 byte-distinct photos), indexed scene-only. Chromium (headless, 1920x1600,
   so that 50 thumbnails are on the first screen) opens `/?like_id=1`, and the time from
   navigation start until the first 50 thumbnails have loaded is read in the page. Each round
   starts a browser of its own and empties the library's thumbnail cache, then loads the page
   three times: cold (every thumbnail made), in a new browser with the thumbnails made (the
   server's cache full, the browser's empty), and once more in that browser (its own cache
   full, as on a return to the page). Each new browser first opens /api/stats, so that its own
   start is not counted. A browser told to skip its cache through DevTools
   (Network.enable) slowed every request it watched, so it is not used.

3. Scrolling the grid of all 100,000 results of a `like` search on the synthetic catalog: the
   frame times of 600 animation frames, each scrolling 1,000 px (about 40 rows of cards), the
   cards in the page meanwhile, and the time until the last result is on screen when the page
   is scrolled to its end again and again (the kept ranking doubles up to all of them).

Writes results/web_speed.json.
"""

from __future__ import annotations

import argparse
import http.client
import re
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import numpy as np
from bench_results import scratch_folder, write_result
from dupes_scale import build
from index_throughput import copies

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
PHONE12MP = ROOT.parent / "shared" / "data" / "phone12mp"
FIRST_SCREEN = 50
ALL_LOADED = """
const done = arguments[arguments.length - 1];
const wanted = arguments[0];
(function check() {
  const images = [...document.querySelectorAll(".card img")].slice(0, wanted);
  if (images.length === wanted && images.every((i) => i.complete && i.naturalWidth > 0)) {
    done(performance.now());
  } else {
    setTimeout(check, 5);
  }
})();
"""


def _ms(seconds: list[float]) -> dict[str, float]:
    values = sorted(1000 * s for s in seconds)
    return {
        "p50": round(statistics.median(values), 2),
        "p95": round(values[int(0.95 * (len(values) - 1))], 2),
    }


@contextmanager
def serving(library: Path) -> Iterator[str]:
    """`searchapp serve` as a user starts it, in a process of its own; yields its address."""
    command = [sys.executable, "-m", "searchapp", "serve", "--library", str(library), "--port", "0"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        line = process.stdout.readline() if process.stdout else ""
        found = re.search(r"at (http://\S+) \(Ctrl-C stops\)", line)
        if not found:
            raise SystemExit(f"searchapp serve printed no address: {line!r}")
        yield found.group(1).rstrip("/")
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=60)


def api_overhead(folder: Path, size: int, queries: int) -> dict[str, Any]:
    from searchapp.library import Library

    lib = Library(folder / "lib", create=False)
    rng = np.random.default_rng(0)
    paths = [f"/synthetic/{row:07d}.jpg" for row in rng.choice(size, queries + 5, replace=False)]
    direct: list[float] = []
    api: list[float] = []
    with serving(folder / "lib") as address:
        where = urlsplit(address)
        connection = http.client.HTTPConnection(where.hostname, where.port)
        for number, path in enumerate(paths):
            started = time.perf_counter()
            found = lib.search(like=path, k=50, kinds=("scene",), verify=False)
            took = time.perf_counter() - started
            params = {"like": path, "k": 50, "kind": "scene", "verify": "false"}
            started = time.perf_counter()
            connection.request("GET", "/api/search?" + urlencode(params))
            answer = connection.getresponse()
            body = answer.read()
            api_took = time.perf_counter() - started
            assert answer.status == 200, body[:200]
            assert body.count(b'"thumb"') == len(found.hits) == 50
            if number >= 5:  # the first ones load the index and warm the caches
                direct.append(took)
                api.append(api_took)
    lib.close()
    direct_ms, api_ms = _ms(direct), _ms(api)
    added = [a - d for a, d in zip(api, direct, strict=True)]
    return {
        "photos": size,
        "queries": queries,
        "library_search_ms": direct_ms,
        "api_search_ms": api_ms,
        "added_p50_ms": round(api_ms["p50"] - direct_ms["p50"], 2),
        "added_paired_median_ms": round(1000 * statistics.median(added), 2),
    }


SCROLL = """
const done = arguments[arguments.length - 1];
const [step, frames] = [arguments[0], arguments[1]];
const gaps = [];
let last = performance.now();
function frame(now) {
  gaps.push(now - last);
  last = now;
  window.scrollBy(0, step);
  if (gaps.length < frames) requestAnimationFrame(frame);
  else done({ gaps, cards: document.querySelectorAll(".card").length, y: window.scrollY });
}
requestAnimationFrame(frame);
"""


def scrolling(folder: Path, size: int) -> dict[str, Any]:
    """Frame times while a grid of `size` results scrolls, and how long the last one takes to
    reach. The photos' files do not exist: their thumbnails answer 410 and show as broken."""
    from tests.browser.chromium import binaries

    found = binaries()
    if found is None:
        raise SystemExit("no chromium or chromedriver: apt-get install -y chromium chromium-driver")
    with serving(folder / "lib") as address:
        driver = fresh_browser(found, address)
        try:
            driver.get(f"{address}/?like=/synthetic/0000000.jpg&kind=scene")
            started = time.perf_counter()
            while not driver.execute_script("return state.known >= 50"):
                time.sleep(0.01)
            first = time.perf_counter() - started
            # 600 frames, 1,000 px each: the first 25,000 or so results
            scrolled = driver.execute_async_script(SCROLL, 1000, 600)
            started = time.perf_counter()  # a fling outruns the pages: until they show
            while not driver.execute_script("return document.querySelectorAll('.card').length"):
                time.sleep(0.01)
            filled = time.perf_counter() - started
            started = time.perf_counter()
            last = size - 2  # all but the photo asked about; indexes from 0
            while not driver.execute_script(
                "window.scrollTo(0, document.documentElement.scrollHeight);"
                f"return !!document.querySelector('.card[data-index=\"{last}\"]')"
            ):
                time.sleep(0.02)
            to_end = time.perf_counter() - started
            cards = driver.execute_script("return document.querySelectorAll('.card').length")
        finally:
            driver.quit()
    gaps = sorted(scrolled["gaps"][1:])
    return {
        "results": size - 1,
        "first_page_s": round(first, 3),
        "frames": len(gaps),
        "frame_ms_p50": round(statistics.median(gaps), 1),
        "frame_ms_p95": round(gaps[int(0.95 * (len(gaps) - 1))], 1),
        "frame_ms_max": round(gaps[-1], 1),
        "cards_in_page": scrolled["cards"],
        "scrolled_px": scrolled["y"],
        "filled_after_the_fling_s": round(filled, 2),
        "to_the_last_result_s": round(to_end, 1),
        "cards_in_page_at_the_end": cards,
    }


def fresh_browser(found: tuple[str, str], address: str) -> Any:
    """A new Chromium with an empty cache that has been running a moment: its first navigation
    ever (process start, first connection) is not what a user opening the page waits for."""
    from tests.browser.chromium import start_chromium

    driver = start_chromium(*found, window="1920,1600")
    driver.set_script_timeout(120)
    driver.get(f"{address}/api/stats")  # neither the page, its scripts, nor a thumbnail
    return driver


def first_screen(rounds: int) -> dict[str, Any]:
    import shutil

    from searchapp.ingest.pipeline import IndexOptions
    from searchapp.ingest.regions import RegionOptions
    from searchapp.library import Library
    from tests.browser.chromium import binaries

    found = binaries()
    if found is None:
        raise SystemExit("no chromium or chromedriver: apt-get install -y chromium chromium-driver")
    scratch = scratch_folder("web-speed-screen-")
    photos = sorted(PHONE12MP.glob("*.jpg")) + sorted(PHONE12MP.glob("*.JPG"))
    folder = copies(photos, 2, scratch)
    lib = Library(scratch / "lib")
    options = IndexOptions(regions=RegionOptions(kinds=("scene",)))
    summary = lib.index([str(folder)], options=options)
    assert summary.new == 2 * len(photos), summary
    lib.close()
    result: dict[str, Any] = {"photos": summary.new, "rounds": rounds}
    thumbs = scratch / "lib" / "thumbs"
    with serving(scratch / "lib") as address:
        page = f"{address}/?like_id=1"
        times: dict[str, list[float]] = {"cold": [], "server_cached": [], "browser_cached": []}
        for _ in range(rounds):
            # a browser of its own each round, so that its cache starts empty
            driver = fresh_browser(found, address)
            try:
                shutil.rmtree(thumbs, ignore_errors=True)
                for state in times:  # cold; then the server's cache full; then the browser's
                    if state == "server_cached":
                        driver.quit()
                        driver = fresh_browser(found, address)
                    driver.get("about:blank")
                    driver.get(page)
                    times[state].append(driver.execute_async_script(ALL_LOADED, FIRST_SCREEN))
                    made = len(list(thumbs.rglob("*.jpg")))
                    assert made >= FIRST_SCREEN, f"{made} thumbnails in the cache"
            finally:
                driver.quit()
        for state, values in times.items():
            result[f"{state}_ms"] = [round(t) for t in values]
            result[f"{state}_median_ms"] = round(statistics.median(values))
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--photos", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--out", type=Path, default=ROOT / "benchmarks" / "results" / "web_speed.json"
    )
    args = parser.parse_args()
    folder = scratch_folder("web-speed-api-")
    build(folder / "lib", args.photos, 1280)
    overhead = api_overhead(folder, args.photos, args.queries)
    print(
        f"/api/search at {args.photos} photos: Library.search p50 "
        f"{overhead['library_search_ms']['p50']} ms, through the API "
        f"{overhead['api_search_ms']['p50']} ms: {overhead['added_p50_ms']} ms added"
    )
    scroll = scrolling(folder, args.photos)
    print(
        f"scrolling {scroll['results']} results: frames p50 {scroll['frame_ms_p50']} ms, p95 "
        f"{scroll['frame_ms_p95']} ms, longest {scroll['frame_ms_max']} ms; the last result "
        f"reached in {scroll['to_the_last_result_s']} s; the rows under a fling filled in "
        f"{scroll['filled_after_the_fling_s']} s"
    )
    screen = first_screen(args.rounds)
    print(
        f"first screen of {FIRST_SCREEN} thumbnails, {screen['photos']} real 12 MP photos: cold "
        f"{screen['cold_median_ms']} ms, thumbnails made {screen['server_cached_median_ms']} ms, "
        f"and in the browser's cache {screen['browser_cached_median_ms']} ms (medians of "
        f"{args.rounds})"
    )
    write_result(
        args.out,
        {
            "api_overhead": overhead,
            "first_screen": screen,
            "scrolling": scroll,
            "photo_set": "real photos (phone12mp), synthetic 100k catalog",
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
