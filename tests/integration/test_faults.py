"""The fault suite of issue 16: kill -9 at seeded points of `index`, `dupes --apply` and
`dupes --undo`, and a disk that fills up during a catalog commit, an index save and a move.
After every fault `searchapp check` says whether the catalog, the index files and the disk agree.

A full disk is real where it can be: as root (CI), a small tmpfs is mounted and filled at the
chosen moment. Elsewhere the same moment raises ENOSPC inside the subprocess instead (SQLite's
own SQLITE_FULL through max_page_count, the faiss and move errors as they read on a full disk).
"""

from __future__ import annotations

import errno
import functools
import hashlib
import json
import os
import queue
import random
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from PIL import Image

from searchapp.library import Library
from tests.conftest import SAMPLES, cli_env, searchapp_here
from tests.integration.helpers import index

REPO = Path(__file__).resolve().parents[2]
SEED = int(os.environ.get("SEARCHAPP_FAULTS_SEED", "16"))  # every random choice follows from it
# a commit per photo: a kill lands between any two of them
INDEX_FLAGS = (
    "--encoder", "cnn:efficientnet-lite0", "--commit-every", "1", "--batch-size", "1",
    "--workers", "1", "--threads", "1", "-q",
)  # fmt: skip
# kill -9 leaves the index files behind the catalog (a run saves them after its first commit
# and at its end; a cache that the next open rebuilds): `check` reports that, `--repair` mends it
CACHE_FINDINGS = {"index", "leftover"}

# `python -c FAULTS ARGS` is `searchapp ARGS` with the faults its environment asks for; only
# this subprocess changes, never the code under test. It tells the test where it is through
# lines "fault: ..." on stderr.
#   FAULT_FULL_AT  start | apply:N | save:N | move:N: the disk fills before that call
#   FAULT_FILL     a small filesystem to fill then (root); unset: ENOSPC is injected instead
#   FAULT_LEAVE    bytes left free on it: a nearly full disk
#   FAULT_MOVE_PAUSE  seconds each file move waits first, so a kill can land among the moves
#   FAULT_SAVE_PAUSE  seconds an index save waits once its temporary file is written
FAULTS = r"""
import errno, os, shutil, sys, time

from sqlalchemy import event
from sqlalchemy.pool import Pool

from searchapp.cli import main
from searchapp.store.catalog import Catalog

full_at = os.environ.get("FAULT_FULL_AT", "")
fill = os.environ.get("FAULT_FILL")
move_pause = float(os.environ.get("FAULT_MOVE_PAUSE", "0"))
save_pause = float(os.environ.get("FAULT_SAVE_PAUSE", "0"))
calls = {}
state = {"full": False}


def say(text):
    print(f"fault: {text}", file=sys.stderr, flush=True)


def make_full():
    state["full"] = True
    if fill:  # the real thing: write until the kernel refuses, then give back what is asked
        reserve = os.path.join(fill, "reserve")
        with open(reserve, "wb") as out:
            out.write(bytes(int(os.environ.get("FAULT_LEAVE", "0"))))
        fd = os.open(os.path.join(fill, "filler"), os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        try:
            while True:
                os.write(fd, bytes(1 << 16))
        except OSError as exc:
            if exc.errno != errno.ENOSPC:
                raise
        finally:
            os.close(fd)
        os.unlink(reserve)
    say("disk full")


def reached(what):
    calls[what] = calls.get(what, 0) + 1
    kind, _, number = full_at.partition(":")
    if kind == what and calls[what] == int(number):
        make_full()
    return calls[what]


def no_growth(dbapi_connection, *_):
    # SQLite's own SQLITE_FULL: the file may not grow past its size (clamped from 1)
    if state["full"] and not fill:
        dbapi_connection.execute("PRAGMA max_page_count = 1")


event.listen(Pool, "checkout", no_growth)
real_apply = Catalog.apply


def apply(self, batch):
    reached("apply")
    return real_apply(self, batch)


Catalog.apply = apply

if full_at.partition(":")[0] in ("start", "save") or save_pause:
    import faiss

    real_write = faiss.write_index

    def write_index(index, path):
        reached("save")
        if state["full"] and not fill:
            raise RuntimeError(f"write error in {path}: 0 != 4096 (No space left on device)")
        real_write(index, path)
        if save_pause:
            say(f"saved {path}")
            time.sleep(save_pause)

    faiss.write_index = write_index

real_move = shutil.move


def move(source, target):
    number = reached("move")
    if move_pause:
        say(f"moving {number}")
        time.sleep(move_pause)
    if state["full"] and not fill:  # as a move onto a full disk does: an empty copy, ENOSPC
        open(target, "wb").close()
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), source)
    return real_move(source, target)


shutil.move = move
if full_at == "start":
    make_full()
sys.exit(main(sys.argv[1:]))
"""


