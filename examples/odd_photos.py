"""Write the odd frames every real collection ends up with: a black frame (a shot with the lens
cap on) and a camera test chart (colour bars over a checkerboard). `searchapp outliers` should
put them first. Usage: python examples/odd_photos.py DIR
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import Image


def test_chart() -> Image.Image:
    chart = np.zeros((720, 960, 3), dtype=np.uint8)
    bars = [(255, 255, 255), (255, 255, 0), (0, 255, 255), (0, 255, 0), (255, 0, 255), (255, 0, 0)]
    for i, colour in enumerate(bars):
        chart[:480, i * 160 : (i + 1) * 160] = colour
    squares = (np.indices((240, 960)) // 40).sum(axis=0) % 2
    chart[480:] = (squares * 255)[..., None]
    return Image.fromarray(chart)


def main(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (1280, 960)).save(folder / "black_frame.jpg", quality=90)
    test_chart().save(folder / "test_chart.png")
    print(f"wrote black_frame.jpg and test_chart.png to {folder}")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python examples/odd_photos.py DIR")
    main(Path(sys.argv[1]))
