"""Copies of real photos with known transforms, for the duplicate evaluation.

Each transform writes `<out>/<transform>/<source path with / as __>.<ext>`; the tier a copy should
be found in is TRANSFORMS[name].tier. Seeded, so a run can be repeated exactly.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageFont


@dataclass(frozen=True)
class Transform:
    tier: str  # where the copy must be found: exact, near or crop
    apply: Callable[[Image.Image, np.random.Generator], Image.Image]
    save: str = "jpeg"  # jpeg, jpeg-low, png, exif-rotated


def _resize(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    factor = float(rng.uniform(0.3, 0.6))
    size = (max(16, round(image.width * factor)), max(16, round(image.height * factor)))
    return image.resize(size, Image.Resampling.LANCZOS)


def _crop(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    keep = float(rng.uniform(0.6, 0.95))  # of the area
    aspect = float(rng.uniform(0.8, 1.25))
    width = min(image.width, round(image.width * np.sqrt(keep) * aspect))
    height = min(image.height, round(image.width * image.height * keep / width))
    left = int(rng.integers(0, image.width - width + 1))
    top = int(rng.integers(0, image.height - height + 1))
    return image.crop((left, top, left + width, top + height))


def _light(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    brighter = ImageEnhance.Brightness(image).enhance(float(rng.choice([0.7, 1.3])))
    return ImageEnhance.Contrast(brighter).enhance(float(rng.choice([0.75, 1.25])))


def _watermark(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    marked = image.copy()
    draw = ImageDraw.Draw(marked)
    size = max(12, image.height // 14)
    font = ImageFont.load_default(size=size)
    text = "(c) searchapp test"
    x = int(rng.integers(0, max(1, image.width // 3)))
    y = int(image.height - 2 * size)
    draw.text((x + 2, y + 2), text, fill=(0, 0, 0), font=font)
    draw.text((x, y), text, fill=(255, 255, 255), font=font)
    return marked


def _turn_25(image: Image.Image, _rng: np.random.Generator) -> Image.Image:
    return image.rotate(25, resample=Image.Resampling.BICUBIC)  # corners filled black


def _square(image: Image.Image, _rng: np.random.Generator) -> Image.Image:
    side = min(image.size)
    return image.resize((side, side), Image.Resampling.LANCZOS)  # aspect ratio changed


def _same(image: Image.Image, _rng: np.random.Generator) -> Image.Image:
    return image


def _turn(step: Image.Transpose) -> Callable[[Image.Image, np.random.Generator], Image.Image]:
    return lambda image, _rng: image.transpose(step)


TRANSFORMS: dict[str, Transform] = {
    "resize": Transform("near", _resize),
    "recompress": Transform("near", _same, save="jpeg-low"),
    "crop": Transform("crop", _crop),
    "light": Transform("near", _light),
    "rot90": Transform("near", _turn(Image.Transpose.ROTATE_90)),
    "rot180": Transform("near", _turn(Image.Transpose.ROTATE_180)),
    "rot270": Transform("near", _turn(Image.Transpose.ROTATE_270)),
    "flip": Transform("near", _turn(Image.Transpose.FLIP_LEFT_RIGHT)),
    "format": Transform("exact", _same, save="png"),
    "exif": Transform("near", _same, save="exif-rotated"),
    "watermark": Transform("near", _watermark),
    # imagededup's "transformed" benchmark adds these three
    "vflip": Transform("near", _turn(Image.Transpose.FLIP_TOP_BOTTOM)),
    "rot25": Transform("near", _turn_25),
    "square": Transform("near", _square),
}

ORIENTATION_TAG = 0x0112


def _encode(image: Image.Image, how: str) -> tuple[bytes, str]:
    buffer = io.BytesIO()
    if how == "png":
        image.save(buffer, "PNG")
        return buffer.getvalue(), "png"
    if how == "exif-rotated":
        # stored turned a quarter, with orientation 6 telling viewers to turn it back
        stored = image.transpose(Image.Transpose.ROTATE_90)
        exif = Image.Exif()
        exif[ORIENTATION_TAG] = 6
        stored.save(buffer, "JPEG", quality=90, exif=exif.tobytes())
        return buffer.getvalue(), "jpg"
    image.save(buffer, "JPEG", quality=15 if how == "jpeg-low" else 90)
    return buffer.getvalue(), "jpg"


def copy_name(source: Path, root: Path) -> str:
    return str(source.relative_to(root).with_suffix("")).replace("/", "__")


def make_copies(
    sources: list[Path], root: Path, out: Path, seed: int = 0
) -> dict[Path, tuple[Path, str]]:
    """Write every transform of every source; return {copy: (source, expected tier)}."""
    from searchapp.ingest.load import load_image
    from searchapp.records import FileStat

    rng = np.random.default_rng(seed)
    made: dict[Path, tuple[Path, str]] = {}
    for source in sources:
        stat = source.stat()
        image = load_image(FileStat(str(source), stat.st_size, stat.st_mtime_ns)).image
        for name, transform in TRANSFORMS.items():
            data, ext = _encode(transform.apply(image, rng), transform.save)
            target = out / name / f"{copy_name(source, root)}.{ext}"
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
            made[target] = (source, transform.tier)
    return made