# ---- running searchapp ---------------------------------------------------------------------


def searchapp(*args: object, faults: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    if not faults:  # nothing to inject: no need for a new interpreter (conftest.searchapp_here)
        return searchapp_here(*map(str, args))
    return subprocess.run(
        _command(args, faults),
        capture_output=True,
        text=True,
        env=cli_env(**(faults or {})),
        cwd=REPO,
        timeout=300,
    )


def _command(args: tuple[object, ...], faults: dict[str, str] | None) -> list[str]:
    entry = ["-c", FAULTS] if faults else ["-m", "searchapp"]
    return [sys.executable, *entry, *map(str, args)]


class Running:
    """A searchapp subprocess to kill; its stderr lines are collected as they come."""

    def __init__(self, *args: object, faults: dict[str, str] | None = None):
        self.proc = subprocess.Popen(
            _command(args, faults),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env=cli_env(**(faults or {})),
            cwd=REPO,
        )
        self.lines: list[str] = []
        self._markers: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stderr:  # type: ignore[union-attr]
            self.lines.append(line)
            if line.startswith("fault: "):
                self._markers.put(line[len("fault: ") :].strip())

    def wait_for_marker(self, prefix: str, count: int = 1, timeout: float = 240) -> str:
        deadline = time.monotonic() + timeout
        seen = 0
        while True:
            try:
                marker = self._markers.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"no {prefix!r} #{count}:\n{''.join(self.lines)}") from None
            seen += marker.startswith(prefix)
            if seen == count:
                return marker

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(timeout=60)
        assert self.proc.returncode == -9, "".join(self.lines)  # killed, not finished


def check(lib: Path, *flags: str) -> tuple[int, dict]:
    result = searchapp("check", "--library", lib, "--json", *flags)
    assert result.returncode in (0, 10), result.stderr  # 8 would be a damaged catalog
    return result.returncode, json.loads(result.stdout)


def assert_clean(lib: Path) -> None:
    code, report = check(lib)
    assert (code, report["findings"]) == (0, []), report


def kinds(report: dict) -> set[str]:
    return {finding["what"] for finding in report["findings"]}


def committed_paths(lib: Path) -> list[str]:
    """The photos the catalog holds, read as a bystander while a run may be writing."""
    try:
        with sqlite3.connect(f"file:{lib / 'catalog.db'}?mode=ro", uri=True, timeout=5) as conn:
            return [row[0] for row in conn.execute("SELECT path FROM images")]
    except sqlite3.Error:  # not created yet
        return []


