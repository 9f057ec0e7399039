"""A folder of synthetic (upscaled) 12-megapixel JPEGs, made from photos of 1 MP or less.

python benchmarks/phone_photos.py OUT [--count 200] [--source ../shared/data/photos]

Not real 12 MP photos: the benchmarks measure on the 43 real phone photos of
../shared/data/phone12mp (4032x3024, EXIF orientation 6) by default. Use this only where a run
needs more than 43 photos, and say "synthetic (upscaled)" wherever its figures are quoted: an
upscaled photo has no detail of its own above its source's resolution, so it decodes, compresses
and matches unlike a real one. The folder gets a SYNTHETIC-UPSCALED.txt beside the photos, and
each photo's EXIF model says so, which the benchmarks read to label their output.

Each source photo is upright-rotated, cropped to 4:3 (portrait stays portrait), resized to
4000x3000 and given a little sensor grain (upscaled photos are too smooth, and decode faster than
real ones), then saved as a phone does: baseline JPEG, quality 92, 4:2:0 chroma, with EXIF date,
make and model. There are fewer sources than photos wanted, so sources are reused with another
crop and grain: every file's bytes differ. Seeded: the same command writes the same files.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_SOURCE = ROOT.parent / "shared" / "data" / "photos"
LONG, SHORT = 4000, 3000
# Grey levels of Gaussian grain. Chosen so that a reduced-size decode costs what it costs on real
# 12 MP phone photos (12-16 ms here; issue 6 measured 12-15 ms): 0 gives 12 ms at 1.2 MB, 1.5
# gives 16 ms at 1.7 MB, 3 gives 25 ms at 2.5 MB. Real phone files are larger for the same cost:
# their bytes are detail in the low frequencies, where grain is all high frequencies.
GRAIN = 1.5
SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff"}
MARKER = "SYNTHETIC-UPSCALED.txt"  # index_throughput.py and reader_pool.py look for it
MAKE, MODEL = "searchapp-bench", "synthetic (upscaled)"


def sources(folder: Path) -> list[Path]:
    found = sorted(p for p in folder.rglob("*") if p.suffix.lower() in SUFFIXES and p.is_file())
    usable = []
    for path in found:
        try:
            with Image.open(path) as image:
                if min(image.size) >= 256:  # tiny icons would only be smears at 12 MP
                    usable.append(path)
        except OSError:
            continue
    return usable


def phone_photo(path: Path, rng: np.random.Generator) -> Image.Image:
    with Image.open(path) as opened:
        image = ImageOps.exif_transpose(opened).convert("RGB")
    portrait = image.height > image.width
    target = (SHORT, LONG) if portrait else (LONG, SHORT)
    # a random 4:3 window of 85-100% of the largest one, so reused sources differ
    aspect = target[0] / target[1]
    width = min(image.width, round(image.height * aspect))
    height = round(width / aspect)
    scale = float(rng.uniform(0.85, 1.0))
    width, height = max(8, round(width * scale)), max(6, round(height * scale))
    left = int(rng.integers(0, image.width - width + 1))
    top = int(rng.integers(0, image.height - height + 1))
    window = image.crop((left, top, left + width, top + height))
    big = np.asarray(window.resize(target, Image.Resampling.BICUBIC), dtype=np.float32)
    big += rng.normal(0.0, GRAIN, size=big.shape[:2])[..., None].astype(np.float32)
    return Image.fromarray(np.clip(big, 0, 255).astype(np.uint8))


def exif_for(index: int) -> Image.Exif:
    exif = Image.Exif()
    exif[0x010F] = MAKE  # Make
    exif[0x0110] = MODEL  # Model
    ifd = exif.get_ifd(0x8769)
    ifd[0x9003] = f"2024:06:{1 + index % 28:02d} 12:{index % 60:02d}:00"  # DateTimeOriginal
    return exif


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    found = sources(args.source)
    if not found:
        print(f"no photos of 256 px or more under {args.source}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(args.seed)
    total, sizes = 0, []
    for index in range(args.count):
        source = found[index % len(found)]
        with Image.open(source) as opened:
            sizes.append(opened.width * opened.height)
        photo = phone_photo(source, rng)
        target = args.out / f"synthetic-upscaled-{index:04d}.jpg"
        photo.save(target, "JPEG", quality=92, subsampling=2, exif=exif_for(index))
        total += target.stat().st_size
    median_mp = float(np.median(sizes)) / 1e6
    used = min(args.count, len(found))
    (args.out / MARKER).write_text(
        f"synthetic (upscaled): {args.count} JPEGs of {LONG}x{SHORT} made by "
        f"benchmarks/phone_photos.py from {used} photos of {args.source} (median "
        f"{median_mp:.1f} MP), upscaled {LONG * SHORT / 1e6 / median_mp:.0f}x in area, grain "
        f"{GRAIN}, seed {args.seed}. Not real 12 MP photos: see ../shared/data/phone12mp.\n"
    )
    print(
        f"wrote {args.count} synthetic (upscaled) photos of {LONG}x{SHORT} to {args.out} "
        f"({total / args.count / 1e6:.1f} MB each on average), upscaled from {used} photos "
        f"of median {median_mp:.1f} MP; label figures measured on them 'synthetic (upscaled)'"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
