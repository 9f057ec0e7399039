"""What an indexing run is asked to do, what it reports while it runs, and what it did."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field

from searchapp.ingest.load import LoadLimits
from searchapp.ingest.regions import RegionOptions


@dataclass(frozen=True)
class IndexOptions:
    workers: int = max(1, os.cpu_count() or 1)
    batch_size: int = 32
    commit_every: int = 256  # images per catalog transaction
    commit_seconds: float = 15.0
    index_save_seconds: float = 120.0
    limits: LoadLimits = field(default_factory=LoadLimits)
    regions: RegionOptions = field(default_factory=RegionOptions)
    skip_low_quality: bool = False  # flagged photos are listed but get no vectors
    regions_later: bool = False  # scenes only now; a later run (without it) makes the rest

    @property
    def later_kinds(self) -> tuple[str, ...]:
        """Region kinds made by the region stage, after every new photo has its scene."""
        return tuple(kind for kind in self.regions.kinds if kind != "scene")


@dataclass
class IndexSummary:
    new: int = 0
    changed: int = 0
    moved: int = 0
    deleted: int = 0
    unchanged: int = 0
    failed: int = 0
    embedded: int = 0  # photos whose scene (and, unstaged, regions) this run embedded
    reused: int = 0  # copies whose vectors were cloned from identical bytes
    low_quality: int = 0  # listed without vectors (--skip-low-quality)
    with_regions: int = 0  # photos the region stage finished in this run
    regions_pending: int = 0  # photos under the run's folders still waiting for their regions
    seconds: float = 0.0
    model_seconds: float = 0.0  # of `seconds`, loading the encoder and the detector
    scene_seconds: float = 0.0  # of `seconds`, until every photo was searchable by its scene
    scene_model_seconds: float = 0.0  # of `scene_seconds`, loading the encoder
    interrupted: bool = False
    tagged: int = 0  # a CLIP library's photos given zero-shot tags after the run
    frames: int = 0  # video frames embedded (each video counts once in `embedded` too)
    frame_seconds: float = 0.0  # of `seconds`, preparing and encoding those frames
    from_shards: int = 0  # photos taken from a killed Ray run's shards (engines/ray_engine.py)

    @property
    def images_per_second(self) -> float:
        """The rate to extrapolate from: loading the models is paid once a run, not per photo."""
        working = self.seconds - self.model_seconds
        done = max(self.embedded, self.with_regions)
        return done / working if working > 0 else 0.0

    @property
    def scene_images_per_second(self) -> float:
        """How fast new photos became searchable (by their scene), model load excluded."""
        working = self.scene_seconds - self.scene_model_seconds
        return self.embedded / working if working > 0 else 0.0

    def as_dict(self) -> dict[str, float | int | bool]:
        data: dict[str, float | int | bool] = {
            key: getattr(self, key)
            for key in ("new", "changed", "moved", "deleted", "unchanged", "failed")
        }
        data.update(
            embedded=self.embedded,
            reused=self.reused,
            low_quality=self.low_quality,
            with_regions=self.with_regions,
            regions_pending=self.regions_pending,
            seconds=round(self.seconds, 3),
            model_seconds=round(self.model_seconds, 3),
            scene_seconds=round(self.scene_seconds, 3),
            images_per_second=round(self.images_per_second, 2),
            scene_images_per_second=round(self.scene_images_per_second, 2),
            interrupted=self.interrupted,
            tagged=self.tagged,
            frames=self.frames,
            from_shards=self.from_shards,
        )
        return data


@dataclass
class IndexCallbacks:
    on_plan: Callable[[int, int], None] | None = None  # (files found, files to read)
    on_regions: Callable[[int], None] | None = None  # the region stage starts: photos to do
    on_advance: Callable[[int], None] | None = None
    on_failure: Callable[[str, str], None] | None = None  # (path, reason)
    on_note: Callable[[str, str], None] | None = None  # (path, what): indexed, with a remark
    # (prompts embedded, of): a CLIP library's zero-shot tags' vocabulary, once a library
    on_tag_prompts: Callable[[int, int], None] | None = None
