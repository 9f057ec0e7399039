"""The Library's view of a whole collection: embedding health, uniqueness and outliers,
clusters, and the 2-D map, over the vectors the catalog keeps (searchapp.explore does the maths).
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from searchapp.errors import SearchappError, UsageError
from searchapp.explore import clusters as clustering
from searchapp.explore import health as health_figures
from searchapp.explore import layout as layouts
from searchapp.explore import scores
from searchapp.query.labels import short_name
from searchapp.records import EncoderIdentity, Filters

if TYPE_CHECKING:
    from searchapp.store.catalog import Catalog
    from searchapp.store.explore_rows import KindVectors

MAP_KINDS = ("scene", "object", "tile")
SORT_KEYS = ("uniqueness", "representativeness", "outlier")
SCORE_EXACT_LIMIT = 20_000  # above, uniqueness is measured in the map's 64 PCA dimensions
NOISE = "noise"  # the map's name for photos in no cluster


@dataclass(frozen=True)
class PhotoScore:
    path: str
    image_id: int
    uniqueness: float
    representativeness: float
    recognised: float  # its top ImageNet label's probability; 0 where it has none
    label: str  # that label, by its first name

    @property
    def outlier(self) -> float:
        """Unique and unrecognised: far from every other photo, and nothing in it that the
        model knows (1 - the top class probability, the usual out-of-distribution baseline of
        Hendrycks and Gimpel, ICLR 2017). A black frame or a test chart has a look-alike or
        two in most collections, so uniqueness alone ranks it below rare but ordinary photos."""
        return self.uniqueness * (1.0 - self.recognised)


@dataclass(frozen=True)
class Cluster:
    id: int
    name: str
    size: int
    paths: list[str]
    representatives: list[str]


@dataclass
class ClusterReport:
    clusters: list[Cluster]
    noise: list[str]
    method: str

    def as_dict(self) -> dict[str, object]:
        return {
            "clusters": [asdict(c) for c in self.clusters],
            "noise": self.noise,
            "method": self.method,
        }


@dataclass
class MapPoints:
    """Places on a kind's map, one per region, with what the page colours and shows them by."""

    kind: str
    method: str
    fitted_count: int  # regions the layout was fitted on; the rest were placed beside them
    region_ids: np.ndarray
    image_ids: np.ndarray
    coords: np.ndarray  # (n, 2)
    paths: list[str]
    boxes: list[tuple[int, int, int, int]]
    facets: dict[str, list[str]] = field(default_factory=dict)  # colour by: value per point


