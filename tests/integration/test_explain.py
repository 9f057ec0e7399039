"""Every hit says why it came: the region that matched, that region's label, and what the pixel
check found (which is what sets the order of an image query's top hits)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
from PIL import Image

from searchapp.cli import main
from searchapp.ingest import regions as regions_module
from searchapp.query import search as search_module
from searchapp.records import Filters
from tests.integration.helpers import HYBRID, index

CAT_CLASSES = {"tabby", "tiger cat", "Egyptian cat", "Persian cat", "Siamese cat"}


def test_a_word_hit_names_the_label_that_matched(sample_library) -> None:  # type: ignore[no-untyped-def]
    library, photos = sample_library
    top = library.search("a cat", k=3)[0]
    assert top.path in {str(photos / "cat.jpg"), str(photos / "cat_small.jpg")}
    assert top.label in CAT_CLASSES  # the matched class, on whichever region won


def test_tile_labels_need_more_confidence_than_scene_labels(
    sample_library, library, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    """The reported case: "a dog" found the cameraman through a corner tile the CNN called a
    Boston bull at 0.36 (tiles encoded as crops). Counted like a scene label, that tile answers;
    it must not, and a tile label below the floor is not even stored."""
    _, photos = sample_library
    camera = str(photos / "cameraman.jpg")
    crops = replace(HYBRID, regions=replace(HYBRID.regions, vectors="crops"))
    monkeypatch.setattr(regions_module, "TILE_LABEL_MIN_PROB", 0.0)  # store every tile label
    monkeypatch.setitem(search_module.LABEL_FLOORS, "tile", 0.0)  # and count them
    index(library, photos, options=crops)
    unguarded = [hit for hit in library.search("a dog", k=5) if hit.path == camera]
    assert unguarded and unguarded[0].kind == "tile"
    assert unguarded[0].label == "Boston bull"  # and the hit says so
    monkeypatch.undo()
    assert camera not in {hit.path for hit in library.search("a dog", k=5)}
    library.catalog.remove_all_vectors()
    index(library, photos, options=crops)  # as indexing stores them: none below the floor
    stored = library.catalog.label_scores(["Boston bull"], ["tile"], Filters(), {"tile": 0.0})
    assert all(prob >= regions_module.TILE_LABEL_MIN_PROB for prob, _ in stored.values())
    assert camera not in {hit.path for hit in library.search("a dog", k=5)}


def test_json_and_table_say_what_the_pixel_check_found(
    sample_library, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:  # type: ignore[no-untyped-def]
    library, photos = sample_library
    query = tmp_path / "crop.jpg"
    with Image.open(photos / "astronaut.jpg") as image:
        image.crop((280, 40, 480, 240)).save(query, quality=90)
    where = ["--library", str(library.directory)]
    assert main(["search", "--image", str(query), "-k", "3", "--json", *where]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["checked"] == 10  # the candidates the check looked at, not the k shown
    results = payload["results"]
    # the astronaut and its edited crop both hold the query's pixels; the third confirms nothing
    assert {(Path(r["path"]).name, r["verified"]) for r in results[:2]} == {
        ("astronaut.jpg", "pixels"),
        ("astronaut_crop.jpg", "pixels"),
    }
    assert (Path(results[2]["path"]).name, results[2]["verified"]) == ("cameraman.jpg", None)

    assert main(["search", "--image", str(query), "-k", "3", *where]) == 0
    out, err = capsys.readouterr()
    header, first = out.splitlines()[:2]
    assert header.split()[:3] == ["rank", "score", "check"]
    assert first.split()[2] == "pixels"
    assert "checked against the query's pixels" in err

    assert main(["search", "--image", str(query), "-k", "3", "--no-verify", "--json", *where]) == 0
    unchecked = json.loads(capsys.readouterr().out)
    assert unchecked["checked"] == 0
    assert {r["verified"] for r in unchecked["results"]} == {None}
    scores = [r["score"] for r in unchecked["results"]]
    assert scores == sorted(scores, reverse=True)  # without the check, scores set the order


def test_a_subtracted_word_drops_every_photo_labelled_so(sample_library) -> None:  # type: ignore[no-untyped-def]
    library, _ = sample_library
    cats = library.search("cat", k=5)
    assert {Path(h.path).name for h in cats} == {"cat.jpg", "cat_small.jpg"}
    tabby = {h.path for h in cats if any(n.startswith("tabby") and p >= 0.05 for n, p in h.labels)}
    assert tabby  # the scene of at least one is labelled a tabby ...
    left = {h.path for h in library.search("cat", minus="tabby", k=5)}
    assert not left & tabby  # ... and no region of it may bring it back


def test_words_for_what_imagenet_has_no_class_of_point_to_clip(sample_library) -> None:  # type: ignore[no-untyped-def]
    from searchapp.errors import QueryError

    library, _ = sample_library
    for words in ("people", "a person"):
        with pytest.raises(QueryError, match=r"no ImageNet label matches .*clip:ViT-B-32"):
            library.search(words)