def fingerprints(folder: Path) -> dict[str, str]:
    return {
        str(path): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


# ---- photos ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_photos(sample_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """24 small real photos, four different crops of each sample: every one is embedded, and a
    320 px photo encodes fast. Read-only: copy it."""
    folder = tmp_path_factory.mktemp("small-photos")
    rng = random.Random(SEED)
    for name in SAMPLES:
        with Image.open(sample_dir / f"{name}.jpg") as image:
            width, height = image.size
            for variant in range(4):
                left, top = rng.randrange(width // 5), rng.randrange(height // 5)
                crop = image.crop((left, top, left + width * 3 // 4, top + height * 3 // 4))
                crop.thumbnail((320, 320))
                crop.save(folder / f"{name}_{variant}.jpg", quality=80 + variant)
    return folder


def photo_folder(small_photos: Path, destination: Path, count: int) -> list[str]:
    destination.mkdir(parents=True)
    chosen = sorted(small_photos.iterdir())[:count]
    for path in chosen:
        shutil.copy(path, destination / path.name)
    return sorted(str(destination / path.name) for path in chosen)


# ---- kill -9 during index ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("regions", "photos", "kills"),
    # two kills each: one resumed as it was, one mended first (CI time: 4 kills took 85 s)
    [("scene", 18, 2), ("scene,object,tile", 14, 2)],
    ids=["scene", "all-regions"],
)
def test_index_killed_at_seeded_points_resumes_into_a_consistent_library(
    small_photos: Path, tmp_path: Path, regions: str, photos: int, kills: int
) -> None:
    rng = random.Random(f"{SEED}-{regions}")
    folder = tmp_path / "photos"
    expected = photo_folder(small_photos, folder, photos)
    lib = tmp_path / "lib"
    run = ("index", folder, "--library", lib, "--regions", regions, *INDEX_FLAGS)
    for _ in range(3):
        landed = kill_at_seeded_points(run, lib, rng, photos, kills, expected)
        if landed[-1] < photos:
            break
        # the run ended before its kill: this test process was held up past the run's last
        # photos (both cores busy with other tests' processes); the whole sequence again, anew
        shutil.rmtree(lib)
    assert all(0 < count < photos for count in landed), landed  # every kill landed mid-run
    assert landed == sorted(landed)  # and no committed photo was lost by the next one
    final = searchapp(*run, "--json")
    assert final.returncode == 0, final.stderr
    summary = json.loads(final.stdout)
    assert (summary["unchanged"], summary["new"]) == (landed[-1], photos - landed[-1])
    assert_clean(lib)
    assert sorted(committed_paths(lib)) == expected  # every photo exactly once
    stats = json.loads(searchapp("stats", "--library", lib, "--json").stdout)
    assert stats["images"] == stats["regions"]["scene"] == photos
    like = searchapp("search", "--like", expected[0], "-k", "3", "--library", lib, "--json")
    top = Path(json.loads(like.stdout)["results"][0]["path"]).name
    assert top.split("_")[0] == Path(expected[0]).name.split("_")[0], like.stderr  # a crop of it


def kill_at_seeded_points(
    run: tuple[object, ...],
    lib: Path,
    rng: random.Random,
    photos: int,
    kills: int,
    expected: list[str],
) -> list[int]:
    """Start, kill -9 and check the run `kills` times, each time resuming the last; the photos
    committed at each kill."""
    landed = []
    # one seeded kill point in each of `kills` stretches of the run, past its first commit
    # (which also saves the index file: a kill there has its own test) and well short of its
    # end, as a run overshoots its kill point by a few photos
    stretch = (photos - 9) // kills
    for number in range(kills):
        before = len(committed_paths(lib))
        target = max(before + 2, 3 + number * stretch + rng.randrange(stretch))
        running = Running(*run)
        deadline = time.monotonic() + 240
        while len(committed_paths(lib)) < target:
            assert running.proc.poll() is None, "".join(running.lines)
            assert time.monotonic() < deadline, "the run never reached its kill point"
            time.sleep(0.01)
        time.sleep(rng.uniform(0, 0.03))  # anywhere in the next batch: decode, encode, commit
        running.kill()
        at_kill = committed_paths(lib)
        landed.append(len(at_kill))
        assert len(at_kill) == len(set(at_kill)) and set(at_kill) <= set(expected)

        report = check(lib)[1]
        # the catalog is whole (no orphan rows, no photo without its vectors, files as
        # indexed); only the index files may lag behind it
        assert kinds(report) <= CACHE_FINDINGS, report
        assert all(finding["mendable"] for finding in report["findings"]), report
        if number % 2:  # every other time mend it first; else the resume must cope alone
            assert check(lib, "--repair")[0] == 0
        if len(at_kill) == photos:
            break  # it had ended: the caller starts over
    return landed


# ---- kill -9 during dupes --apply and --undo -----------------------------------------------


@pytest.fixture
def copies_library(library: Library, small_photos: Path, tmp_path: Path) -> tuple[Path, Path]:
    """Six photos with two byte-identical copies each (cloned by the library, not embedded):
    `dupes` moves twelve files. The library is closed, for the subprocesses."""
    folder = tmp_path / "photos"
    originals = [Path(p) for p in photo_folder(small_photos, folder, 24)[::4]]
    for path in sorted(folder.iterdir()):
        if path not in originals:
            path.unlink()
    for copy in ("copies-a", "copies-b"):
        (folder / copy).mkdir()
        for path in originals:
            shutil.copy(path, folder / copy / path.name)
    summary = index(library, folder)
    assert (summary.new, summary.failed) == (18, 0)
    library.close()
    return library.directory, folder


def moved_away(folder: Path, trash: Path, before: dict[str, str]) -> list[str]:
    """Which photos sit in the move folder now; every photo is in exactly one of its two
    places, with its bytes."""
    away = []
    for path, digest in before.items():
        moved = trash / path.lstrip(os.sep)
        here, there = os.path.exists(path), moved.exists()
        assert here != there, path
        if there:
            assert hashlib.sha256(moved.read_bytes()).hexdigest() == digest, path
            away.append(path)
    assert fingerprints(folder) == {p: d for p, d in before.items() if p not in away}
    return away


def undo_to_the_end(lib: Path, journal: Path) -> None:
    undo = searchapp("dupes", "--library", lib, "--undo", journal, "-q")
    # a journal entry a killed run never moved, or one already mended home, is named, not an
    # error of this run
    skipped = [line for line in undo.stderr.splitlines() if line.startswith("searchapp: skipped")]
    assert all(line.endswith("not at its moved place") for line in skipped), undo.stderr
    assert undo.returncode == (1 if skipped else 0), undo.stderr


def kill_among_moves(running: Running, rng: random.Random, moves: int, pause: float) -> None:
    running.wait_for_marker("moving", rng.randint(2, moves - 1))
    time.sleep(rng.uniform(0, pause * 1.5))  # before, or just after, a file's move
    running.kill()


MOVE_PAUSE = 0.12  # per file, in the subprocess only: twelve moves take about 1.5 s


def test_dupes_apply_and_undo_killed_at_seeded_points(
    copies_library: tuple[Path, Path], tmp_path: Path
) -> None:
    """A killed --apply leaves moved files the catalog still has at home ("missing" to check:
    the catalog follows in transactions of 50 moves); --undo is the designed mend. A killed
    --undo leaves files home the catalog still has set aside ("back": --repair or --undo)."""
    lib, folder = copies_library
    rng = random.Random(SEED)
    before = fingerprints(folder)
    slow = {"FAULT_MOVE_PAUSE": str(MOVE_PAUSE)}
    apply = ("dupes", "--library", lib, "--move-to", tmp_path / "trash", "--apply", "-q")

    # 1. --apply killed, then --undo killed, then --undo to the end
    running = Running(*apply, faults=slow)
    kill_among_moves(running, rng, 12, MOVE_PAUSE)
    journal = next((tmp_path / "trash").glob("searchapp-dupes-*.json"))
    away = moved_away(folder, tmp_path / "trash", before)
    assert 0 < len(away) < 12, away  # the kill landed mid-move
    code, report = check(lib)
    assert (code, kinds(report)) == (10, {"missing"}), report
    assert sorted(f["detail"].split(" is no longer")[0] for f in report["findings"]) == away

    running = Running("dupes", "--library", lib, "--undo", journal, "-q", faults=slow)
    if len(away) > 2:
        kill_among_moves(running, rng, len(away), MOVE_PAUSE)
    else:
        assert running.proc.wait(timeout=120) in (0, 1)
    still_away = moved_away(folder, tmp_path / "trash", before)
    assert set(still_away) <= set(away)
    assert kinds(check(lib)[1]) <= {"missing"}
    undo_to_the_end(lib, journal)
    assert fingerprints(folder) == before
    assert_clean(lib)

    # 2. --apply to the end, then --undo killed: check finds the photos back, --repair mends
    done = searchapp(*apply[:-1], "--json", "-q")
    assert done.returncode == 0, done.stderr
    journal = Path(json.loads(done.stdout)["journal"])
    assert len(moved_away(folder, tmp_path / "trash", before)) == 12
    assert_clean(lib)
    running = Running("dupes", "--library", lib, "--undo", journal, "-q", faults=slow)
    kill_among_moves(running, rng, 12, MOVE_PAUSE)
    home = 12 - len(moved_away(folder, tmp_path / "trash", before))
    assert 0 < home < 12, home
    code, report = check(lib)
    assert (code, kinds(report)) == (10, {"back"}) and len(report["findings"]) == home, report
    assert check(lib, "--repair")[0] == 0
    undo_to_the_end(lib, journal)
    assert fingerprints(folder) == before
    assert_clean(lib)
    stats = json.loads(searchapp("stats", "--library", lib, "--json").stdout)
    assert (stats["images"], stats["set_aside"]) == (18, 0)


# ---- a full disk ---------------------------------------------------------------------------


@functools.cache
def tmpfs_mounts() -> bool:
    """Whether this run can mount a small filesystem of its own to fill (root, as CI runs)."""
    if os.geteuid() != 0 or os.environ.get("SEARCHAPP_FAULTS_INJECT"):  # the other branch, here
        return False
    probe = Path(tempfile.mkdtemp())
    try:
        mounted = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(probe)], capture_output=True
        )
        if mounted.returncode == 0:
            subprocess.run(["umount", str(probe)], check=True)
        return mounted.returncode == 0
    finally:
        probe.rmdir()


@dataclass
class SmallDisk:
    path: Path
    real: bool  # a tmpfs of its own, filled for real; else the subprocess injects ENOSPC

    def fills(self, at: str, leave: int = 0) -> dict[str, str]:
        """The faults of a command during which the disk fills up, before call `at`, to `leave`
        bytes free (a real disk only: an injected full disk is wholly full)."""
        real = {"FAULT_FILL": str(self.path), "FAULT_LEAVE": str(leave)} if self.real else {}
        return {"FAULT_FULL_AT": at, **real}

    def still_full(self) -> dict[str, str] | None:
        """What a later command needs to meet the disk still full."""
        return None if self.real else {"FAULT_FULL_AT": "start"}

    def free(self) -> None:
        (self.path / "filler").unlink(missing_ok=True)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[SmallDisk]:
    folder = tmp_path / "small-disk"
    folder.mkdir()
    if not tmpfs_mounts():
        yield SmallDisk(folder, real=False)
        return
    # room for everything a test writes before the moment it fills the rest
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(folder)], check=True)
    try:
        yield SmallDisk(folder, real=True)
    finally:
        subprocess.run(["umount", "--lazy", str(folder)], check=True)


def error_line(result: subprocess.CompletedProcess) -> str:
    # faiss may have printed its own complaint, without a newline, just before
    line = next(line for line in result.stderr.splitlines() if "searchapp: error" in line)
    return line[line.index("searchapp: error") :]


@pytest.mark.parametrize(
    ("full_at", "names", "fix"),
    [
        ("apply:2", "catalog.db", "Free some space and run the same command again"),
        ("save:1", "index-scene-g", "run `searchapp rebuild-index`"),
    ],
    ids=["during-a-commit", "during-an-index-save"],
)
def test_disk_full_during_index_exits_7_and_resumes_once_freed(
    small_disk: SmallDisk, small_photos: Path, tmp_path: Path, full_at: str, names: str, fix: str
) -> None:
    expected = photo_folder(small_photos, tmp_path / "photos", 12)
    lib = small_disk.path / "lib"
    run = ("index", tmp_path / "photos", "--library", lib, "--regions", "scene", *INDEX_FLAGS)
    # four photos a commit: the first index save then writes more than a stdio buffer
    run += ("--commit-every", "4")

    failed = searchapp(*run, faults=small_disk.fills(full_at))
    assert failed.returncode == 7, failed.stderr  # DiskFullError
    assert "fault: disk full" in failed.stderr  # the disk filled where this case says
    message = error_line(failed)
    assert "disk full while writing" in message and str(lib) in message, message
    assert names in message and fix in message, message
    kept = committed_paths(lib)
    assert 0 < len(kept) < len(expected), kept  # the batches committed before it are kept

    # a read-only query needs no byte of the full disk (issue 16.4)
    found = searchapp(
        "search", "--like", kept[0], "-k", "3", "--library", lib, "--json",
        faults=small_disk.still_full(),
    )  # fmt: skip
    assert found.returncode == 0, found.stderr
    assert json.loads(found.stdout)["results"], found.stdout

    small_disk.free()
    resumed = searchapp(*run, "--json")
    assert resumed.returncode == 0, resumed.stderr
    summary = json.loads(resumed.stdout)
    assert (summary["unchanged"], summary["new"]) == (len(kept), len(expected) - len(kept))
    assert_clean(lib)
    assert sorted(committed_paths(lib)) == expected


# nearly full: too little room for SQLite's 32 KiB shared-memory file beside a new catalog
@pytest.mark.parametrize("leave", [0, 16 << 10], ids=["full", "nearly-full"])
def test_a_new_library_on_a_full_disk_is_a_disk_full_error(
    small_disk: SmallDisk, small_photos: Path, tmp_path: Path, leave: int
) -> None:
    photo_folder(small_photos, tmp_path / "photos", 2)
    lib = small_disk.path / "lib"
    run = ("index", tmp_path / "photos", "--library", lib, "--regions", "scene", *INDEX_FLAGS)
    refused = searchapp(*run, faults=small_disk.fills("start", leave))
    assert refused.returncode == 7, refused.stderr  # not 1: the message says what to free
    assert "disk full" in error_line(refused) and str(lib) in error_line(refused)
    small_disk.free()
    assert searchapp(*run).returncode == 0  # what the refused run left does not stand in the way
    assert_clean(lib)


def test_move_folder_filling_up_loses_no_photo_and_undo_brings_all_back(
    copies_library: tuple[Path, Path], small_disk: SmallDisk
) -> None:
    lib, folder = copies_library
    before = fingerprints(folder)
    trash = small_disk.path / "trash"
    applied = searchapp(
        "dupes", "--library", lib, "--move-to", trash, "--apply", "--json", "-q",
        faults=small_disk.fills("move:4"),
    )  # fmt: skip
    assert "fault: disk full" in applied.stderr, applied.stderr
    outcome = json.loads(applied.stdout)
    moved = {move["from"]: move["to"] for move in outcome["moved"]}
    assert len(moved) == 3  # the three moves before the disk filled
    for path, digest in before.items():  # every photo whole, at home or at its moved place
        where = Path(moved.get(path, path))
        assert hashlib.sha256(where.read_bytes()).hexdigest() == digest, path
        assert os.path.exists(path) == (path not in moved)
    assert_clean(lib)
    stats = json.loads(searchapp("stats", "--library", lib, "--json").stdout)
    assert stats["set_aside"] == 3

    searchapp("dupes", "--library", lib, "--undo", outcome["journal"], "-q")  # the three back
    assert fingerprints(folder) == before
    assert_clean(lib)
    stats = json.loads(searchapp("stats", "--library", lib, "--json").stdout)
    assert (stats["images"], stats["set_aside"]) == (18, 0)


def test_a_move_that_runs_out_of_space_is_reported(
    copies_library: tuple[Path, Path], small_disk: SmallDisk
) -> None:
    lib = copies_library[0]
    trash = small_disk.path / "trash"
    applied = searchapp(
        "dupes", "--library", lib, "--move-to", trash, "--apply", "--json",
        faults=small_disk.fills("move:4"),
    )  # fmt: skip
    outcome = json.loads(applied.stdout)
    planned = [p for group in outcome["groups"] for p in group["paths"] if p != group["keep"]]
    not_moved = sorted(set(planned) - {move["from"] for move in outcome["moved"]})
    assert len(not_moved) == 9
    assert applied.returncode == 1, applied.stderr  # as --undo answers a file it skipped
    for path in not_moved:
        assert f"searchapp: skipped {path}: cannot move: No space left on device" in (
            applied.stderr
        ), applied.stderr
    kept = {str(trash / move["from"].lstrip(os.sep)) for move in outcome["moved"]}
    assert set(map(str, (p for p in trash.rglob("*") if p.is_file()))) == kept | {
        outcome["journal"]
    }  # no partial copy of a file that did not fit
    undo = searchapp("dupes", "--library", lib, "--undo", outcome["journal"], "-q")
    assert undo.returncode == 0, undo.stderr


def test_index_killed_while_saving_its_index_file_leaves_no_torn_file_behind(
    small_photos: Path, tmp_path: Path
) -> None:
    """kill -9 between writing the temporary copy of an index file and renaming it in place:
    the next run that saves the index must not leave the torn copy for ever."""
    photo_folder(small_photos, tmp_path / "photos", 6)
    lib = tmp_path / "lib"
    run = ("index", tmp_path / "photos", "--library", lib, "--regions", "scene", *INDEX_FLAGS)
    running = Running(*run, faults={"FAULT_SAVE_PAUSE": "120"})
    running.wait_for_marker("saved")  # the first commit's save: index-scene-g1.faiss.tmpPID
    running.kill()
    assert kinds(check(lib)[1]) <= CACHE_FINDINGS
    resumed = searchapp(*run, "--json")  # the other photos: a run that saves the index again
    assert resumed.returncode == 0 and json.loads(resumed.stdout)["new"] > 0, resumed.stderr
    assert_clean(lib)


def test_an_index_file_that_does_not_fit_is_an_error_not_a_torn_file(
    small_disk: SmallDisk, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a full disk faiss reports the failed write of a small index (all of it still in the
    stdio buffer) only when it closes the file, on stderr, without raising: save_atomic must
    notice all the same, and leave no file behind."""
    import faiss

    from searchapp.errors import DiskFullError
    from searchapp.vectors import ann
    from searchapp.vectors.faiss_index import save_atomic

    target = small_disk.path / "index-object-g1.faiss"
    if small_disk.real:
        with open(small_disk.path / "filler", "ab", buffering=0) as out:
            try:
                while True:
                    out.write(bytes(1 << 16))
            except OSError as exc:
                assert exc.errno == errno.ENOSPC
    else:  # what faiss does then: the file is made, the close complains, nothing raises

        def write_and_complain(index: object, path: str) -> None:
            Path(path).touch()
            print(f"file {path} close error: No space left on device", file=sys.stderr)

        monkeypatch.setattr(faiss, "write_index", write_and_complain)
    with pytest.raises(DiskFullError, match=re.escape(target.name)):
        save_atomic(ann.exact_index(1280), target)
    assert not list(small_disk.path.glob("index-*"))  # neither in place nor as a temporary
