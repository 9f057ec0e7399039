"""Write scikit-image's bundled sample photos to a folder, so searchapp has real photos to index
on a machine with no network. Usage: python examples/sample_photos.py DIR

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
    print(f"wrote {len(PHOTOS)} photos to {folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
