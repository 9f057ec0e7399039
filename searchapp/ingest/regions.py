"""Regions cut from a decoded photo. Every photo has one scene region covering it whole; object
and tile producers register here as they arrive (hybrid N+1 storage)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from PIL import Image

from searchapp.ingest.load import LoadedImage
from searchapp.records import BBox


@dataclass
class RegionCut:
    kind: str
    bbox: BBox  # full displayed-photo pixels
    image: Image.Image  # pixels to encode
    label: str | None = None
    label_score: float | None = None


def scene_regions(loaded: LoadedImage) -> list[RegionCut]:
    return [RegionCut("scene", (0, 0, loaded.meta.width, loaded.meta.height), loaded.image)]


REGION_PRODUCERS: dict[str, Callable[[LoadedImage], list[RegionCut]]] = {
    "scene": scene_regions,
}


def cut_regions(loaded: LoadedImage, kinds: tuple[str, ...]) -> list[RegionCut]:
    cuts: list[RegionCut] = []
    for kind in kinds:
        cuts.extend(REGION_PRODUCERS[kind](loaded))
    return cuts
