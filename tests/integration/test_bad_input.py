"""Bad files are lines in the report, not crashes; failed runs leave a consistent library."""

from __future__ import annotations

import io
import os
import shutil
import struct
from pathlib import Path

import pytest
from sqlalchemy.exc import OperationalError

from searchapp.errors import DiskFullError, LibraryBusyError, UsageError
from searchapp.library import Library
from tests.conftest import sample_image
from tests.integration.helpers import Recorder, assert_consistent, index, paths_of
from tests.unit.test_load import png_with_header

GOOD = ("cat.jpg", "coffee.jpg", "bad_exif.jpg")


def bad_exif_jpeg() -> bytes:
    buffer = io.BytesIO()
    sample_image("coffee").save(buffer, "JPEG")
    data = buffer.getvalue()
    junk = b"Exif\x00\x00MM\x00*\x00\x00\x00\x08\xff\xff" + b"\x00" * 30
    return data[:2] + b"\xff\xe1" + struct.pack(">H", len(junk) + 2) + junk + data[2:]


@pytest.fixture
def messy(tmp_path: Path, sample_dir: Path) -> Path:
    root = tmp_path / "messy"
    root.mkdir()
    shutil.copy(sample_dir / "chelsea.jpg", root / "cat.jpg")
    shutil.copy(sample_dir / "coffee.jpg", root / "coffee.jpg")
    (root / "bad_exif.jpg").write_bytes(bad_exif_jpeg())
    full = (sample_dir / "rocket.jpg").read_bytes()
    (root / "truncated.jpg").write_bytes(full[: len(full) // 4])
    (root / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0" + os.urandom(2000))
    (root / "empty.jpg").write_bytes(b"")
    (root / "readme.jpg").write_text("this is a text file, not a photo\n")
    (root / "drawing.svg").write_text("<svg xmlns='http://www.w3.org/2000/svg'/>")
    (root / "bomb.png").write_bytes(png_with_header(50_000, 50_000))
    (root / "locked.jpg").write_bytes((sample_dir / "astronaut.jpg").read_bytes())
    (root / "vanishing.jpg").write_bytes((sample_dir / "camera.jpg").read_bytes())
    (root / "notes.txt").write_text("not an image extension: ignored silently")
    return root


EXPECTED_REASONS = {
    "truncated.jpg": "truncated or corrupt",
    "corrupt.jpg": "corrupt",
    "empty.jpg": "empty file",
    "readme.jpg": "not an image",
    "drawing.svg": "unsupported format",
    "bomb.png": "--max-pixels",
    "locked.jpg": "permission denied",
    "vanishing.jpg": "vanished during the run",
}


def sabotage(monkeypatch: pytest.MonkeyPatch, root: Path) -> None:
    """Deny reading locked.jpg (root ignores chmod, so simulate it) and delete vanishing.jpg
    between the scan and its read."""
    from searchapp.ingest import pipeline

    real_read = pipeline.read_bytes

    def read(stat, limits):  # type: ignore[no-untyped-def]
        if stat.path == str(root / "vanishing.jpg") and os.path.exists(stat.path):
            os.unlink(stat.path)
        if stat.path == str(root / "locked.jpg"):
            real_open = os.open

            def deny(file, *args, **kwargs):  # type: ignore[no-untyped-def]
                if str(file) == stat.path:
                    raise PermissionError(13, "Permission denied")
                return real_open(file, *args, **kwargs)

            monkeypatch.setattr(os, "open", deny)
            try:
                return real_read(stat, limits)
            finally:
                monkeypatch.setattr(os, "open", real_open)
        return real_read(stat, limits)

    monkeypatch.setattr(pipeline, "read_bytes", read)


def test_every_bad_input_is_reported_and_the_run_goes_on(
    library, messy: Path, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    sabotage(monkeypatch, messy)
    recorder = Recorder()
    summary = index(library, messy, recorder=recorder)
    assert summary.new == len(GOOD)
    assert summary.failed == len(EXPECTED_REASONS)
    assert sorted(paths_of(library)) == sorted(str(messy / name) for name in GOOD)
    reported = {Path(path).name: reason for path, reason in recorder.failures}
    for name, fragment in EXPECTED_REASONS.items():
        assert fragment in reported[name], (name, reported[name])
    stored = {Path(f.path).name: f.reason for f in library.failures()}
    assert set(stored) == set(EXPECTED_REASONS) - {"vanishing.jpg"}  # gone files leave no row
    assert_consistent(library)


def test_known_failures_are_not_retried_until_the_file_changes(
    library, messy: Path, sample_dir: Path
) -> None:  # type: ignore[no-untyped-def]
    index(library, messy)
    recorder = Recorder()
    again = index(library, messy, recorder=recorder)
    assert again.embedded == 0 and recorder.failures == []
    assert again.failed == len(library.failures())
    shutil.copy(sample_dir / "rocket.jpg", messy / "truncated.jpg")  # the user repairs it
    fixed = index(library, messy)
    assert fixed.new == 1
    assert "truncated.jpg" not in {Path(f.path).name for f in library.failures()}
    (messy / "empty.jpg").unlink()
    index(library, messy)
    assert "empty.jpg" not in {Path(f.path).name for f in library.failures()}


def test_a_file_that_turns_corrupt_loses_its_stale_vectors(library, messy: Path) -> None:  # type: ignore[no-untyped-def]
    index(library, messy)
    (messy / "cat.jpg").write_bytes(b"\xff\xd8 broken now")
    summary = index(library, messy)
    assert summary.failed >= 1
    assert str(messy / "cat.jpg") not in paths_of(library)
    assert_consistent(library)


def test_interrupted_run_keeps_what_it_committed_and_resumes(library, photos: Path) -> None:  # type: ignore[no-untyped-def]
    recorder = Recorder()
    first = index(library, photos, callbacks=recorder.callbacks(stop_after=3))
    assert first.interrupted
    kept = len(paths_of(library))
    assert 0 < kept < 5
    assert_consistent(library)
    second = index(library, photos)
    assert second.new == 5 - kept and second.unchanged == kept
    assert len(paths_of(library)) == 5
    assert_consistent(library)


def test_second_writer_is_told_the_library_is_busy_and_readers_are_not_blocked(
    library, photos: Path
) -> None:  # type: ignore[no-untyped-def]
    index(library, photos)
    library.lock.acquire()  # as a running indexer would
    other = Library(library.directory)
    try:
        with pytest.raises(LibraryBusyError, match="busy"):
            index(other, photos)
        assert other.stats().images == 5  # reading works meanwhile
        assert other.indexes().get("scene", persist=False).ntotal == 5
    finally:
        other.close()
        library.lock.release()


def test_disk_full_on_commit_names_the_fix_and_keeps_the_library_consistent(
    library, photos: Path, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    index(library, photos / "things")
    before = paths_of(library)

    def full(batch):  # type: ignore[no-untyped-def]
        raise OperationalError("INSERT", {}, Exception("database or disk is full"))

    monkeypatch.setattr(library.catalog, "_apply", full)
    with pytest.raises(DiskFullError, match="Free some space"):
        index(library, photos)
    monkeypatch.undo()
    assert paths_of(library) == before
    assert_consistent(library)
    assert index(library, photos).new == 3  # and the next run resumes


def test_a_first_run_that_finds_no_photo_reports_zero_and_a_missing_path_is_named(
    tmp_path: Path,
) -> None:
    fresh = Library(tmp_path / "fresh")  # no encoder recorded yet, as on a first run
    empty = tmp_path / "empty"
    empty.mkdir()
    summary = fresh.index([str(empty)])
    assert (summary.new, summary.failed, summary.embedded, summary.model_seconds) == (0, 0, 0, 0)
    assert fresh.encoder_identity is None  # nothing stored, so no encoder chosen for good
    with pytest.raises(UsageError, match=f"nothing to index: {tmp_path / 'typo'}: no such file"):
        fresh.index([str(tmp_path / "typo")])
    assert fresh.index([str(empty), str(tmp_path / "typo")]).new == 0  # one root is enough
    fresh.close()


def test_broken_links_and_unreadable_folders_are_kept_in_errors_until_mended(
    library, photos: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (photos / "dangling.jpg").symlink_to(photos / "nowhere.jpg")
    locked = photos / "things" / "deep"
    real_scandir = os.scandir

    def deny(path):  # type: ignore[no-untyped-def]
        if str(path) == str(locked):  # root ignores chmod: the refusal is simulated
            raise PermissionError(13, "Permission denied")
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", deny)
    recorder = Recorder()
    index(library, photos, recorder=recorder)
    kept = {failure.path: failure.reason for failure in library.failures()}
    assert kept == {
        str(photos / "dangling.jpg"): f"broken link: its target {photos / 'nowhere.jpg'} is gone",
        str(locked): "cannot list folder: Permission denied; check its permissions",
    }
    assert set(kept) <= {path for path, _ in recorder.failures}  # said on the way too

    monkeypatch.undo()
    (photos / "dangling.jpg").unlink()
    summary = index(library, photos)
    assert summary.new == 1  # the rocket in the folder that can be read now
    assert library.failures() == []  # mended: no longer listed


def test_query_images_must_be_regular_files(library, tmp_path: Path) -> None:
    from searchapp.errors import QueryError

    fifo = tmp_path / "pipe.jpg"
    os.mkfifo(fifo)
    for path in ("/dev/zero", str(fifo), str(tmp_path)):
        with pytest.raises(QueryError, match="not a photo file"):
            library.search(image=path)


def test_a_folder_filter_that_is_no_folder_says_so(library, photos: Path) -> None:
    index(library, photos)
    results = library.search(like=str(photos / "astronaut.jpg"), folder="/nonexistent")
    assert results.hits == []
    assert any("--folder /nonexistent is no folder on disk" in note for note in results.notes)
