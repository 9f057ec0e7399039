"""The explore maths on constructed vectors: uniqueness, representativeness, health figures,
clusters, layouts and the map page's payload."""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest

from searchapp.explore import clusters, health, layout, scores
from searchapp.vectors.neighbours import knn_graph, pca, project


def unit(rows: np.ndarray) -> np.ndarray:
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


def blobs(centres: int, per: int, dim: int = 64, spread: float = 0.05, seed: int = 0):
    rng = np.random.default_rng(seed)
    middle = rng.normal(size=(centres, dim))
    points = np.repeat(middle, per, axis=0) + spread * rng.normal(size=(centres * per, dim))
    return unit(points), np.repeat(np.arange(centres), per)


def test_knn_graph_matches_a_brute_force_scan_and_never_lists_a_row_itself() -> None:
    vectors, _ = blobs(5, 20)
    ids, sims = knn_graph(vectors, 4)
    gram = vectors @ vectors.T
    np.fill_diagonal(gram, -np.inf)
    expected = np.argsort(-gram, axis=1)[:, :4]
    assert (ids != np.arange(len(vectors))[:, None]).all()
    np.testing.assert_allclose(sims, np.take_along_axis(gram, expected, axis=1), atol=1e-5)


def test_pca_keeps_the_direction_of_largest_variance() -> None:
    rng = np.random.default_rng(1)
    data = rng.normal(size=(500, 8)) * np.array([10, 1, 1, 1, 1, 1, 1, 1])
    mean, components = pca(data, 2)
    assert abs(components[0][0]) > 0.99
    assert project(data, mean, components).shape == (500, 2)


def test_uniqueness_ranks_a_stray_first_and_copies_last() -> None:
    vectors, _ = blobs(3, 10)
    stray = unit(np.random.default_rng(9).normal(size=(1, vectors.shape[1])))
    copy = vectors[:1].copy()
    data = np.vstack([vectors, stray, copy])
    unique = scores.uniqueness(data)
    assert unique.argmax() == len(vectors)  # the stray
    assert unique.max() == pytest.approx(1.0)
    assert unique[0] < 0.05 and unique[-1] < 0.05  # a photo and its copy


def test_representativeness_is_highest_at_a_cluster_centre() -> None:
    vectors, _ = blobs(2, 30, spread=0.2)
    centre = unit(vectors[:30].mean(axis=0, keepdims=True))
    far = unit(vectors[:1] + 0.6 * (vectors[:1] - centre))
    data = np.vstack([vectors, centre, far])
    typical = scores.representativeness(data)
    assert typical[60] > np.median(typical[:30])
    assert typical[61] < np.median(typical[:30])
    assert typical.min() >= 0 and typical.max() <= 1


def test_health_flags_a_collapsed_set_and_passes_a_healthy_one() -> None:
    rng = np.random.default_rng(0)
    healthy = unit(rng.normal(size=(400, 128)))
    base = rng.normal(size=128)
    collapsed = unit(base + 0.05 * rng.normal(size=(400, 128)))
    good = health.measure(healthy, norms=rng.normal(20, 1, size=400))
    bad = health.measure(collapsed, norms=np.abs(rng.normal(20, 15, size=400)))
    assert good.warnings == []
    assert good.mean_cosine == pytest.approx(0.0, abs=0.02)
    assert good.near_identical == 0.0
    assert good.norm_spread == pytest.approx(0.05, abs=0.02)
    assert bad.mean_cosine > health.MAX_MEAN_COSINE
    assert bad.near_identical > health.MAX_NEAR_IDENTICAL
    assert bad.norm_spread > health.MAX_NORM_SPREAD
    assert len(bad.warnings) >= 3


def test_hubness_is_the_skew_of_k_occurrence() -> None:
    # one vector near everyone's mean is everyone's neighbour: a hub
    rng = np.random.default_rng(2)
    cloud = unit(1.0 + 0.5 * rng.normal(size=(300, 16)))
    hub = unit(np.ones((1, 16)))
    occurrence = health.k_occurrence(knn_graph(np.vstack([cloud, hub]), 10)[0], 301)
    assert occurrence.argmax() == 300
    assert health.skewness(occurrence) > health.skewness(np.ones(301) * 10)
    assert health.skewness(np.array([1.0, 1.0, 1.0])) == 0.0


def test_norms_unknown_for_old_regions_give_no_spread() -> None:
    figures = health.measure(blobs(2, 10)[0], norms=np.full(20, np.nan))
    assert figures.norm_spread is None and figures.norms_known == 0


