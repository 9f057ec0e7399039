"""Model inputs of cut regions, and their batched encoding into RegionData: one home for both
indexing stages."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from searchapp.ingest.load import LoadedImage
from searchapp.ingest.regions import RegionCut, kept_labels, object_regions
from searchapp.records import BBox, RegionData


class LazyModel:
    """A model loaded on first use (a run with nothing new loads none), once across threads."""

    def __init__(self, loader: Callable[[], Any]):
        self._loader = loader
        self._encoder: Any = None
        self._lock = threading.Lock()
        self.seconds = 0.0  # spent loading, reported apart from the run's throughput

    def get(self) -> Any:
        with self._lock:
            if self._encoder is None:
                started = time.monotonic()
                self._encoder = self._loader()
                self.seconds = time.monotonic() - started
            return self._encoder


@dataclass
class PreparedCut:
    kind: str
    bbox: BBox
    label: str | None
    label_score: float | None
    array: np.ndarray  # the model input


def prepare(cut: RegionCut, model: Any) -> PreparedCut:
    return PreparedCut(cut.kind, cut.bbox, cut.label, cut.label_score, model.preprocess(cut.image))


def add_objects(
    detector: LazyModel, model: Any, waiting: list[tuple[list[PreparedCut], LoadedImage]]
) -> None:
    """Detect objects in decoded photos, one detector call, and append their cuts."""
    if not waiting:
        return
    found = detector.get()
    if found is None:
        return
    detections = found.detect([loaded.image for _, loaded in waiting])
    for (cuts, loaded), boxes in zip(waiting, detections, strict=True):
        cuts.extend(prepare(cut, model) for cut in object_regions(loaded, boxes))


def embed(
    model: Any, cut_lists: list[list[PreparedCut]], batch_size: int
) -> list[list[RegionData]]:
    """Encode every cut in batches; the regions of each list, in its order."""
    arrays = [cut.array for cuts in cut_lists for cut in cuts]
    vectors: list[np.ndarray] = []
    labels: list[list[tuple[str, float]]] = []
    norms: list[float | None] = []
    for start in range(0, len(arrays), batch_size):
        encoded = model.encode(np.stack(arrays[start : start + batch_size]))
        vectors.extend(encoded.vectors)
        labels.extend(encoded.labels or [[] for _ in range(len(encoded.vectors))])
        found = encoded.norms if encoded.norms is not None else [None] * len(encoded.vectors)
        norms.extend(None if norm is None else float(norm) for norm in found)
    out: list[list[RegionData]] = []
    position = 0
    for cuts in cut_lists:
        regions = []
        for cut in cuts:
            regions.append(
                RegionData(
                    cut.kind,
                    cut.bbox,
                    vectors[position],
                    cut.label,
                    cut.label_score,
                    kept_labels(cut.kind, labels[position]),
                    norms[position],
                )
            )
            position += 1
        out.append(regions)
    return out
