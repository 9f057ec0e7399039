"""What every detector returns, and the box arithmetic they share."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
from PIL import Image

from searchapp.records import BBox


@dataclass(frozen=True)
class Detection:
    bbox: BBox  # pixels of the image handed to detect()
    label: str
    score: float


@dataclass(frozen=True)
class DetectorOptions:
    weights: Path | None = None  # a local checkpoint instead of the cache
    allow_download: bool = False
    min_score: float = 0.3  # torchvision detectors: COCO score threshold
    max_objects: int = 8  # per photo, after NMS
    min_area: float = 0.01  # fraction of the photo: smaller boxes hold too few pixels to embed
    max_area: float = 0.7  # larger boxes say little the scene embedding does not
    device: str = "cpu"  # a torch device, as the encoder's (encoders/devices.py)


class Detector(Protocol):
    name: str

    def detect(self, images: list[Image.Image]) -> list[list[Detection]]:
        """Boxes per image, best first, already filtered by area, NMS and the cap."""
        ...


def box_iou(a: BBox, b: BBox) -> float:
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def select(
    detections: list[Detection], size: tuple[int, int], options: DetectorOptions, iou: float = 0.5
) -> list[Detection]:
    """Area limits, then greedy class-agnostic NMS, then the cap: best scores first."""
    area = float(size[0] * size[1])
    kept: list[Detection] = []
    for det in sorted(detections, key=lambda d: -d.score):
        x0, y0, x1, y1 = det.bbox
        fraction = (x1 - x0) * (y1 - y0) / area
        if not options.min_area <= fraction <= options.max_area:
            continue
        if any(box_iou(det.bbox, other.bbox) > iou for other in kept):
            continue
        kept.append(det)
        if len(kept) >= options.max_objects:
            break
    return kept


def clip_box(box: np.ndarray | tuple[float, ...], size: tuple[int, int]) -> BBox:
    width, height = size
    x0, y0, x1, y1 = (float(v) for v in box)
    return (
        int(max(0, min(width, round(x0)))),
        int(max(0, min(height, round(y0)))),
        int(max(0, min(width, round(x1)))),
        int(max(0, min(height, round(y1)))),
    )
