"""`searchapp check` and damaged catalogs: problems are named, mended where no encoder is
needed, and a damaged catalog is never written to."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
from pathlib import Path

import pytest

from searchapp.checkup import examine
from searchapp.errors import DamagedCatalogError, LibraryBusyError, LibraryProblemsError
from searchapp.library import Library
from tests.conftest import searchapp_here
from tests.integration.helpers import index


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return searchapp_here(*args)


@pytest.fixture
def indexed(tmp_path: Path, photos: Path) -> Path:
    library = Library(tmp_path / "lib")
    index(library, photos)
    library.close()
    return tmp_path / "lib"


def check(library: Path, *flags: str) -> tuple[int, dict]:  # type: ignore[type-arg]
    result = run("check", "--library", str(library), "--json", *flags)
    return result.returncode, json.loads(result.stdout or "{}")  # none when it cannot open


def test_a_sound_library_is_clean(indexed: Path) -> None:
    code, report = check(indexed)
    assert code == 0 and report["clean"] and report["findings"] == []
    assert report["checked"]["photo files"] == 5 and report["checked"]["scene vectors"] == 5


def test_broken_index_files_are_found_and_rebuilt(indexed: Path) -> None:
    (scene,) = indexed.glob("index-scene-g*.faiss")
    scene.write_bytes(scene.read_bytes()[:100])  # torn
    (indexed / "index-scene-g0.faiss.tmp99").write_bytes(b"partial")  # a killed save's leftover
    code, report = check(indexed)
    assert code == LibraryProblemsError.exit_code
    assert {f["what"] for f in report["findings"]} == {"index", "leftover"}
    assert all(f["mendable"] for f in report["findings"])
    code, report = check(indexed, "--repair")
    assert code == 0 and report["clean"], report
    assert any("rebuilt the scene index" in line for line in report["mended"])
    assert not (indexed / "index-scene-g0.faiss.tmp99").exists()


def test_index_files_a_run_is_writing_are_left_alone_until_it_ends(indexed: Path) -> None:
    """A run's build under way is no leftover: while a writer holds the lock, `check` says it
    left the index files alone; once the writer has gone, a stray file is found again."""
    building = indexed / "index-scene-g1.faiss.build4242"
    building.write_bytes(b"an IVF-PQ build, half written")
    writer = Library(indexed, create=False)
    writer.lock.acquire()
    try:
        result = run("check", "--library", str(indexed))
        assert result.returncode == 0, result.stdout + result.stderr
        assert f"not checked: the index files: searchapp pid {os.getpid()} is writing" in (
            result.stderr
        )
        assert "clean: the catalog and the photos on disk agree" in result.stderr
        code, report = check(indexed)
        assert code == 0 and report["findings"] == [] and len(report["not_checked"]) == 1
        assert report["clean"] and not report["complete"]
        mending = run("check", "--library", str(indexed), "--repair")
        assert mending.returncode == LibraryBusyError.exit_code and "is busy" in mending.stderr
        assert building.exists()  # a repair that cannot take the lock removes nothing
    finally:
        writer.lock.release()
        writer.close()
    code, report = check(indexed)
    assert code == LibraryProblemsError.exit_code and report["not_checked"] == []
    assert [f["what"] for f in report["findings"]] == ["leftover"] and report["complete"]
    # a writer that starts while the index files are read: what they showed is set aside
    asked = iter([None, "searchapp pid 7"])
    with Library(indexed, create=False) as lib:
        late = examine(lib.catalog, lib.indexes, lib.directory, writer=lambda: next(asked))
    assert late.findings == [] and late.not_checked == [
        "the index files: searchapp pid 7 is writing them; check again when it ends"
    ]


def test_an_index_file_of_other_vectors_is_caught_by_self_lookups(
    indexed: Path, tmp_path: Path, photos: Path
) -> None:
    """Same ids and count, other vectors: only looking the vectors up finds it."""
    (scene,) = indexed.glob("index-scene-g*.faiss")
    other = Library(tmp_path / "other")
    shuffled = tmp_path / "shuffled"
    shutil.copytree(photos, shuffled)
    names = sorted(shuffled.rglob("*.jpg"))
    contents = [path.read_bytes() for path in names]
    for path, data in zip(names, contents[1:] + contents[:1], strict=True):
        path.write_bytes(data)  # each name now holds another photo; ids are given in order
    index(other, shuffled)
    other.close()
    (their_scene,) = (tmp_path / "other").glob("index-scene-g*.faiss")
    shutil.copy(their_scene, scene)
    code, report = check(indexed)
    assert code == LibraryProblemsError.exit_code
    assert any("do not find themselves" in f["detail"] for f in report["findings"]), report


def test_missing_and_changed_photos_are_named_with_their_fix(indexed: Path, photos: Path) -> None:
    (photos / "camera.jpg").unlink()
    with open(photos / "astronaut.jpg", "ab") as file:
        file.write(b"appended")
    result = run("check", "--library", str(indexed))
    assert result.returncode == LibraryProblemsError.exit_code
    assert f"{photos / 'camera.jpg'} is no longer on disk" in result.stdout
    assert f"{photos / 'astronaut.jpg'} changed on disk" in result.stdout
    assert "searchapp index" in result.stdout
    code, _ = check(indexed, "--repair")  # nothing check may mend: that is index's job
    assert code == LibraryProblemsError.exit_code


def test_a_set_aside_photo_back_home_is_returned_to_search(indexed: Path, photos: Path) -> None:
    """A kill between an undo's file move and its catalog commit leaves the photo home but
    set aside; check finds it by its content and --repair returns it."""
    home = photos / "camera.jpg"
    library = Library(indexed)
    moved = library.move_duplicates([str(home)], indexed.parent / "trash")
    (target,) = [m.target for m in moved.moved]
    os.replace(target, home)  # as the killed undo left it
    library.close()
    code, report = check(indexed)
    assert code == LibraryProblemsError.exit_code
    assert [f["what"] for f in report["findings"]] == ["back"]
    code, report = check(indexed, "--repair")
    assert code == 0, report
    with Library(indexed) as reopened:
        assert reopened.catalog.image_by_path(str(home), set_aside=False) is not None


def test_a_file_that_is_no_database_gives_one_clear_message(indexed: Path, photos: Path) -> None:
    (indexed / "catalog.db").write_bytes(os.urandom(8192))
    for leftover in ("catalog.db-wal", "catalog.db-shm"):
        (indexed / leftover).unlink(missing_ok=True)
    for command in (["stats"], ["rebuild-index"], ["index", str(photos)], ["check"]):
        result = run(*command, "--library", str(indexed))
        assert result.returncode == DamagedCatalogError.exit_code, result.stderr
        assert "Traceback" not in result.stderr
        assert str(indexed / "catalog.db") in result.stderr and ".recover" in result.stderr


def test_a_malformed_catalog_is_marked_and_never_written_until_it_passes(
    indexed: Path, photos: Path
) -> None:
    database = indexed / "catalog.db"
    with sqlite3.connect(database) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        page_size = conn.execute("PRAGMA page_size").fetchone()[0]
    pristine = database.read_bytes()
    with open(database, "r+b") as file:  # scribble over the last pages: an index or rows
        file.seek((pages - 2) * page_size)
        file.write(b"\xa5" * page_size * 2)
    code, report = check(indexed)
    assert code in (DamagedCatalogError.exit_code, LibraryProblemsError.exit_code)
    if code == LibraryProblemsError.exit_code:  # it opened: the integrity check caught it
        assert [f["what"] for f in report["findings"]] == ["integrity"]
    assert (indexed / "catalog.db.damaged").exists()

    database.write_bytes(pristine)  # "recovered" (here: the good copy put back)
    before = database.read_bytes()
    refused = run("index", str(photos), "--library", str(indexed))
    assert refused.returncode == DamagedCatalogError.exit_code, refused.stderr
    assert "integrity check" in refused.stderr
    assert database.read_bytes() == before  # not a byte written while marked
    code, report = check(indexed)
    assert code == 0 and any("writes allowed again" in line for line in report["mended"])
    assert run("index", str(photos), "--library", str(indexed)).returncode == 0


def test_set_aside_copies_the_user_deleted_are_forgotten_on_repair(
    indexed: Path, photos: Path
) -> None:
    """Deleting the move folder once its copies were reviewed is normal: check names each, and
    --repair forgets them (their vectors left the indexes when they were set aside)."""
    library = Library(indexed)
    library.move_duplicates([str(photos / "camera.jpg")], indexed.parent / "trash")
    library.close()
    shutil.rmtree(indexed.parent / "trash")
    code, report = check(indexed)
    assert code == LibraryProblemsError.exit_code
    (finding,) = report["findings"]
    assert finding["what"] == "gone" and not finding["mendable"]  # or is the drive unplugged?
    assert finding["subject"] == str(indexed.parent / "trash") + str(photos / "camera.jpg")
    code, report = check(indexed, "--repair")
    assert code == LibraryProblemsError.exit_code  # only the user can say they deleted them
    code, report = check(indexed, "--repair", "--forget-deleted-copies")
    assert code == 0, report
    assert run("stats", "--library", str(indexed), "--json").returncode == 0


def test_an_empty_catalog_put_in_place_is_not_called_clean(indexed: Path) -> None:
    """A failed recovery leaves an empty catalog.db beside index files that hold vectors: check
    must say so, not call an empty library clean."""
    (indexed / "catalog.db").write_bytes(b"")
    for leftover in ("catalog.db-wal", "catalog.db-shm"):
        (indexed / leftover).unlink(missing_ok=True)
    (indexed / "catalog.db.damaged").write_text("integrity check: test\n")
    code, report = check(indexed)
    assert code == LibraryProblemsError.exit_code
    assert {f["what"] for f in report["findings"]} == {"leftover"}
    code, report = check(indexed, "--repair")
    assert code == 0 and not list(indexed.glob("index-*.faiss")), report


def test_a_photo_back_home_that_index_gave_a_row_of_its_own_loses_the_set_aside_row(
    indexed: Path, photos: Path
) -> None:
    """Moved back by hand, then indexed: the file has a row of its own; repair and undo must
    drop the set-aside row, not point it at a path that has one (a unique-path crash)."""
    home = photos / "camera.jpg"
    library = Library(indexed)
    outcome = library.move_duplicates([str(home)], indexed.parent / "trash")
    (target,) = [m.target for m in outcome.moved]
    os.replace(target, home)
    index(library, photos)  # the file is new to search: a row of its own
    library.close()
    code, report = check(indexed, "--repair")
    assert code == 0, report
    with Library(indexed) as reopened:
        assert reopened.stats().set_aside == 0
        assert reopened.catalog.image_by_path(str(home)) is not None
