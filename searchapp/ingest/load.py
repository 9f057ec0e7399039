"""Read, hash and decode one photo: EXIF orientation applied, metadata extracted, limits enforced.

A file is read once; the same bytes are hashed (for change and move detection) and decoded.
Every way a file can fail becomes an ImageLoadError with a reason a person can act on.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import io
import os
import re
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from stat import S_ISREG
from typing import Any, BinaryIO

import numpy as np
from PIL import Image, UnidentifiedImageError

from searchapp.errors import ImageLoadError
from searchapp.records import FileStat, ImageMeta

DEFAULT_MAX_PIXELS = 250_000_000  # 250 MP: above any camera, below what a bomb would claim
DEFAULT_MAX_FILE_BYTES = 1 << 30

ORIENTATION_TAG = 0x0112
EXIF_IFD, GPS_IFD = 0x8769, 0x8825
DATETIME_ORIGINAL, OFFSET_TIME_ORIGINAL, DATETIME = 0x9003, 0x9011, 0x0132
MAKE, MODEL = 0x010F, 0x0110

_TRANSPOSE = {
    2: [Image.Transpose.FLIP_LEFT_RIGHT],
    3: [Image.Transpose.ROTATE_180],
    4: [Image.Transpose.FLIP_TOP_BOTTOM],
    5: [Image.Transpose.TRANSPOSE],
    6: [Image.Transpose.ROTATE_270],
    7: [Image.Transpose.TRANSVERSE],
    8: [Image.Transpose.ROTATE_90],
}


@dataclass(frozen=True)
class LoadLimits:
    max_pixels: int = DEFAULT_MAX_PIXELS
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES


@dataclass
class LoadedImage:
    image: Image.Image  # RGB, as displayed; maybe decoded at reduced size
    meta: ImageMeta  # width/height are the full displayed size
    content_hash: str

    @property
    def scale(self) -> float:
        """Full displayed pixels per decoded pixel."""
        return self.meta.width / self.image.width


def _hasher() -> Any:
    return hashlib.blake2b(digest_size=16)


def content_hash(data: bytes) -> str:
    digest = _hasher()
    digest.update(data)
    return str(digest.hexdigest())


def holds_content(path: str, size: int, digest: str) -> bool:
    """Whether a regular file (not a link) at `path` holds these bytes: how undo and `check`
    recognise a photo by its catalog row wherever it went."""
    try:
        st = os.lstat(path)
        if not S_ISREG(st.st_mode) or st.st_size != size:
            return False
        return hash_file(path) == digest
    except (OSError, ImageLoadError):
        return False


@contextlib.contextmanager
def _regular_file(path: str) -> Iterator[BinaryIO]:
    """A regular file opened for reading, every way that fails an ImageLoadError that says
    what to do."""
    try:
        # non-blocking, so that opening a named pipe cannot hang; a regular file ignores it
        with open(os.open(path, os.O_RDONLY | os.O_NONBLOCK), "rb") as handle:
            if not S_ISREG(os.fstat(handle.fileno()).st_mode):
                raise ImageLoadError(
                    path, "not a regular file (a device, pipe or socket); pass a photo file"
                )
            yield handle
    except FileNotFoundError:
        raise ImageLoadError(path, "file vanished during the run") from None
    except PermissionError:
        raise ImageLoadError(
            path, "permission denied; make it readable (chmod +r) and run index again"
        ) from None
    except IsADirectoryError:
        raise ImageLoadError(path, "is a folder, not a file") from None
    except OSError as exc:
        raise ImageLoadError(path, f"cannot read: {exc.strerror}") from None


def hash_file(path: str) -> str:
    """content_hash of a file read a MiB at a time: a video may be larger than memory allows."""
    digest = _hasher()
    with _regular_file(path) as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return str(digest.hexdigest())


def read_bytes(stat: FileStat, limits: LoadLimits) -> bytes:
    limit_mb = f"{limits.max_file_bytes / 2**20:.0f} MiB"
    if stat.size > limits.max_file_bytes:
        raise ImageLoadError(
            stat.path,
            f"file is {stat.size / 2**20:.0f} MiB, over the {limit_mb} limit (raise it with "
            "--max-file-mb)",
        )
    with _regular_file(stat.path) as handle:
        # at most the limit: a file may grow while read. Asked for the size it has (a read
        # of the whole limit allocates it: 1 ms a file), then for any more
        size = min(os.fstat(handle.fileno()).st_size, limits.max_file_bytes)
        data = handle.read(size + 1)
        if len(data) > size:
            data += handle.read(limits.max_file_bytes + 1 - len(data))
    if len(data) > limits.max_file_bytes:
        raise ImageLoadError(
            stat.path,
            f"file grew past the {limit_mb} limit while read (raise it with --max-file-mb)",
        )
    return data


def _rational(value: Any) -> float:
    if isinstance(value, tuple) and len(value) == 2:
        return float(value[0]) / float(value[1]) if value[1] else 0.0
    return float(value)


def _gps(exif: Image.Exif) -> tuple[float | None, float | None]:
    try:
        gps = exif.get_ifd(GPS_IFD)
        if not gps or 2 not in gps or 4 not in gps:
            return None, None
        lat = sum(_rational(v) / 60**i for i, v in enumerate(gps[2]))
        lon = sum(_rational(v) / 60**i for i, v in enumerate(gps[4]))
        if str(gps.get(1, "N")).upper().startswith("S"):
            lat = -lat
        if str(gps.get(3, "E")).upper().startswith("W"):
            lon = -lon
        if not (-90 <= lat <= 90 and -180 <= lon <= 180):
            return None, None
        return round(lat, 7), round(lon, 7)
    except Exception:  # malformed GPS blocks are common; they must not cost the photo
        return None, None


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    text = str(value).replace("\x00", "").strip()
    return text[:128] or None


def _parse_exif_time(raw: Any, offset: Any) -> float | None:
    text = _text(raw)
    if not text:
        return None
    try:
        moment = datetime.strptime(text[:19], "%Y:%m:%d %H:%M:%S")
    except ValueError:
        return None
    offset_text = _text(offset)
    if offset_text and len(offset_text) >= 6 and offset_text[0] in "+-":
        try:
            sign = 1 if offset_text[0] == "+" else -1
            hours, minutes = int(offset_text[1:3]), int(offset_text[4:6])
            tz = timezone(sign * timedelta(hours=hours, minutes=minutes))
            return moment.replace(tzinfo=tz).timestamp()
        except ValueError:
            pass
    return moment.timestamp()  # no offset recorded: camera local time, read as ours


def _exif_facts(image: Image.Image) -> tuple[int, dict[str, Any]]:
    """(orientation, metadata) from EXIF; malformed EXIF yields defaults, never an error."""
    facts: dict[str, Any] = {}
    try:
        exif = image.getexif()
    except Exception:
        return 1, facts
    try:
        orientation = int(exif.get(ORIENTATION_TAG, 1))
    except (TypeError, ValueError, OverflowError):  # a rational, text, or inf (fuzzing found)
        orientation = 1
    try:
        sub = exif.get_ifd(EXIF_IFD)
        taken = _parse_exif_time(sub.get(DATETIME_ORIGINAL), sub.get(OFFSET_TIME_ORIGINAL))
        facts["taken_at"] = taken or _parse_exif_time(exif.get(DATETIME), None)
    except Exception:
        pass
    facts["camera_make"] = _text(exif.get(MAKE))
    facts["camera_model"] = _text(exif.get(MODEL))
    facts["gps_lat"], facts["gps_lon"] = _gps(exif)
    return (orientation if 1 <= orientation <= 8 else 1), facts


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        pixels = np.asarray(image, dtype=np.float64)
        top = pixels.max() or 1.0
        return Image.fromarray((pixels * (255.0 / top)).astype(np.uint8)).convert("RGB")
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def _bomb_reason(size: str, limits: LoadLimits) -> str:
    return (
        f"decompression bomb refused: {size}, over the {limits.max_pixels / 1e6:.0f} MP limit "
        "(raise it with --max-pixels)"
    )


HEIF_BRANDS = frozenset({b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1"})
HEIF_MISSING = "HEIC/HEIF needs pillow-heif: pip install pillow-heif (or searchapp[heic])"


@functools.cache
def heif_opener() -> bool:
    """Teach Pillow HEIC/HEIF through pillow-heif, once, and only when such a file turns up:
    the import costs 70 ms that JPEG-only runs and queries need not pay."""
    try:
        import pillow_heif
    except ImportError:
        return False
    pillow_heif.register_heif_opener()
    return True


def _needs_heif(data: bytes) -> bool:
    """An ISO media file with a HEIF brand (AVIF, the same container, Pillow reads itself)."""
    return data[4:8] == b"ftyp" and data[8:12] in HEIF_BRANDS


def decode(
    data: bytes,
    stat: FileStat,
    *,
    min_side: int | None,
    limits: LoadLimits,
    digest: str | None = None,
) -> LoadedImage:
    """Decode bytes to an RGB image as displayed. With min_side, JPEGs decode at a reduced
    scale whose shorter side is still at least min_side (DCT-domain, several times faster).
    `digest` is the bytes' content hash when the caller has it already (1.8 ms per 12 MP file)."""
    path = stat.path
    if not data:
        raise ImageLoadError(path, "empty file (0 bytes)")
    Image.MAX_IMAGE_PIXELS = max(Image.MAX_IMAGE_PIXELS or 0, limits.max_pixels)
    if _needs_heif(data) and not heif_opener():
        raise ImageLoadError(path, HEIF_MISSING)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # PIL warns on odd EXIF; we handle what matters
        try:
            image = Image.open(io.BytesIO(data))
        except UnidentifiedImageError:
            raise ImageLoadError(
                path, "not an image: the content is no format Pillow reads (renamed or corrupt?)"
            ) from None
        except Image.DecompressionBombError as exc:
            claimed = re.search(r"\((\d+) pixels\)", str(exc))
            pixels = int(claimed.group(1)) if claimed else 0
            raise ImageLoadError(path, _bomb_reason(f"{pixels / 1e6:.0f} MP", limits)) from None
        except Exception as exc:
            raise ImageLoadError(path, f"corrupt image header: {exc}") from None
        stored_w, stored_h = image.size
        if stored_w * stored_h > limits.max_pixels:
            size = f"{stored_w}x{stored_h} = {stored_w * stored_h / 1e6:.0f} MP"
            raise ImageLoadError(path, _bomb_reason(size, limits))
        fmt = image.format or "UNKNOWN"
        orientation, facts = _exif_facts(image)
        if min_side and fmt == "JPEG":
            image.draft("RGB", (min_side, min_side))
        try:
            image.load()
            rgb = _to_rgb(image)
        except Exception as exc:
            raise ImageLoadError(path, f"truncated or corrupt image data: {exc}") from None
    for step in _TRANSPOSE.get(orientation, []):
        rgb = rgb.transpose(step)
    width, height = (stored_h, stored_w) if orientation >= 5 else (stored_w, stored_h)
    taken = facts.pop("taken_at", None)
    meta = ImageMeta(
        width=width,
        height=height,
        format=fmt,
        taken_at=taken if taken is not None else stat.mtime_ns / 1e9,
        taken_source="exif" if taken is not None else "mtime",
        **facts,
    )
    return LoadedImage(image=rgb, meta=meta, content_hash=digest or content_hash(data))


def load_image(
    stat: FileStat, *, min_side: int | None = None, limits: LoadLimits | None = None
) -> LoadedImage:
    limits = limits or LoadLimits()
    return decode(read_bytes(stat, limits), stat, min_side=min_side, limits=limits)
