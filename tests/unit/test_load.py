"""Decoding: EXIF orientation, metadata, limits, and every way a file can be bad."""

from __future__ import annotations

import io
import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from searchapp.errors import ImageLoadError
from searchapp.ingest.load import LoadLimits, load_image
from searchapp.records import FileStat
from tests.conftest import sample_image


def stat_of(path: Path) -> FileStat:
    st = os.stat(path)
    return FileStat(str(path), st.st_size, st.st_mtime_ns)


def marked_image(width: int = 120, height: int = 80) -> Image.Image:
    """Landscape image, red block in the top-left corner, so orientation is checkable."""
    array = np.zeros((height, width, 3), dtype=np.uint8)
    array[: height // 4, : width // 4] = (255, 0, 0)
    return Image.fromarray(array)


# Stored pixels for each EXIF orientation so that the displayed picture is `marked_image()`.
def stored_for_orientation(orientation: int) -> Image.Image:
    inverse = {
        1: [],
        2: [Image.Transpose.FLIP_LEFT_RIGHT],
        3: [Image.Transpose.ROTATE_180],
        4: [Image.Transpose.FLIP_TOP_BOTTOM],
        5: [Image.Transpose.TRANSPOSE],
        6: [Image.Transpose.ROTATE_90],
        7: [Image.Transpose.TRANSVERSE],
        8: [Image.Transpose.ROTATE_270],
    }[orientation]
    image = marked_image()
    for step in inverse:
        image = image.transpose(step)
    return image


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_gives_the_displayed_picture(tmp_path: Path, orientation: int) -> None:
    path = tmp_path / f"o{orientation}.png"
    exif = Image.Exif()
    exif[0x0112] = orientation
    stored_for_orientation(orientation).save(path, exif=exif.tobytes())
    loaded = load_image(stat_of(path))
    assert (loaded.meta.width, loaded.meta.height) == (120, 80)
    pixels = np.asarray(loaded.image)
    assert tuple(pixels[5, 5]) == (255, 0, 0)  # the red block is top-left as displayed
    assert tuple(pixels[-5, -5]) == (0, 0, 0)


def test_metadata_date_camera_and_gps(tmp_path: Path) -> None:
    exif = Image.Exif()
    exif[0x010F] = "Canon"
    exif[0x0110] = "EOS 5D"
    exif.get_ifd(0x8769)[0x9003] = "2019:07:14 10:30:00"
    exif.get_ifd(0x8769)[0x9011] = "+02:00"
    gps = exif.get_ifd(0x8825)
    gps[1], gps[2] = "N", (52.0, 22.0, 12.0)
    gps[3], gps[4] = "W", (4.0, 53.0, 0.0)
    path = tmp_path / "meta.jpg"
    marked_image().save(path, exif=exif.tobytes())
    meta = load_image(stat_of(path)).meta
    assert (meta.camera_make, meta.camera_model) == ("Canon", "EOS 5D")
    assert meta.taken_source == "exif"
    assert meta.taken_at == pytest.approx(1563093000.0)  # 2019-07-14 08:30:00 UTC
    assert meta.gps_lat == pytest.approx(52.37, abs=1e-3)
    assert meta.gps_lon == pytest.approx(-4.8833, abs=1e-3)
    assert meta.format == "JPEG"


def test_date_falls_back_to_mtime(tmp_path: Path) -> None:
    path = tmp_path / "plain.png"
    marked_image().save(path)
    os.utime(path, ns=(1_600_000_000_000_000_000, 1_600_000_000_000_000_000))
    meta = load_image(stat_of(path)).meta
    assert (meta.taken_source, meta.taken_at) == ("mtime", 1_600_000_000.0)


def test_reduced_jpeg_decode_keeps_enough_pixels_and_full_size_metadata(tmp_path: Path) -> None:
    path = tmp_path / "big.jpg"
    sample_image("astronaut").resize((2048, 2048)).save(path)
    loaded = load_image(stat_of(path), min_side=224)
    assert (loaded.meta.width, loaded.meta.height) == (2048, 2048)
    assert 224 <= min(loaded.image.size) < 512  # decoded at 1/8 scale, not full size
    assert loaded.scale == pytest.approx(2048 / loaded.image.width)


def png_with_header(width: int, height: int) -> bytes:
    """A PNG whose header claims a size, with a tiny (invalid) body: a bomb costs nothing."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0"))


def test_decompression_bomb_is_refused_with_the_flag_to_raise(tmp_path: Path) -> None:
    path = tmp_path / "bomb.png"
    path.write_bytes(png_with_header(40_000, 40_000))
    with pytest.raises(ImageLoadError) as caught:
        load_image(stat_of(path))
    assert "decompression bomb" in caught.value.reason
    assert "--max-pixels" in caught.value.reason


def test_max_pixels_limit_is_configurable(tmp_path: Path) -> None:
    path = tmp_path / "small.png"
    marked_image().save(path)
    with pytest.raises(ImageLoadError, match="--max-pixels"):
        load_image(stat_of(path), limits=LoadLimits(max_pixels=1000))
    assert load_image(stat_of(path), limits=LoadLimits(max_pixels=10_000)).meta.width == 120


def truncated_jpeg() -> bytes:
    buffer = io.BytesIO()
    sample_image("coffee").save(buffer, "JPEG", quality=90)
    return buffer.getvalue()[: len(buffer.getvalue()) // 3]


@pytest.mark.parametrize(
    ("name", "content", "reason"),
    [
        ("empty.jpg", b"", "empty file"),
        ("notes.jpg", b"shopping list: milk, eggs\n" * 20, "not an image"),
        ("truncated.jpg", truncated_jpeg(), "truncated or corrupt"),
        ("garbage.png", b"\x89PNG\r\n\x1a\n" + os.urandom(300), "corrupt"),
    ],
)
def test_bad_files_raise_a_reason(tmp_path: Path, name: str, content: bytes, reason: str) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(ImageLoadError) as caught:
        load_image(stat_of(path))
    assert reason in caught.value.reason
    assert caught.value.path == str(path)


def test_malformed_exif_does_not_stop_decoding(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    marked_image().save(buffer, "JPEG")
    data = buffer.getvalue()
    # an APP1 Exif segment whose TIFF header and IFD are garbage
    junk = b"Exif\x00\x00II*\x00\xff\xff\xff\x7f" + os.urandom(40)
    app1 = b"\xff\xe1" + struct.pack(">H", len(junk) + 2) + junk
    path = tmp_path / "bad_exif.jpg"
    path.write_bytes(data[:2] + app1 + data[2:])
    loaded = load_image(stat_of(path))
    assert (loaded.meta.width, loaded.meta.height) == (120, 80)
    assert loaded.meta.taken_source == "mtime"


def test_vanished_and_unreadable_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "gone.jpg"
    marked_image().save(path)
    stat = stat_of(path)
    path.unlink()
    with pytest.raises(ImageLoadError, match="vanished"):
        load_image(stat)

    locked = tmp_path / "locked.jpg"
    marked_image().save(locked)
    real_open = os.open

    def deny(file, *args, **kwargs):  # type: ignore[no-untyped-def]
        if str(file) == str(locked):  # root ignores chmod: the refusal is simulated
            raise PermissionError(13, "Permission denied")
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(os, "open", deny)
    with pytest.raises(ImageLoadError, match="permission denied"):
        load_image(stat_of(locked))
    monkeypatch.undo()


def test_devices_and_pipes_are_refused_without_reading_or_waiting(tmp_path: Path) -> None:
    with pytest.raises(ImageLoadError, match="not a regular file"):
        load_image(FileStat("/dev/zero", 0, 0))  # read whole, it grew to 4.9 GB in 20 s
    fifo = tmp_path / "pipe.jpg"
    os.mkfifo(fifo)  # opened for reading, a pipe with no writer used to wait forever
    with pytest.raises(ImageLoadError, match="not a regular file"):
        load_image(stat_of(fifo))


def test_a_file_that_grows_past_the_limit_while_read_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "growing.jpg"
    marked_image().save(path)
    small = FileStat(str(path), 10, 0)  # as scanned, before it grew
    with pytest.raises(ImageLoadError, match="grew past"):
        load_image(small, limits=LoadLimits(max_file_bytes=100))


@pytest.mark.parametrize("mode", ["RGBA", "LA", "P", "L", "I;16", "CMYK"])
def test_every_pixel_mode_becomes_rgb(tmp_path: Path, mode: str) -> None:
    image = sample_image("coffee").resize((64, 48))
    converted = image.convert(mode) if mode != "I;16" else image.convert("I").convert("I;16")
    fmt = "TIFF" if mode in ("CMYK", "I;16") else "PNG"
    path = tmp_path / f"img.{fmt.lower()}"
    converted.save(path, fmt)
    loaded = load_image(stat_of(path))
    assert loaded.image.mode == "RGB"
    assert loaded.image.size == (64, 48)


@pytest.mark.parametrize("fmt", ["GIF", "BMP", "WEBP", "PPM", "TIFF"])
def test_formats_decode(tmp_path: Path, fmt: str) -> None:
    path = tmp_path / f"x.{fmt.lower()}"
    sample_image("rocket").resize((100, 80)).save(path, fmt)
    loaded = load_image(stat_of(path))
    assert loaded.meta.format == fmt
    assert loaded.image.size == (100, 80)


def write_heic(path: Path) -> None:
    import pillow_heif  # in the dev extra; written through its own API, so Pillow stays untaught

    pillow_heif.from_pillow(sample_image("chelsea")).save(path, quality=80)


def test_heic_decodes_with_pillow_heif_installed(tmp_path: Path) -> None:
    path = tmp_path / "phone.heic"
    write_heic(path)
    # A fresh interpreter: loading scikit-image's samples (through imageio) registers pillow-heif
    # in this one, which would hide a loader that does not register it itself.
    code = (
        "import os, sys; from searchapp.records import FileStat; "
        "from searchapp.ingest.load import load_image; st = os.stat(sys.argv[1]); "
        "loaded = load_image(FileStat(sys.argv[1], st.st_size, st.st_mtime_ns)); "
        "print(loaded.meta.format, *loaded.image.size)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=60
    )
    assert done.stdout.split() == ["HEIF", *map(str, sample_image("chelsea").size)], done.stderr


def test_heic_without_pillow_heif_names_the_package(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from searchapp.ingest import load

    path = tmp_path / "phone.heic"
    write_heic(path)
    monkeypatch.setattr(load, "heif_opener", lambda: False)
    with pytest.raises(ImageLoadError, match="pip install pillow-heif"):
        load_image(stat_of(path))
