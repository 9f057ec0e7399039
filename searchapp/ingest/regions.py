"""Regions cut from a decoded photo (hybrid N+1 storage): one scene region covering it whole,
tiles on a grid for photos large enough to hold detail the scene embedding cannot see, and
objects from a detector. Producers are looked up by kind in REGION_PRODUCERS; objects are not
among them, because the detector runs batched in the encode stage: object_regions() takes its
detections.

Tile sizes are fractions of the photo's shorter side. The scene embedding sees the photo at the
encoder's input size (224 px) on its shorter side, centre-cropped to a square, so a tile of half
the shorter side shows its content at twice that resolution, and a third at three times. Those
two scales are the defaults. Tiles overlap by 20% so an object on a grid line is whole in some
tile. Tiles down to half the encoder input (112 real pixels) are kept: a query crop that small is
upsampled to the input size too, so tile and crop meet at the same scale. Measured with
benchmarks/crop_eval.py on ../shared/data/photos:
- a 224 px minimum dropped the 1/3 scale on 640-768 px photos (3-10% crops: R@1 0.66 vs 0.72);
- a third scale at 1/5 added nothing (0.71) for 1.7x the storage.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from searchapp.detect.base import Detection, DetectorOptions, clip_box
from searchapp.errors import UsageError
from searchapp.ingest.load import LoadedImage
from searchapp.records import PHOTO_KINDS, BBox
from searchapp.records import REGION_KINDS as REGION_KINDS  # objects: object_regions()


@dataclass
class RegionCut:
    kind: str
    bbox: BBox  # full displayed-photo pixels
    image: Image.Image  # pixels to encode
    label: str | None = None
    label_score: float | None = None


@dataclass(frozen=True)
class TileOptions:
    scales: tuple[float, ...] = (1 / 2, 1 / 3)  # tile side as a fraction of the shorter side
    overlap: float = 0.2
    min_tile_px: int = 112  # real pixels on a tile's side: half the encoder input at least
    max_tiles: int = 32  # per photo, over all scales
    min_std: float = 6.0  # grey-level standard deviation below which a tile is blank

    def decode_side(self, input_size: int) -> int:
        """Shorter side to decode at so the finest tiles keep their real pixels."""
        return round(input_size / min(self.scales)) if self.scales else input_size


@dataclass(frozen=True)
class RegionOptions:
    kinds: tuple[str, ...] = ("scene", "object", "tile")
    tiles: TileOptions = field(default_factory=TileOptions)
    detector: str = "cam"
    detector_options: DetectorOptions = field(default_factory=DetectorOptions)
    # "crops": each region cut out and encoded on its own; "pooled": every object and tile
    # vector from one pass over the photo, where the encoder can (the CNN): the whole run 2.1-2.7x
    # faster on 12 MP photos, but 3-10% crops found at recall@1 0.83 instead of 0.92, verified
    # (benchmarks/README.md)
    vectors: str = "crops"

    def decode_side(self, input_size: int) -> int:
        """Shorter side to decode at so every kind produced keeps real pixels."""
        side = input_size
        if "object" in self.kinds:
            side = max(side, OBJECT_DECODE_FACTOR * input_size)
        if "tile" in self.kinds:
            side = max(side, self.tiles.decode_side(input_size))
        return side


# A tile sees a corner of a photo at 2-3x the scene's resolution, and the CNN names what it
# half-sees there with confidence ("Boston bull" in a corner of the cameraman photo): a tile's
# label counts only from this probability, and only such labels are stored. benchmarks/
# label_tiles.py, the class words of the pixabay photos: precision@n 0.727 -> 0.818 on the tuning
# half with recall@10 kept at 0.909 (the most precise floor that loses no recall); the scoring
# half stays at 0.955, recall@10 1.0.
TILE_LABEL_MIN_PROB = 0.4


def kept_labels(kind: str, labels: list[tuple[str, float]]) -> list[tuple[str, float]]:
    """The labels worth storing: a tile's below the floor would never count (a tenth of a
    region's catalog bytes, five rows each)."""
    return [pair for pair in labels if pair[1] >= TILE_LABEL_MIN_PROB] if kind == "tile" else labels


OBJECT_DECODE_FACTOR = 2  # an object of a quarter of the photo still gets ~the encoder's input


def tile_boxes(width: int, height: int, options: TileOptions) -> list[BBox]:
    """Grid boxes in displayed pixels, coarse scale first, each scale covering the whole photo."""
    short = min(width, height)
    boxes: list[BBox] = []
    for scale in options.scales:
        side = round(short * scale)
        if side < options.min_tile_px or side >= short:
            continue
        stride = max(1, round(side * (1 - options.overlap)))
        for y0 in _starts(height, side, stride):
            for x0 in _starts(width, side, stride):
                boxes.append((x0, y0, x0 + side, y0 + side))
    return boxes


