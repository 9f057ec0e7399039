"""The real CLI as a subprocess, as a user runs it."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from searchapp.library import Library, WriteLock
from tests.conftest import cli_env, sample_image, searchapp_here
from tests.integration.helpers import assert_consistent


def run(*args: str, env: dict[str, str] | None = None, check: bool = True):  # type: ignore[no-untyped-def]
    """The CLI in this process (conftest.searchapp_here); the tests of kills, pipes and
    start-up below start real subprocesses."""
    result = searchapp_here(*args, env=env)
    if check and result.returncode != 0:
        raise AssertionError(f"exit {result.returncode}\n{result.stdout}\n{result.stderr}")
    return result


@pytest.mark.both_catalogs
def test_index_rerun_move_search_stats_errors(
    photos: Path, tmp_path: Path, db_url: str | None
) -> None:
    env = cli_env(SEARCHAPP_DB=db_url) if db_url else None  # --db's default
    lib = str(tmp_path / "lib")
    (photos / "broken.jpg").write_bytes(b"\xff\xd8\xff garbage")
    first = run(
        "index",
        str(photos),
        "--library",
        lib,
        "--json",
        "--encoder",
        "cnn:efficientnet-lite0",
        env=env,
    )
    summary = json.loads(first.stdout)
    assert {k: summary[k] for k in ("new", "changed", "moved", "deleted", "failed")} == {
        "new": 5,
        "changed": 0,
        "moved": 0,
        "deleted": 0,
        "failed": 1,
    }
    assert summary["encoder"] == "cnn:efficientnet-lite0" and summary["images_per_second"] > 0
    assert 0 < summary["model_seconds"] < summary["seconds"]  # reported apart from the rate
    working = summary["seconds"] - summary["model_seconds"]
    assert summary["images_per_second"] == pytest.approx(5 / working, rel=0.02)
    assert f"searchapp: skipped {photos / 'broken.jpg'}:" in first.stderr
    assert (Path(lib) / "catalog.db").exists() == (db_url is None)  # the server's, if given

    second = json.loads(run("index", str(photos), "--library", lib, "--json", env=env).stdout)
    assert (second["unchanged"], second["failed"], second["embedded"]) == (5, 1, 0)

    (photos / "moved").mkdir()
    shutil.move(photos / "camera.jpg", photos / "moved" / "camera.jpg")
    third = json.loads(run("index", str(photos), "--library", lib, "--json", env=env).stdout)
    assert (third["moved"], third["new"], third["embedded"]) == (1, 0, 0)
    assert third["model_seconds"] == 0  # a move is followed by its hash: no model is loaded

    query = tmp_path / "query.jpg"
    with Image.open(photos / "things" / "coffee.jpg") as image:
        image.resize((200, 133)).save(query, quality=50)
    results = json.loads(
        run("search", "--image", str(query), "-k", "3", "--library", lib, "--json", env=env).stdout
    )
    top = results["results"][0]
    assert top["path"] == str(photos / "things" / "coffee.jpg")
    assert results["mode"] == "vector"
    fields = {"path", "score", "date", "labels", "tags", "region", "verified"}
    assert set(top) == fields | {"agreement", "inliers"}  # the check's evidence
    assert "espresso" in top["tags"]  # the coffee photo's labels from probability 0.1
    assert top["verified"] == "pixels"  # a resized copy of the query: the same pixels
    assert top["agreement"] >= 0.9 and isinstance(top["inliers"], int)
    assert len(top["labels"]) == 5 and set(top["labels"][0]) == {"name", "prob"}
    assert top["date"][:4].isdigit() and "T" in top["date"]
    # the scene's own surest class shows why it came
    assert top["region"] == {"kind": "scene", "bbox": [0, 0, 600, 400], "label": "espresso"}
    assert len(results["results"]) == 3

    table = run("search", "--image", str(query), "-k", "2", "--library", lib, env=env).stdout
    assert table.splitlines()[0].split() == ["rank", "score", "check", "date", "path", "region"]

    stats = json.loads(run("stats", "--library", lib, "--json", env=env).stdout)
    assert (stats["images"], stats["regions"]["scene"], stats["failures"]) == (5, 5, 1)
    assert stats["regions"]["tile"] > 0  # the two 512 px photos are large enough to tile
    assert stats["vectors"] == sum(stats["regions"].values())
    assert stats["encoder"]["name"] == "cnn:efficientnet-lite0" and stats["bytes_on_disk"] > 0

    # A reader that has gone (`searchapp stats | head -0`): a quiet exit 141, not a traceback.
    read_end, write_end = os.pipe()
    os.close(read_end)
    gone = subprocess.run(
        [sys.executable, "-m", "searchapp", "stats", "--library", lib],
        stdout=write_end,
        stderr=subprocess.PIPE,
        text=True,
        env=env or cli_env(),
        timeout=60,
    )
    os.close(write_end)
    assert (gone.returncode, gone.stderr) == (141, "")

    errors = json.loads(run("errors", "--library", lib, "--json", env=env).stdout)["errors"]
    assert [e["path"] for e in errors] == [str(photos / "broken.jpg")]

    noise = np.random.default_rng(3).integers(0, 255, (300, 400, 3), dtype=np.uint8)
    Image.fromarray(noise).save(photos / "new.jpg")
    line = run("index", str(photos), "--library", lib, env=env).stdout.strip()
    assert line.startswith("1 new, 0 changed") and " s of it loading (1 embedded, " in line

    (photos / "things" / "coffee.jpg").unlink()  # gone from disk, not yet from the library
    stale = run("search", "--image", str(query), "-k", "3", "--library", lib, env=env)
    assert stale.stdout.splitlines()[1].split()[4] == str(photos / "things" / "coffee.jpg")
    assert f"{photos / 'things' / 'coffee.jpg'} is no longer on disk; run `searchapp index`" in (
        stale.stderr
    )


def test_help_imports_nothing_heavy() -> None:
    code = (
        "import sys, searchapp.cli as c\n"
        "try:\n    c.main(['--help'])\nexcept SystemExit:\n    pass\n"
        "heavy = [m for m in ('torch', 'faiss', 'open_clip', 'cv2', 'PIL', 'numpy', 'sqlalchemy')"
        " if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, timeout=60)


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["index", "{photos}", "--encoder", "resnet"], 2, "valid: auto, cnn:efficientnet-lite0"),
        (["index", "{photos}", "--workers", "0"], 2, "must be at least 1"),
        (["search", "--image", "{photos}/nope.jpg"], 2, "does not exist"),
        (["search", "--image", "{photos}/camera.jpg", "-k", "0"], 2, "-k must be at least 1"),
        (["frobnicate"], 2, "invalid choice"),
        (["index", "{photos}", "--detector", "yolo"], 2, "valid: cam, torchvision:<name>, none"),
        (["index", "{photos}", "--regions", "scene,face"], 2, "valid: scene, object, tile"),
        (
            [
                "index",
                "{photos}",
                "--regions",
                "scene,object",
                "--detector",
                "torchvision:ssdlite320_mobilenet_v3_large",
                "--detector-weights",
                "{photos}/no.pth",
            ],
            6,
            "no.pth",
        ),
        (["search", "cat", "--kind", "face"], 2, "invalid choice: 'face'"),
        (["index", "{photos}", "--tile-scales", "0.5,2"], 2, "each scale must be between 0 and 1"),
        (["index", "{photos}", "--tile-overlap", "0.9"], 2, "must be between 0 and 0.75"),
    ],
)
def test_bad_flags_get_clear_messages(photos: Path, tmp_path: Path, args, code, message) -> None:  # type: ignore[no-untyped-def]
    filled = [a.replace("{photos}", str(photos)) for a in args]
    Library(tmp_path / "lib").close()  # an empty library, so that searches reach their flags
    result = run(*filled, "--library", str(tmp_path / "lib"), check=False)
    assert result.returncode == code
    assert message in result.stderr


@pytest.mark.parametrize(
    "command", [["search", "cat"], ["stats"], ["errors"], ["dupes"], ["rebuild-index"]]
)
def test_reading_a_library_that_does_not_exist_creates_nothing(
    tmp_path: Path, command: list[str]
) -> None:
    typo = tmp_path / "librray"
    result = run(*command, "--library", str(typo), check=False)
    assert result.returncode == 1 and f"no library at {typo}" in result.stderr
    assert not typo.exists()


def test_explicit_clip_without_weights_names_the_fix(photos: Path, tmp_path: Path) -> None:
    env = cli_env(HF_HUB_OFFLINE="1", HF_HUB_CACHE=str(tmp_path / "empty-hub"), HOME=str(tmp_path))
    # a subprocess: huggingface_hub reads its cache variables once, when first imported
    flags = ["--library", str(tmp_path / "lib"), "--encoder", "clip:ViT-B-32/laion2b_s34b_b79k"]
    result = subprocess.run(
        [sys.executable, "-m", "searchapp", "index", str(photos), *flags],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert result.returncode == 6
    assert "--clip-weights" in result.stderr


def test_busy_library_exits_non_zero(photos: Path, tmp_path: Path) -> None:
    lock = WriteLock(tmp_path / "lib")
    (tmp_path / "lib").mkdir()
    lock.acquire()
    try:
        result = run("index", str(photos), "--library", str(tmp_path / "lib"), check=False)
    finally:
        lock.release()
    assert result.returncode == 3 and "busy" in result.stderr


def test_a_search_while_a_first_run_indexes_says_so(tmp_path: Path) -> None:
    """A search of a library whose first run holds the write lock, before its first batch is
    in, is told to wait, not to run `index`."""
    library = tmp_path / "lib"
    Library(library).close()
    lock = WriteLock(library)
    lock.acquire()
    try:
        busy = run("search", "a dog", "--library", str(library), check=False)
    finally:
        lock.release()
    idle = run("search", "a dog", "--library", str(library), check=False)
    assert busy.returncode == idle.returncode != 0
    assert f"searchapp pid {os.getpid()} is indexing its first ones" in busy.stderr
    assert "is empty; run `searchapp index PATH` first" in idle.stderr


def many_photos(folder: Path, count: int) -> None:
    folder.mkdir()
    rng = np.random.default_rng(0)
    base = np.asarray(sample_image("astronaut"))
    for i in range(count):
        y, x = rng.integers(0, 256, size=2)
        Image.fromarray(base[y : y + 256, x : x + 256]).save(folder / f"p{i:03d}.jpg", quality=85)


def committed(db: Path) -> int:
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1) as conn:
            return int(conn.execute("SELECT count(*) FROM images").fetchone()[0])
    except sqlite3.Error:
        return 0


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT])
def test_killed_run_resumes_and_catalog_matches_index(tmp_path: Path, sig: int) -> None:
    total = 80  # the kill lands after 12; a second of work left, so the run cannot end first
    many_photos(tmp_path / "many", total)
    lib = tmp_path / "lib"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "searchapp",
            "index",
            str(tmp_path / "many"),
            "--library",
            str(lib),
            "--commit-every",
            "4",
            "--workers",
            "1",
            "--batch-size",
            "4",
            "-q",
            "--regions",
            "scene",
            "--encoder",
            "cnn:efficientnet-lite0",
        ],
        env=cli_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        # a shell starts background jobs with SIGINT ignored, which Python then keeps: give the
        # child the terminal's default, as a user pressing Ctrl-C has
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.monotonic() + 240
    while committed(lib / "catalog.db") < 12 and time.monotonic() < deadline:
        assert proc.poll() is None, proc.stderr.read()  # type: ignore[union-attr]
        time.sleep(0.02)
    proc.send_signal(sig)
    proc.wait(timeout=60)
    at_kill = committed(lib / "catalog.db")
    assert 12 <= at_kill < total, "the kill must land mid-run"
    if sig == signal.SIGINT:
        assert proc.returncode == 130, proc.stderr.read()  # type: ignore[union-attr]

    opened = Library(lib)
    try:
        opened.check_indexes()
        assert_consistent(opened)
    finally:
        opened.close()
    resumed = json.loads(
        run(
            "index", str(tmp_path / "many"), "--library", str(lib), "--json", "--regions", "scene"
        ).stdout
    )
    assert resumed["unchanged"] == at_kill
    assert resumed["new"] == total - at_kill
    final = Library(lib)
    try:
        assert final.stats().images == total
        assert_consistent(final)
    finally:
        final.close()


def test_search_words_like_combined_filters_and_paths_only(photos: Path, tmp_path: Path) -> None:
    lib = str(tmp_path / "lib")
    run(
        "index",
        str(photos),
        "--library",
        lib,
        "-q",
        "--encoder",
        "cnn:efficientnet-lite0",
        "--regions",
        "scene",
    )

    cat = run("search", "cat", "--library", lib, "--json")
    payload = json.loads(cat.stdout)
    assert payload["mode"] == "labels"
    assert payload["results"][0]["path"] == str(photos / "animals" / "cat.jpg")
    assert "label matching" in cat.stderr and "reindex --encoder clip:" in cat.stderr

    like = run(
        "search",
        "--like",
        str(photos / "camera.jpg"),
        "-k",
        "2",
        "--paths-only",
        "--library",
        lib,
    )
    lines = like.stdout.splitlines()
    assert len(lines) == 2 and str(photos / "camera.jpg") not in lines
    assert all(Path(line).is_file() for line in lines)

    combined = run(
        "search",
        "cat",
        "--like",
        str(photos / "astronaut.jpg"),
        "--weights",
        "1,0.5",
        "--folder",
        str(photos / "animals"),
        "--library",
        lib,
        "--json",
    )
    assert [r["path"] for r in json.loads(combined.stdout)["results"]] == [
        str(photos / "animals" / "cat.jpg")
    ]

    future = run(
        "search",
        "--like",
        str(photos / "camera.jpg"),
        "--after",
        "2999-01-01",
        "--library",
        lib,
        "--json",
    )
    assert json.loads(future.stdout)["results"] == []

    for args, message in (
        (["--like", str(photos / "camera.jpg"), "--after", "yesterday"], "wrong format"),
        (["kayak"], "no ImageNet label matches 'kayak'"),
        ([""], "empty search text"),
        (["cat", "--weights", "1,2"], "one per term"),
    ):
        result = run("search", *args, "--library", lib, check=False)
        assert result.returncode == 2, (args, result.stderr)
        assert message in result.stderr


def test_tile_flags_reach_the_tiles(photos: Path, tmp_path: Path) -> None:
    lib = str(tmp_path / "lib")
    tiles = [
        "--regions",
        "scene,tile",
        "--tile-scales",
        "0.5",
        "--tile-overlap",
        "0",
        "--max-tiles",
    ]
    run("index", str(photos), "--library", lib, *tiles, "2", "--encoder", "cnn:efficientnet-lite0")
    stats = json.loads(run("stats", "--library", lib, "--json").stdout)
    assert stats["regions"]["scene"] == 5
    assert 0 < stats["regions"]["tile"] <= 2 * 5  # a 2x2 grid at 1/2 without overlap, capped at 2
