"""Write scikit-image's bundled sample photos to a folder, so searchapp has real photos to index
on a machine with no network, and a few edited copies of them, so that `searchapp dupes` has
something to find. Usage: python examples/sample_photos.py DIR

The photos ship inside scikit-image (installed with searchapp's dev extra); see its documentation
for their sources and licences.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import Image

PHOTOS = {
    "cat.jpg": lambda data: data.chelsea(),
    "coffee.jpg": lambda data: data.coffee(),
    "astronaut.jpg": lambda data: data.astronaut(),
    "rocket.jpg": lambda data: data.rocket(),
    "cameraman.jpg": lambda data: data.camera(),
    "motorcycle_left.jpg": lambda data: data.stereo_motorcycle()[0],
    "motorcycle_right.jpg": lambda data: data.stereo_motorcycle()[1],
}
# copy name -> (photo it is made from, the edit): one copy for each tier of `searchapp dupes`
COPIES = {
    "coffee_copy.png": ("coffee.jpg", "the same pixels saved as PNG (exact)"),
    "cat_small.jpg": ("cat.jpg", "half the size, re-saved at quality 60 (near)"),
    "astronaut_crop.jpg": ("astronaut.jpg", "the middle 70% cut out (crop)"),
}


def edited(name: str, image: Image.Image) -> Image.Image:
    if name == "cat_small.jpg":
        return image.resize((image.width // 2, image.height // 2), Image.Resampling.LANCZOS)
    if name == "astronaut_crop.jpg":
        width, height = image.size
        return image.crop(
            (width * 15 // 100, height * 15 // 100, width * 85 // 100, height * 85 // 100)
        )
    return image


def main() -> int:
    if len(sys.argv) != 2:
        print("usage: python examples/sample_photos.py DIR", file=sys.stderr)
        return 2
    try:
        from skimage import data
    except ImportError:
        print("needs scikit-image: pip install scikit-image", file=sys.stderr)
        return 1
    folder = Path(sys.argv[1])
    folder.mkdir(parents=True, exist_ok=True)
    for name, load in PHOTOS.items():
        Image.fromarray(np.asarray(load(data))).convert("RGB").save(folder / name, quality=92)
    for name, (source, _) in COPIES.items():
        with Image.open(folder / source) as image:
            edited(name, image.convert("RGB")).save(folder / name, quality=60)
    print(f"wrote {len(PHOTOS)} photos and {len(COPIES)} edited copies to {folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
