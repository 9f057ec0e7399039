"""Queries on real photos: label matching on a CNN library, --like, CLIP text plumbing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from searchapp.encoders.base import EncoderOptions
from searchapp.errors import QueryError
from searchapp.library import Library
from searchapp.query.labels import match_labels
from tests.integration.helpers import index


@pytest.fixture
def indexed(library, photos: Path):  # type: ignore[no-untyped-def]
    index(library, photos)
    return library, photos


def test_cat_finds_the_cat_by_label_and_says_so(indexed) -> None:  # type: ignore[no-untyped-def]
    lib, photos = indexed
    results = lib.search("cat")
    assert results.mode == "labels"
    assert results[0].path == str(photos / "animals" / "cat.jpg")
    assert len(results) == 1  # no other photo has a cat class among its labels
    assert any("label matching" in note for note in results.notes)
    assert any("reindex --encoder clip:" in note for note in results.notes)
    assert results[0].labels[0][0] in {"tabby, tabby cat", "tiger cat", "Egyptian cat"}


def test_label_synonyms_and_plurals(indexed) -> None:  # type: ignore[no-untyped-def]
    lib, photos = indexed
    assert lib.search("espresso")[0].path == str(photos / "things" / "coffee.jpg")
    assert lib.search("Cats")[0].path == str(photos / "animals" / "cat.jpg")
    assert lib.search("a cup")[0].path == str(photos / "things" / "coffee.jpg")
    # everyday words that ImageNet splits into classes nobody would name
    assert {"laptop, laptop computer", "notebook, notebook computer"} <= match_labels("laptop")[
        "laptop"
    ]
    assert any("cellular telephone" in name for name in match_labels("phone")["phone"])
    assert match_labels("couch")["couch"] == match_labels("sofa")["sofa"]


def test_words_with_no_imagenet_label_explain_how_to_get_free_text(indexed) -> None:  # type: ignore[no-untyped-def]
    lib, _ = indexed
    with pytest.raises(QueryError, match=r"no ImageNet label matches 'kayak'.*clip"):
        lib.search("kayak")


def test_words_filter_an_image_query_on_a_cnn_library(indexed) -> None:  # type: ignore[no-untyped-def]
    lib, photos = indexed
    results = lib.search("cat", like=str(photos / "astronaut.jpg"))
    assert [h.path for h in results] == [str(photos / "animals" / "cat.jpg")]
    everything_but_cats = lib.search(like=str(photos / "astronaut.jpg"), minus="cat", k=10)
    assert str(photos / "animals" / "cat.jpg") not in [h.path for h in everything_but_cats]
    assert len(everything_but_cats) == 3


def test_like_uses_the_stored_vector_without_loading_the_model(
    indexed, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    lib, photos = indexed
    lib._encoder = None

    def no_model(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise AssertionError("--like must not load or run the encoder")

    monkeypatch.setattr("searchapp.encoders.registry.create_encoder", no_model)
    results = lib.search(like=str(photos / "camera.jpg"), k=10)
    assert str(photos / "camera.jpg") not in [h.path for h in results]  # itself left out
    assert len(results) == 4
    with_self = lib.search(like=str(photos / "camera.jpg"), k=1, include_self=True)
    assert with_self[0].path == str(photos / "camera.jpg") and with_self[0].score > 0.999


def test_image_query_leaves_out_the_same_indexed_photo(indexed) -> None:  # type: ignore[no-untyped-def]
    lib, photos = indexed
    results = lib.search(image=str(photos / "camera.jpg"), k=10)
    assert str(photos / "camera.jpg") not in [h.path for h in results]


def test_corrupt_query_image_is_a_clear_error(indexed, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    lib, _ = indexed
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 definitely not a jpeg")
    with pytest.raises(QueryError, match=r"query image .*broken.jpg"):
        lib.search(image=str(broken))
    with pytest.raises(QueryError, match="does not exist"):
        lib.search(image=str(tmp_path / "missing.jpg"))


def test_clip_text_search_ranks_by_text_image_cosine(
    photos: Path, tmp_path: Path, tiny_clip_checkpoint: Path
) -> None:
    """On a (random, tiny) CLIP library, text search is the cosine of open_clip's text
    embedding with each stored image vector."""
    lib = Library(tmp_path / "clip-lib")
    try:
        options = EncoderOptions(clip_weights=tiny_clip_checkpoint)
        index(lib, photos, encoder="clip:tiny-test", encoder_options=options)
        results = lib.search("a photo of a rocket", k=5, kinds=("scene",))
        assert results.mode == "vector" and not results.notes
        text = lib.encoder().encode_text(["a photo of a rocket"])[0]
        stored = {}
        for ids, vectors in lib.catalog.region_vectors("scene", 32):
            for region_id, vector in zip(ids, vectors, strict=True):
                stored[int(region_id)] = vector
        paths = {h.region_id: h.path for h in lib.catalog.hydrate(dict.fromkeys(stored, 0.0))}
        expected = sorted(stored, key=lambda rid: -float(stored[rid] @ text))
        assert [h.path for h in results] == [paths[rid] for rid in expected]
        np.testing.assert_allclose(
            [h.score for h in results], [float(stored[rid] @ text) for rid in expected], atol=1e-5
        )
    finally:
        lib.close()
    reopened = Library(tmp_path / "clip-lib")  # remembers --clip-weights: no flag needed again
    try:
        assert (
            reopened.search("a photo of a rocket", k=5, kinds=("scene",))[0].path == results[0].path
        )
    finally:
        reopened.close()