@pytest.mark.parametrize("direct", [True, False])
def test_hdbscan_finds_the_groups_and_leaves_strays_as_noise(monkeypatch, direct) -> None:
    if not direct:  # the sampled path of large collections, on a small one
        monkeypatch.setattr(clusters, "DENSE_LIMIT", 30)
    # four tight groups in one region of the sphere, two strays far from them and each other
    vectors, truth = blobs(4, 8, spread=0.03)
    rng = np.random.default_rng(5)
    vectors = unit(vectors + 2.0 * np.ones(vectors.shape[1]) / np.sqrt(vectors.shape[1]))
    strays = unit(rng.normal(size=(2, vectors.shape[1])) - 0.5)
    found = clusters.group(np.vstack([vectors, strays]), min_size=3)
    labels = found.labels
    for group in range(4):
        members = set(labels[:32][truth == group].tolist())
        assert len(members) == 1 and members != {-1}
    assert len(set(labels[:32].tolist())) == 4
    assert (labels[32:] == -1).all()
    assert sorted(found.representatives) == [0, 1, 2, 3]


def test_kmeans_gives_k_clusters_numbered_largest_first() -> None:
    vectors, _ = blobs(3, 10)
    found = clusters.group(np.vstack([vectors, vectors[:5]]), k=3)
    sizes = [int((found.labels == c).sum()) for c in range(3)]
    assert sizes == sorted(sizes, reverse=True) and sum(sizes) == 35
    assert found.method == "kmeans"


def test_cluster_names_come_from_the_most_probable_labels() -> None:
    named = clusters.name_from_labels(
        [[("tabby", 0.6), ("tiger cat", 0.3)], [("tabby", 0.5), ("lynx", 0.4)], []]
    )
    assert named == "tabby, lynx"
    assert clusters.name_from_labels([[], []]) == "unnamed"


def test_umap_and_pca_layouts_keep_groups_apart() -> None:
    vectors, truth = blobs(3, 20, spread=0.05)
    for method in ("umap", "pca"):
        coords = layout.fit(vectors, method).coords
        centres = np.array([coords[truth == g].mean(axis=0) for g in range(3)])
        within = max(
            np.linalg.norm(coords[truth == g] - centres[g], axis=1).mean() for g in range(3)
        )
        between = min(
            np.linalg.norm(centres[a] - centres[b]) for a in range(3) for b in range(a + 1, 3)
        )
        assert between > 3 * within, method


def test_a_tiny_collection_falls_back_to_pca() -> None:
    assert layout.fit(blobs(2, 4)[0]).method == "pca"
    with pytest.raises(ValueError, match="umap, pca"):
        layout.fit(blobs(2, 4)[0], "tsne")


def test_new_points_are_placed_beside_their_neighbours() -> None:
    vectors, truth = blobs(2, 20, spread=0.05)
    coords = np.where(truth[:, None] == 0, np.array([[-5.0, 0.0]]), np.array([[5.0, 0.0]]))
    coords = coords + np.random.default_rng(0).normal(scale=0.1, size=coords.shape)
    fresh = unit(vectors[[0, 25]] + 0.01)
    placed = layout.place(fresh, vectors, coords.astype(np.float32))
    assert placed[0][0] < -4 and placed[1][0] > 4
    assert layout.due_for_refit(100, 149) is False and layout.due_for_refit(100, 150) is True


def test_map_payload_is_compact_and_safe_inside_a_script_element() -> None:
    from searchapp.library_explore import MapPoints
    from searchapp.web import map_page

    n = 30
    points = MapPoints(
        kind="scene",
        method="umap",
        fitted_count=n,
        region_ids=np.arange(n),
        image_ids=np.arange(n),
        coords=np.random.default_rng(0).normal(size=(n, 2)) * 40 + 100,
        paths=[f"/photos/</script><b>{i}.jpg" for i in range(n)],
        boxes=[(0, 0, 10, 10)] * n,
        facets={"folder": [f"/f{i % 25}" for i in range(n)]},
    )
    data = map_page.payload(points, "folder", {0: "data:image/jpeg;base64,AA=="})
    xs = np.frombuffer(base64.b64decode(data["x"]), dtype=np.float32)
    ys = np.frombuffer(base64.b64decode(data["y"]), dtype=np.float32)
    assert len(xs) == n and max(abs(xs).max(), abs(ys).max()) == pytest.approx(1.0)
    assert len(data["categories"]) == map_page.MAX_CATEGORIES and data["hasOther"]
    assert sum(data["counts"]) == n
    assert list(data["thumbs"].values()) == ["data:image/jpeg;base64,AA=="]
    page = map_page.map_html(points, "folder", {})
    script = page.split("window.SEARCHAPP_MAP = ", 1)[1].split(";</script>", 1)[0]
    assert "</script>" not in script
    assert json.loads(script)["paths"][0].startswith("/photos/</script>")
