"""Photo quality metrics, measured on a greyscale copy scaled to 512 px on its longer side so
that photos of any size compare:

- blur: variance of the Laplacian (sharp edges give large second derivatives);
- brightness: mean grey level, 0-255;
- contrast: standard deviation of the grey levels;
- colourfulness: Hasler and Suesstrunk's measure on the RGB pixels, 0 for a greyscale photo
  (used to suggest keeping the colour original of a greyscale copy).

A photo is flagged as low quality when it is blurry, nearly black, washed out or flat. Measured on
the 224 real photos in ../shared/data/photos: blur p5 122 and median 548, brightness 32-197.
Two are flagged: a hazy telephoto shot (boofcv/scale/mountain_19p9mm.jpg, blur 4.9, genuinely
soft) and a uniform grey EXIF test file (contrast 0). Versions of real photos blurred
(Gaussian sigma 6: blur 1.6-7.7), darkened (x0.1) or flattened (contrast x0.1) are all flagged.
Skipping is opt-in (--skip-low-quality): flagged photos stay listed, only their vectors are left
out.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

MEASURE_SIDE = 512
BLURRY_BELOW = 15.0
DARK_BELOW = 20.0
WASHED_OUT_ABOVE = 240.0
FLAT_BELOW = 12.0


@dataclass(frozen=True)
class Quality:
    blur: float
    brightness: float
    contrast: float
    colourfulness: float

    @property
    def flag(self) -> str | None:
        """Why the photo is low quality, or None."""
        if self.brightness < DARK_BELOW:
            return "too dark"
        if self.brightness > WASHED_OUT_ABOVE:
            return "washed out"
        if self.contrast < FLAT_BELOW:
            return "no contrast"
        if self.blur < BLURRY_BELOW:
            return "blurry"
        return None


def measure(image: Image.Image) -> Quality:
    """OpenCV's integer kernels and one-pass mean/deviation: exact on 8-bit pixels, and half
    the time of float arrays (it runs for every photo indexed)."""
    import cv2

    scale = MEASURE_SIDE / max(image.size)
    if scale < 1:
        image = image.resize(
            (max(1, round(image.width * scale)), max(1, round(image.height * scale))),
            Image.Resampling.BILINEAR,
        )
    grey = np.asarray(image.convert("L"))
    _, laplacian_std = cv2.meanStdDev(cv2.Laplacian(grey, cv2.CV_16S))
    mean, std = cv2.meanStdDev(grey)
    return Quality(
        blur=round(float(laplacian_std[0, 0]) ** 2, 2),
        brightness=round(float(mean[0, 0]), 2),
        contrast=round(float(std[0, 0]), 2),
        colourfulness=round(colourfulness(np.asarray(image.convert("RGB"))), 2),
    )


def colourfulness(rgb: np.ndarray) -> float:
    """Hasler and Suesstrunk: spread and mean of the red-green and yellow-blue opponents."""
    import cv2

    red, green, blue = (rgb[..., channel].astype(np.int16) for channel in range(3))
    # yellow-blue is (r + g) / 2 - b; twice it is exact in 16 bits
    opponents = np.dstack((red - green, red + green - 2 * blue))
    means, stds = (values.ravel() / (1.0, 2.0) for values in cv2.meanStdDev(opponents))
    return float(np.hypot(*stds) + 0.3 * np.hypot(*means))
