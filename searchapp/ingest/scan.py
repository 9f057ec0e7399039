"""Recursive scan of photo folders: symlink-loop safe, one stat per file, nothing read."""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from searchapp.ingest.load import HEIF_MISSING
from searchapp.ingest.video import VIDEO_SUFFIXES
from searchapp.records import FileStat

# Extensions we decode with Pillow.
SUPPORTED_EXTENSIONS = frozenset(
    {
        ".jpg",
        ".jpeg",
        ".jpe",
        ".jfif",
        ".png",
        ".webp",
        ".tif",
        ".tiff",
        ".bmp",
        ".gif",
        ".ppm",
        ".pgm",
        ".pbm",
        ".pnm",
        ".avif",
    }
)
HEIF_EXTENSIONS = frozenset({".heic", ".heif", ".hif"})

# Image files we recognise but cannot index: each is reported with its reason, not ignored.
UNSUPPORTED_REASONS: dict[str, str] = {
    ".svg": "unsupported format: SVG is vector graphics, not a photo",
    ".psd": "unsupported format: Photoshop PSD; export it as JPEG or PNG",
    ".jxl": "unsupported format: JPEG XL; export it as JPEG",
    ".ico": "unsupported format: ICO icon",
    **{
        ext: "unsupported format: camera RAW; index the JPEG export instead"
        for ext in (".cr2", ".cr3", ".nef", ".arw", ".dng", ".orf", ".rw2", ".raf", ".srw")
    },
}


def heif_available() -> bool:
    return importlib.util.find_spec("pillow_heif") is not None  # the loader imports it if needed


@dataclass(frozen=True)
class ScanEntry:
    stat: FileStat
    unsupported: str | None = None  # a reason when the file is an image we cannot index


@dataclass(frozen=True)
class ScanProblem:
    path: str
    reason: str


def classify(path: str, heif: bool) -> tuple[bool, str | None]:
    """(is an image file we care about, reason it is unsupported or None)."""
    ext = os.path.splitext(path)[1].lower()
    if ext in SUPPORTED_EXTENSIONS or ext in VIDEO_SUFFIXES:
        return True, None
    if ext in HEIF_EXTENSIONS:
        if heif:
            return True, None
        return True, f"unsupported format: {HEIF_MISSING}"
    if ext in UNSUPPORTED_REASONS:
        if _raster_inside(path):  # a photo under another name: its bytes decide
            return True, None
        return True, UNSUPPORTED_REASONS[ext]
    return False, None


# How the formats we decode begin: a file named .svg or .psd that begins so is a photo under
# another name. Not TIFF's: camera RAW files (.cr2, .nef, .dng) are TIFF inside
RASTER_MAGIC = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"GIF87a", b"GIF89a", b"BM")


def _raster_inside(path: str) -> bool:
    try:
        with open(path, "rb") as file:
            head = file.read(16)
    except OSError:
        return False  # the reader reports it
    webp = head[:4] == b"RIFF" and head[8:12] == b"WEBP"
    return webp or head.startswith(RASTER_MAGIC)


def scan(
    roots: list[str], on_problem: Callable[[ScanProblem], None] | None = None
) -> Iterator[ScanEntry]:
    """Yield every image file under the roots (files or folders), each once, in sorted order."""
    heif = heif_available()
    seen_dirs: set[tuple[int, int]] = set()
    seen_files: set[str] = set()

    def report(path: str, reason: str) -> None:
        if on_problem is not None:
            on_problem(ScanProblem(path, reason))

    def entry_for(path: str, st: os.stat_result) -> ScanEntry | None:
        wanted, unsupported = classify(path, heif)
        if not wanted or path in seen_files:
            return None
        seen_files.add(path)
        return ScanEntry(FileStat(path, st.st_size, st.st_mtime_ns), unsupported)

    def walk(directory: str) -> Iterator[ScanEntry]:
        try:
            st = os.stat(directory)
        except OSError as exc:
            report(directory, f"cannot read folder: {exc.strerror}")
            return
        key = (st.st_dev, st.st_ino)
        if key in seen_dirs:  # a symlink loop or a second link to a folder already walked
            return
        seen_dirs.add(key)
        try:
            with os.scandir(directory) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as exc:
            report(directory, f"cannot list folder: {exc.strerror}; check its permissions")
            return
        for dir_entry in entries:
            try:
                if dir_entry.is_dir(follow_symlinks=True):
                    yield from walk(dir_entry.path)
                    continue
                if not dir_entry.is_file(follow_symlinks=True):
                    if dir_entry.is_symlink() and classify(dir_entry.path, heif)[0]:
                        target = os.readlink(dir_entry.path)
                        if not os.path.exists(dir_entry.path):
                            report(dir_entry.path, f"broken link: its target {target} is gone")
                    continue
                found = entry_for(dir_entry.path, dir_entry.stat(follow_symlinks=True))
            except OSError:
                continue  # vanished between listing and stat, or a dangling symlink
            if found is not None:
                yield found

    for root in roots:
        path = os.path.abspath(os.path.expanduser(root))
        if os.path.isdir(path):
            yield from walk(path)
        elif os.path.isfile(path):
            if path in seen_files:
                continue  # a file named twice, or listed and under a folder given too
            found = entry_for(path, os.stat(path))
            if found is not None:
                yield found
            else:
                report(path, "not an image file searchapp reads (see `searchapp index --help`)")
        else:
            report(path, "no such file or folder")