class LibraryExplore:
    catalog: Catalog
    directory: Path

    def require_identity(self) -> EncoderIdentity:
        raise NotImplementedError

    def _width(self, kind: str) -> int:
        tiles = self.catalog.tile_identity() if kind == "tile" else None
        return (tiles or self.require_identity()).dim

    def kind_vectors(self, kind: str = "scene") -> KindVectors:
        if kind not in MAP_KINDS:
            raise UsageError(f"unknown region kind {kind!r}: choose from {', '.join(MAP_KINDS)}")
        return self.catalog.kind_vectors(kind, self._width(kind))

    # ---- health ---------------------------------------------------------------------------

    def health(self, kind: str = "scene") -> health_figures.Health | None:
        """Health figures of a kind's vectors, kept until the vectors change; None for an empty
        library."""
        if self.catalog.encoder_identity() is None:
            return None
        key = f"health.{kind}"
        generation = self.catalog.vector_generation()
        cached = self.catalog.get_setting(key)
        if cached:
            data = json.loads(cached)
            if data.pop("generation", None) == generation:
                with contextlib.suppress(TypeError):  # a cache of another release: recomputed
                    return health_figures.Health(**data)
        found = self.kind_vectors(kind)
        if not len(found):
            return None
        figures = health_figures.measure(found.vectors, found.norms)
        with contextlib.suppress(SearchappError):  # a cache: a read-only catalog recomputes
            self.catalog.set_setting(key, json.dumps({**asdict(figures), "generation": generation}))
        return figures

    # ---- uniqueness, representativeness, outliers ----------------------------------------

    def photo_scores(
        self, filters: Filters | None = None, by: str = "uniqueness"
    ) -> list[PhotoScore]:
        """Uniqueness and representativeness of every photo (that passes the filters), the
        highest of `by` first. Kept beside the catalog until the vectors change."""
        if by not in SORT_KEYS:
            raise UsageError(f"unknown sort {by!r}: choose from {', '.join(SORT_KEYS)}")
        region_ids, image_ids, unique, typical = self._photo_score_arrays()
        if not len(region_ids):
            raise UsageError("the library has no photos to rank: run `searchapp index PATH`")
        if filters is not None and filters.restricts_rows():
            allowed = self.catalog.region_ids_where(filters, ["scene"])
            keep = np.isin(region_ids, allowed)
            image_ids, unique, typical = image_ids[keep], unique[keep], typical[keep]
        paths = self._paths(image_ids)
        labels = self.catalog.image_labels(image_ids.tolist())
        # a user's short tag list makes every top probability near 1: it says nothing of oddness
        imagenet = not self.catalog.custom_tag_vocabulary()
        ranked = []
        for i, u, r in zip(image_ids, unique, typical, strict=True):
            top = labels.get(int(i))
            name, prob = (short_name(top[0][0]), top[0][1]) if top else ("", 0.0)
            prob = prob if imagenet else 0.0
            ranked.append(PhotoScore(paths[int(i)], int(i), float(u), float(r), prob, name))
        return sorted(ranked, key=lambda s: (-getattr(s, by), s.path))

    def _photo_score_arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        cache = self.directory / "photo-scores.npz"
        generation = self.catalog.vector_generation()
        with contextlib.suppress(OSError, ValueError, KeyError):
            kept = np.load(cache)
            if int(kept["generation"]) == generation:
                return kept["regions"], kept["images"], kept["uniqueness"], kept["typical"]
        found = self.kind_vectors("scene")
        space = (
            layouts.graph_space(found.vectors) if len(found) > SCORE_EXACT_LIMIT else found.vectors
        )
        unique = scores.uniqueness(space) if len(found) else np.zeros(0)
        typical = scores.representativeness(space) if len(found) else np.zeros(0)
        arrays = (found.region_ids, found.image_ids, unique, typical)
        partial = cache.with_name(f".{cache.name}.{os.getpid()}.part.npz")
        try:
            np.savez(
                partial,
                generation=generation,
                regions=arrays[0],
                images=arrays[1],
                uniqueness=arrays[2],
                typical=arrays[3],
            )
            partial.replace(cache)
        except OSError:  # a cache: a full disk or a read-only library recomputes next time
            partial.unlink(missing_ok=True)
        return arrays

    def _paths(self, image_ids: np.ndarray) -> dict[int, str]:
        """Paths of the photos in search by id (the catalog's plain listing, not its hashes)."""
        return {image.id: image.path for image in self.catalog.all_images()}

    # ---- clusters -------------------------------------------------------------------------

    def clusters(
        self, k: int | None = None, min_size: int | None = None, shown: int = 5
    ) -> ClusterReport:
        if k is not None and k < 1:
            raise UsageError(f"--kmeans {k}: give a number of clusters of at least 1")
        if min_size is not None and min_size < 2:
            raise UsageError(f"--min-size {min_size}: a cluster needs at least 2 photos")
        found = self.kind_vectors("scene")
        if not len(found):
            raise UsageError("the library has no photos to group: run `searchapp index PATH`")
        grouping = clustering.group(found.vectors, k=k, min_size=min_size, shown=shown)
        paths = self._paths(found.image_ids)
        path_of = [paths[int(i)] for i in found.image_ids]
        names = self._cluster_names(found, grouping)
        made = []
        for cluster in sorted(grouping.representatives):
            rows = np.flatnonzero(grouping.labels == cluster)
            made.append(
                Cluster(
                    id=cluster,
                    name=names[cluster],
                    size=len(rows),
                    paths=sorted(path_of[r] for r in rows),
                    representatives=[path_of[r] for r in grouping.representatives[cluster]],
                )
            )
        noise = sorted(path_of[r] for r in np.flatnonzero(grouping.labels < 0))
        return ClusterReport(made, noise, grouping.method)

    def _cluster_names(self, found: KindVectors, grouping: clustering.Grouping) -> dict[int, str]:
        labels = self.catalog.image_labels(found.image_ids.tolist())
        names = {}
        for cluster in grouping.representatives:
            rows = np.flatnonzero(grouping.labels == cluster)
            member_labels = [
                [(short_name(name), prob) for name, prob in labels.get(int(found.image_ids[r]), [])]
                for r in rows
            ]
            names[cluster] = clustering.name_from_labels(member_labels)
        return names

    # ---- the map --------------------------------------------------------------------------

    def map_points(
        self,
        kind: str = "scene",
        method: str = "auto",
        refit: bool = False,
        with_clusters: bool = False,
    ) -> MapPoints:
        """Every region of a kind on the 2-D map: the stored layout, new regions placed beside
        their neighbours, and a fresh fit when asked, when the method changes, or once the
        library has grown by half since the last fit. `with_clusters` adds each photo's
        cluster as a facet (HDBSCAN: seconds to tens of seconds on a large library)."""
        if method not in layouts.METHODS:
            raise UsageError(
                f"unknown --method {method!r}: choose from {', '.join(layouts.METHODS)}"
            )
        found = self.kind_vectors(kind)
        if not len(found):
            raise UsageError(
                f"the library has no {kind} regions to map"
                + (": run `searchapp index PATH`" if kind == "scene" else "")
            )
        saved = json.loads(self.catalog.get_setting(f"map.{kind}") or "{}")
        stored = self.catalog.map_points(found.region_ids.tolist()) if saved else {}
        have = np.array([int(r) in stored for r in found.region_ids], dtype=bool)
        asked = saved.get("asked", "auto") if method == "auto" else method  # kept across refits
        if (
            refit
            or not saved
            or asked != saved.get("asked", "auto")
            or layouts.due_for_refit(int(have.sum()), len(found))
            or int(have.sum()) < 2
        ):
            fitted = layouts.fit(found.vectors, asked)
            coords = fitted.coords
            saved = {"method": fitted.method, "asked": asked, "fitted": len(found)}
            self.catalog.save_map(kind, found.region_ids, coords, layout=json.dumps(saved))
        else:
            coords = np.zeros((len(found), 2), dtype=np.float32)
            coords[have] = [stored[int(r)] for r in found.region_ids[have]]
            if (~have).any():
                coords[~have] = layouts.place(
                    found.vectors[~have], found.vectors[have], coords[have]
                )
                self.catalog.save_map(kind, found.region_ids[~have], coords[~have])
        return self._map_facets(kind, found, coords, saved, with_clusters)

    def _map_facets(
        self,
        kind: str,
        found: KindVectors,
        coords: np.ndarray,
        saved: dict[str, object],
        with_clusters: bool,
    ) -> MapPoints:
        table = self.catalog.photo_table()
        row_of = {int(i): k for k, i in enumerate(table.ids)}
        rows = [row_of[int(i)] for i in found.image_ids]
        top = self.catalog.region_top_labels(found.region_ids.tolist())
        paths = [table.paths[r] for r in rows]
        facets = {
            "folder": [os.path.dirname(p) for p in paths],
            "date": [_month(table.taken_at[r]) for r in rows],
            "camera": [table.cameras[r] or "unknown camera" for r in rows],
            "label": [top.get(int(rid), ("no label", 0.0))[0] for rid in found.region_ids],
        }
        if with_clusters and kind == "scene" and len(found) > 2:
            grouping = clustering.group(found.vectors)
            names = self._cluster_names(found, grouping)
            facets["cluster"] = [
                f"{c}: {names[int(c)]}" if c >= 0 else NOISE for c in grouping.labels
            ]
        return MapPoints(
            kind=kind,
            method=str(saved["method"]),
            fitted_count=int(saved.get("fitted", len(found))),  # type: ignore[call-overload]
            region_ids=found.region_ids,
            image_ids=found.image_ids,
            coords=coords,
            paths=paths,
            boxes=[(int(a), int(b), int(c), int(d)) for a, b, c, d in found.boxes],
            facets=facets,
        )


def _month(seconds: float) -> str:
    import time

    return time.strftime("%Y-%m", time.gmtime(seconds)) if np.isfinite(seconds) else "unknown"
