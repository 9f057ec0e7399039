"""Scanning: recursion, symlink loops, which files count, and roots that are not there."""

from __future__ import annotations

import os
from pathlib import Path

from searchapp.ingest.scan import ScanProblem, classify, scan


def touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")
    return path


def test_recursive_scan_survives_symlink_loops_and_sees_each_file_once(tmp_path: Path) -> None:
    root = tmp_path / "photos"
    a = touch(root / "a.jpg")
    b = touch(root / "deep" / "er" / "b.PNG")
    os.symlink(root, root / "deep" / "loop")  # points back up: a cycle
    os.symlink(root / "deep", root / "deep-again")  # a second way into the same folder
    os.symlink(tmp_path / "nowhere", root / "dangling.jpg")
    touch(root / "notes.txt")
    found = [entry.stat.path for entry in scan([str(root)])]
    assert sorted(found) == sorted({str(a), str(b)}) and len(found) == 2


def test_unsupported_images_are_listed_with_a_reason(tmp_path: Path) -> None:
    touch(tmp_path / "logo.svg")
    touch(tmp_path / "raw.CR2")
    entries = list(scan([str(tmp_path)]))
    reasons = {Path(e.stat.path).name: e.unsupported for e in entries}
    assert "SVG" in (reasons["logo.svg"] or "")
    assert "RAW" in (reasons["raw.CR2"] or "")


def test_a_photo_under_an_unsupported_name_is_read_by_its_bytes(tmp_path: Path) -> None:
    from PIL import Image

    Image.new("RGB", (8, 8)).save(tmp_path / "really_a_jpeg.svg", "JPEG")
    (tmp_path / "raw_as_tiff.dng").write_bytes(b"II*\x00" + bytes(64))  # RAW is TIFF inside
    reasons = {Path(e.stat.path).name: e.unsupported for e in scan([str(tmp_path)])}
    assert reasons["really_a_jpeg.svg"] is None
    assert "RAW" in (reasons["raw_as_tiff.dng"] or "")


def test_classify_by_extension() -> None:
    for name in (
        "x.jpg",
        "x.JPEG",
        "x.webp",
        "x.tif",
        "x.bmp",
        "x.gif",
        "x.ppm",
        "x.pgm",
        "x.avif",
    ):
        assert classify(name, heif=False) == (True, None), name
    assert classify("x.heic", heif=True) == (True, None)
    wanted, reason = classify("x.heic", heif=False)
    assert wanted and "pillow-heif" in (reason or "")
    assert classify("x.mp4", heif=True) == (True, None)  # a video
    assert classify("x.mp3", heif=True) == (False, None)


def test_file_roots_and_missing_roots(tmp_path: Path) -> None:
    photo = touch(tmp_path / "one.jpg")
    touch(tmp_path / "notes.txt")
    problems: list[ScanProblem] = []
    found = list(
        scan([str(photo), str(tmp_path / "missing"), str(tmp_path / "notes.txt")], problems.append)
    )
    assert [e.stat.path for e in found] == [str(photo)]
    assert problems[0].reason == "no such file or folder"
    assert "not an image file" in problems[1].reason
