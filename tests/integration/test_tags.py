"""Zero-shot tags of a CLIP library through the real code path (a tiny random open_clip model):
stored as the scenes' labels at the end of each index run, computed from stored vectors (so a
new vocabulary re-tags without re-reading a photo), filtered by `--tag`, carried by `--json`."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from searchapp.cli import main
from searchapp.encoders import zero_shot
from searchapp.encoders.base import EncoderOptions
from searchapp.errors import UsageError
from searchapp.library import Library
from searchapp.query.filters import build_filters
from tests.integration.helpers import OPTIONS, index


@pytest.fixture
def clip_library(photos: Path, tmp_path: Path, tiny_clip_checkpoint: Path):  # type: ignore[no-untyped-def]
    lib = Library(tmp_path / "lib")
    summary = index(
        lib,
        photos,
        options=replace(OPTIONS),
        encoder="clip:tiny-test",
        encoder_options=EncoderOptions(clip_weights=tiny_clip_checkpoint),
    )
    assert summary.tagged == 5
    yield lib
    lib.close()


def scene_labels(lib: Library) -> dict[int, list[tuple[str, float]]]:
    return lib.catalog.image_labels(image.id for image in lib.catalog.all_images())


def test_every_scene_gets_the_five_most_probable_imagenet_tags(clip_library: Library) -> None:
    labels = scene_labels(clip_library)
    names = set(zero_shot.imagenet_vocabulary().names)
    assert len(labels) == 5
    for found in labels.values():
        assert len(found) == zero_shot.TOP_TAGS
        assert {name for name, _ in found} <= names
        probs = [prob for _, prob in found]
        assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1.0001
    # the same as scoring the stored vectors by hand against the vocabulary's text embeddings
    identity = clip_library.require_identity()
    found = clip_library.catalog.kind_vectors("scene", identity.dim)
    matrix = zero_shot.text_matrix(
        clip_library.encoder().encode_text, zero_shot.imagenet_vocabulary()
    )
    expected = zero_shot.top_tags(found.vectors, matrix, zero_shot.imagenet_vocabulary().names)
    for image_id, tags in zip(found.image_ids.tolist(), expected, strict=True):
        assert [n for n, _ in labels[image_id]] == [n for n, _ in tags]
    assert list(clip_library.directory.glob("tags-*.npy"))  # the text side is kept


def test_a_vocabulary_file_retags_from_stored_vectors(clip_library, photos, tmp_path) -> None:
    vocabulary = tmp_path / "tags.txt"
    vocabulary.write_text("# mine\nbeach\nmountain\ncat\nrocket launch\nportrait\nbeach\n")
    summary = index(clip_library, photos, tags=vocabulary)
    assert summary.new == 0 and summary.embedded == 0 and summary.tagged == 5
    for found in scene_labels(clip_library).values():
        assert {n for n, _ in found} <= {"beach", "mountain", "cat", "rocket launch", "portrait"}
    assert index(clip_library, photos, tags=vocabulary).tagged == 0  # the same list: kept
    mine = clip_library.tag_vocabulary()
    assert mine.names == ("beach", "mountain", "cat", "rocket launch", "portrait")
    # --tag matches a user's tag as written; every hit carries its tags
    top = {
        path: prob for path, prob, _ in clip_library.tagged_photos(build_filters(tags=["cat"]), 10)
    }
    labels = scene_labels(clip_library)
    expected = {
        image.path
        for image in clip_library.catalog.all_images()
        if any(n == "cat" and p >= 0.1 for n, p in labels[image.id])
    }
    assert set(top) == expected


def test_tags_travel_in_search_json_and_filter_a_query(clip_library, photos, capsys) -> None:
    clip_library.close()
    vocabulary = photos.parent / "two.txt"
    vocabulary.write_text("cat\nrocket\n")
    args = ["--library", str(clip_library.directory)]
    code = main(["index", str(photos), "--tags", str(vocabulary), *args])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "tagged 5 photos" in out
    # the new vocabulary's prompts (2 tags, 7 templates) had a bar of their own
    assert "tags: 100%" in err and "14/14" in err and "prompt/s" in err
    assert main(["search", "a photo", "--json", "-k", "5", *args]) == 0
    results = json.loads(capsys.readouterr().out)["results"]
    assert all(set(r["tags"]) <= {"cat", "rocket"} and r["tags"] for r in results)
    with_cat = {r["path"] for r in results if "cat" in r["tags"]}
    assert main(["search", "a photo", "--tag", "cat", "--json", "-k", "5", *args]) == 0
    assert {r["path"] for r in json.loads(capsys.readouterr().out)["results"]} == with_cat


def test_a_cnn_library_refuses_a_tag_file_and_keeps_its_labels(library, photos, tmp_path) -> None:
    vocabulary = tmp_path / "tags.txt"
    vocabulary.write_text("cat\n")
    with pytest.raises(UsageError, match="ImageNet labels"):
        index(library, photos, tags=vocabulary)
    index(library, photos)
    assert library.tag_photos() == 0
    cats = library.tagged_photos(build_filters(tags=["cat"]), 5)
    assert [Path(path).name for path, _, _ in cats] == ["cat.jpg"]


def test_an_empty_or_unreadable_tag_file_is_a_usage_error(clip_library, photos, tmp_path) -> None:
    empty = tmp_path / "empty.txt"
    empty.write_text("# nothing\n\n")
    with pytest.raises(UsageError, match="no tags in it"):
        index(clip_library, photos, tags=empty)
    with pytest.raises(UsageError, match=r"missing\.txt"):
        index(clip_library, photos, tags=tmp_path / "missing.txt")
    assert all(len(found) == zero_shot.TOP_TAGS for found in scene_labels(clip_library).values())


def test_the_tag_matrix_embeds_like_prompts_together_and_keeps_each_tags_row() -> None:
    """Prompts go to the text tower shortest first (a batch runs to its longest prompt), and
    each tag's row is still the mean of its own prompts."""
    import hashlib

    import numpy as np

    batches: list[list[str]] = []

    def encode_text(texts: list[str]) -> np.ndarray:  # a vector that only its text decides
        batches.append(texts)
        seeds = [int(hashlib.sha256(t.encode()).hexdigest()[:8], 16) for t in texts]
        return np.stack([np.random.default_rng(s).standard_normal(8) for s in seeds])

    names = ("ox", "a rather long name of a tag", "cat", "snow leopard")
    vocabulary = zero_shot.Vocabulary(names, names, "test")
    matrix = zero_shot.text_matrix(encode_text, vocabulary)
    sent = [text for batch in batches for text in batch]
    assert [len(t) for t in sent] == sorted(len(t) for t in sent)
    for row, name in zip(matrix, names, strict=True):
        mean = encode_text([template(name) for template in zero_shot.templates()]).mean(axis=0)
        assert np.allclose(row, mean / np.linalg.norm(mean), atol=1e-6)
    # 183 tags: 1,281 prompts, one past five batches of 256; no batch is a lone text (which
    # would go to the query's numpy tower) and none is over TEXT_BATCH
    batches.clear()
    many = tuple(f"tag {i}" for i in range(183))
    zero_shot.text_matrix(encode_text, zero_shot.Vocabulary(many, many, "test"))
    sizes = [len(batch) for batch in batches]
    assert sum(sizes) == 1281 and min(sizes) > 1 and max(sizes) <= zero_shot.TEXT_BATCH


def test_a_vocabulary_runs_on_torchs_text_tower_a_query_on_numpys(
    tiny_clip_checkpoint: Path,
) -> None:
    """The numpy tower serves a query's one text; many texts at once run far faster on torch
    (benchmarks/tag_matrix.py), with the same vectors."""
    import numpy as np

    from searchapp.encoders.registry import create_encoder

    options = EncoderOptions(clip_weights=tiny_clip_checkpoint)
    encoder = create_encoder("clip:tiny-test", options)
    many = ["a photo of a cat", "a rocket", "a red bicycle by a canal"]
    together = encoder.encode_text(many)
    assert encoder._fast_text is None  # many texts: the numpy tower was not even built
    one_by_one = np.vstack([encoder.encode_text([text]) for text in many])
    assert encoder._fast_text  # a query's one text: numpy
    assert np.abs(together - one_by_one).max() < 1e-5
