"""Clusters on the real shared photos (../shared/data/photos, beside the repository): each BoofCV
triplet and the 29 Lund cathedral photos fall in one cluster each. The folder is not part of the
repository; where it is absent (a fresh clone elsewhere) this test says so and skips."""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest

from tests.integration.helpers import index

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data" / "photos"


@pytest.mark.skipif(not SHARED.is_dir(), reason=f"the shared photos are not at {SHARED}")
def test_triplets_and_the_cathedral_each_fall_in_one_cluster(library) -> None:  # type: ignore[no-untyped-def]
    index(library, SHARED)
    report = library.clusters()
    cluster_of = {path: c.id for c in report.clusters for path in c.paths}
    groups: dict[str, list[str]] = defaultdict(list)
    for image in library.catalog.all_images():
        found = re.search(r"boofcv/triple/(.+)_0\d\.jpg$", image.path)
        if found:
            groups[found.group(1)].append(image.path)
        if "/opensfm/lund/" in image.path:
            groups["lund"].append(image.path)
    assert len(groups) == 13 and len(groups["lund"]) == 29
    for name, paths in groups.items():
        clusters = {cluster_of.get(path, -1) for path in paths}
        assert len(clusters) == 1 and clusters != {-1}, (name, clusters)
    assert len({cluster_of[paths[0]] for paths in groups.values()}) == 13  # not merged
    # on the map the cathedral's photos sit together: their spread is a fraction of the map's
    points = library.map_points()
    where = dict(zip(points.paths, points.coords, strict=True))
    lund = np.array([where[path] for path in groups["lund"]])
    spread = np.linalg.norm(lund - lund.mean(axis=0), axis=1).mean()
    everyone = np.linalg.norm(points.coords - points.coords.mean(axis=0), axis=1).mean()
    assert spread < 0.25 * everyone, (spread, everyone)
