"""The query layer against exact numpy references: ranking, filters, combined terms, --like."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest

from searchapp.errors import QueryError
from searchapp.library import Library
from searchapp.query.query_vectors import combine
from searchapp.records import (
    CatalogBatch,
    EncoderIdentity,
    FileStat,
    ImageMeta,
    NewImage,
    RegionData,
)

DIM = 24
CAMERAS = [("Canon", "EOS 5D"), ("Apple", "iPhone 12"), (None, None), ("NIKON CORPORATION", "D750")]
FORMATS = ["JPEG", "PNG", "HEIF", "WEBP"]


@dataclass
class Photo:
    path: str
    vector: np.ndarray
    taken_at: float
    make: str | None
    model: str | None
    width: int
    height: int
    format: str


def synthetic_photos(count: int, seed: int = 0) -> list[Photo]:
    rng = np.random.default_rng(seed)
    vectors = rng.normal(size=(count, DIM)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    vectors = vectors.astype(np.float16).astype(np.float32)  # as the catalog stores them
    start = datetime(2015, 1, 1).timestamp()
    photos = []
    for i in range(count):
        make, model = CAMERAS[i % len(CAMERAS)]
        photos.append(
            Photo(
                path=f"/photos/{'ab'[i % 2]}/{i // 100}/p{i:05d}.jpg",
                vector=vectors[i],
                taken_at=start + i * 86400.0 * 3,
                make=make,
                model=model,
                width=[640, 1920, 4000][i % 3],
                height=480 + (i % 5) * 100,
                format=FORMATS[i % len(FORMATS)],
            )
        )
    return photos


# every query and filter, on SQLite and on PostgreSQL
pytestmark = pytest.mark.both_catalogs


@pytest.fixture
def synthetic(tmp_path: Path, db_url: str | None):  # type: ignore[no-untyped-def]
    photos = synthetic_photos(600)
    lib = Library(tmp_path / "lib", db_url)
    lib.catalog.set_encoder_identity(EncoderIdentity("cnn:synthetic", "none", DIM, "none"))
    batch = CatalogBatch()
    for i, photo in enumerate(photos):
        meta = ImageMeta(
            photo.width, photo.height, photo.format, photo.taken_at, "exif", photo.make, photo.model
        )
        region = RegionData("scene", (0, 0, photo.width, photo.height), photo.vector)
        batch.new.append(NewImage(FileStat(photo.path, 1, 1), f"hash{i}", meta, [region]))
    lib.catalog.apply(batch)
    yield lib, photos
    lib.close()


def reference(photos: list[Photo], query: np.ndarray, k: int, keep=lambda p: True) -> list[str]:  # type: ignore[no-untyped-def]
    kept = [p for p in photos if keep(p)]
    scores = np.array([float(p.vector @ query) for p in kept])
    order = np.argsort(-scores, kind="stable")[:k]
    return [kept[i].path for i in order]


def test_like_search_matches_exact_numpy_reference(synthetic) -> None:  # type: ignore[no-untyped-def]
    lib, photos = synthetic
    for probe in (photos[0], photos[123], photos[599]):
        hits = lib.search(like=probe.path, k=15)
        expected = reference(photos, probe.vector, 15, lambda p, probe=probe: p is not probe)
        got = [h.path for h in hits]
        assert got == expected
        unit = probe.vector / np.linalg.norm(probe.vector)  # the engine renormalises queries
        by_path = {p.path: p for p in photos}
        np.testing.assert_allclose(
            [h.score for h in hits], [float(by_path[e].vector @ unit) for e in expected], atol=1e-5
        )
        assert probe.path not in got
        assert lib.search(like=probe.path, k=1, include_self=True)[0].path == probe.path


def day(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


FILTER_CASES = {
    "after": ({"after": "2017-06-01"}, lambda p: p.taken_at >= day("2017-06-01")),
    "before": ({"before": "2016-02"}, lambda p: p.taken_at < day("2016-02-01")),
    "folder": ({"folder": "/photos/a"}, lambda p: p.path.startswith("/photos/a/")),
    "camera": ({"camera": "iphone"}, lambda p: p.model == "iPhone 12"),
    "camera make": ({"camera": "nikon"}, lambda p: p.make == "NIKON CORPORATION"),
    # LIKE's wildcards are plain characters here: "_" is not "any one character"
    "camera wildcard": ({"camera": "phone_12"}, lambda p: False),
    "camera across make and model": ({"camera": "apple iphone"}, lambda p: p.make == "Apple"),
    "min_width": ({"min_width": 1920}, lambda p: p.width >= 1920),
    "min_pixels": ({"min_pixels": 2_000_000}, lambda p: p.width * p.height >= 2_000_000),
    "formats": ({"formats": "jpg,heic"}, lambda p: p.format in ("JPEG", "HEIF")),
    "combined": (
        {"after": "2016", "before": "2019-01-01", "folder": "/photos/b", "camera": "iphone"},
        lambda p: (
            day("2016-01-01") <= p.taken_at < day("2019-01-01")
            and p.path.startswith("/photos/b/")
            and p.make == "Apple"
        ),
    ),
}


@pytest.mark.parametrize("case", list(FILTER_CASES))
def test_each_filter_alone_and_combined(synthetic, case: str) -> None:  # type: ignore[no-untyped-def]
    lib, photos = synthetic
    kwargs, keep = FILTER_CASES[case]
    probe = photos[7]
    hits = lib.search(like=probe.path, k=25, **kwargs)
    expected = reference(photos, probe.vector, 25, lambda p: keep(p) and p is not probe)
    assert [h.path for h in hits] == expected
    assert len(expected) > 0 or case == "camera wildcard"


def test_a_one_percent_filter_still_returns_k_hits(synthetic) -> None:  # type: ignore[no-untyped-def]
    lib, photos = synthetic
    # 6 photos of 600 pass: the filter keeps 1%
    kwargs = {"after": "2015-01-01", "before": "2015-01-17"}
    kept = [p for p in photos if p.taken_at < day("2015-01-17")]
    assert len(kept) == 6
    hits = lib.search(like=photos[300].path, k=6, **kwargs)
    assert sorted(h.path for h in hits) == sorted(p.path for p in kept)


def test_min_score_is_a_cut_off(synthetic) -> None:  # type: ignore[no-untyped-def]
    lib, photos = synthetic
    hits = lib.search(like=photos[1].path, k=50, min_score=0.3)
    everything = lib.search(like=photos[1].path, k=50)
    assert all(h.score >= 0.3 for h in hits)
    assert [h.path for h in hits] == [h.path for h in everything if h.score >= 0.3]


def test_combined_terms_are_a_weighted_renormalised_sum(synthetic) -> None:  # type: ignore[no-untyped-def]
    lib, photos = synthetic
    a, b, c = photos[10], photos[20], photos[30]
    hits = lib.search(like=[a.path, b.path], minus=None, weights=[1.0, 0.5], k=10)
    expected_vector = a.vector + 0.5 * b.vector
    expected_vector /= np.linalg.norm(expected_vector)
    skip = {a.path, b.path}
    assert [h.path for h in hits] == reference(
        photos, expected_vector, 10, lambda p: p.path not in skip
    )
    # subtracting: a - 0.7 c
    minus_hits = lib.search(like=[a.path, c.path], weights=[1.0, 0.7], k=5)
    assert minus_hits  # a plain mix
    combined = combine([a.vector[None], c.vector[None]], [1.0, -0.7])[0]
    manual = a.vector - 0.7 * c.vector
    np.testing.assert_allclose(combined, manual / np.linalg.norm(manual), atol=1e-6)


def test_terms_that_cancel_out_are_refused() -> None:
    vector = np.ones((1, 4), dtype=np.float32) / 2
    with pytest.raises(QueryError, match="cancel"):
        combine([vector, vector], [1.0, -1.0])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"text": "   "}, "empty search text"),
        ({"like": "/photos/none.jpg"}, "no such file, and no photo in the library there"),
        ({"like": __file__}, "not in the library; index it first"),  # a file, never indexed
        ({"like": "/photos/a/0/p00000.jpg", "after": "last tuesday"}, "wrong format"),
        ({"like": "/photos/a/0/p00000.jpg", "k": 0}, "-k must be at least 1"),
        ({"like": "/photos/a/0/p00000.jpg", "weights": [1, 2]}, "one per term"),
        ({"like": "/photos/a/0/p00000.jpg", "after": "2020", "before": "2019"}, "earlier"),
        ({}, "nothing to search for"),
    ],
)
def test_bad_queries_get_clear_messages(synthetic, kwargs, message) -> None:  # type: ignore[no-untyped-def]
    lib, _ = synthetic
    with pytest.raises(QueryError, match=message):
        lib.search(**kwargs)