def _starts(length: int, side: int, stride: int) -> list[int]:
    """Evenly spread start offsets, the last flush with the far edge."""
    if side >= length:
        return [0]
    count = int(np.ceil((length - side) / stride)) + 1
    return sorted({round(i * (length - side) / (count - 1)) for i in range(count)})


def _informative(crop: Image.Image, min_std: float) -> bool:
    # box-reduce before the bicubic step: half the time, and no tile of 640 tried changed side
    grey = np.asarray(crop.convert("L").resize((32, 32), reducing_gap=2.0), dtype=np.float32)
    return float(grey.std()) >= min_std


def tile_regions(loaded: LoadedImage, options: RegionOptions) -> list[RegionCut]:
    width, height = loaded.meta.width, loaded.meta.height
    scale = loaded.scale  # displayed pixels per decoded pixel
    cuts: list[RegionCut] = []
    for box in tile_boxes(width, height, options.tiles):
        x0, y0, x1, y1 = box
        crop = loaded.image.crop(
            (round(x0 / scale), round(y0 / scale), round(x1 / scale), round(y1 / scale))
        )
        if not _informative(crop, options.tiles.min_std):
            continue  # sky, borders, nodata: nothing to find there
        cuts.append(RegionCut("tile", box, crop))
        if len(cuts) >= options.tiles.max_tiles:
            break
    return cuts


def _square_around(box: BBox, width: int, height: int) -> BBox:
    """The square the encoder sees for a box: its centre crop would cut a long box in half."""
    x0, y0, x1, y1 = box
    side = min(max(x1 - x0, y1 - y0), width, height)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    left = int(min(max(0, round(cx - side / 2)), width - side))
    top = int(min(max(0, round(cy - side / 2)), height - side))
    return (left, top, left + side, top + side)


def displayed_box(loaded: LoadedImage, box: tuple[float, ...]) -> BBox:
    """A box in decoded pixels as displayed-photo pixels, inside the photo."""
    size = (loaded.meta.width, loaded.meta.height)
    return clip_box(tuple(v * loaded.scale for v in box), size)


def object_regions(loaded: LoadedImage, detections: list[Detection]) -> list[RegionCut]:
    """One region per detection: its box (displayed pixels) and label, a square around it embedded.

    Detections are in decoded pixels: the detector ran on loaded.image.
    """
    width, height = loaded.image.size
    cuts = []
    for det in detections:
        square = _square_around(det.bbox, width, height)
        bbox = displayed_box(loaded, det.bbox)
        cuts.append(RegionCut("object", bbox, loaded.image.crop(square), det.label, det.score))
    return cuts


def whole_tile(loaded: LoadedImage) -> RegionCut:
    """A tile over the whole photo: a CLIP library's tiles are in the CNN's space, where this
    one stands for the scene (the crop tier of `dupes` compares it with the others)."""
    return RegionCut("tile", (0, 0, loaded.meta.width, loaded.meta.height), loaded.image)


def scene_regions(loaded: LoadedImage, options: RegionOptions) -> list[RegionCut]:
    return [RegionCut("scene", (0, 0, loaded.meta.width, loaded.meta.height), loaded.image)]


REGION_PRODUCERS: dict[str, Callable[[LoadedImage, RegionOptions], list[RegionCut]]] = {
    "scene": scene_regions,
    "tile": tile_regions,
}


REGION_VECTORS = ("pooled", "crops")


def parse_kinds(text: str) -> tuple[str, ...]:
    kinds = tuple(dict.fromkeys(part.strip() for part in text.split(",") if part.strip()))
    unknown = [kind for kind in kinds if kind not in PHOTO_KINDS]
    if unknown or not kinds:
        raise UsageError(
            f"--regions {text!r}: unknown kind {', '.join(unknown) or '(none)'}; "
            f"valid: {', '.join(PHOTO_KINDS)}"
        )
    if "scene" not in kinds:
        raise UsageError("--regions must include scene: every photo keeps its scene embedding")
    return kinds


def cut_regions(loaded: LoadedImage, options: RegionOptions) -> list[RegionCut]:
    """Regions of every per-photo kind asked for (objects come later, from the detector)."""
    cuts: list[RegionCut] = []
    for kind in options.kinds:
        producer = REGION_PRODUCERS.get(kind)
        if producer is not None:
            cuts.extend(producer(loaded, options))
    return cuts
