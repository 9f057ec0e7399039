"""Incremental indexing through the Python API: add, modify, touch, delete, move, copy."""

from __future__ import annotations

import os
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
from PIL import Image

from searchapp.errors import EncoderMismatchError
from searchapp.records import REGION_KINDS
from tests.conftest import sample_image
from tests.integration.helpers import (
    HYBRID,
    OPTIONS,
    assert_consistent,
    index,
    index_ids,
    paths_of,
)


def search(lib, image: Path, k: int = 5):  # type: ignore[no-untyped-def]
    return lib.search(image=str(image), k=k, include_self=True).hits


def test_first_run_then_rerun_embeds_nothing_and_reads_nothing(
    library, photos: Path, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    first = index(library, photos)
    assert (first.new, first.embedded, first.failed) == (5, 5, 0)
    assert library.stats().images == 5
    assert_consistent(library)

    def no_reads(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise AssertionError("an unchanged tree must not be read")

    monkeypatch.setattr("searchapp.ingest.pipeline.read_bytes", no_reads)
    second = index(library, photos)
    assert (second.unchanged, second.new, second.embedded, second.changed) == (5, 0, 0, 0)


def test_modified_file_is_re_embedded(library, photos: Path) -> None:  # type: ignore[no-untyped-def]
    index(library, photos)
    cat = photos / "animals" / "cat.jpg"
    before = index_ids(library)
    sample_image("rocket").save(cat)  # same path, new picture
    summary = index(library, photos)
    assert (summary.changed, summary.embedded, summary.new) == (1, 1, 0)
    assert len(index_ids(library)) == 5 and index_ids(library) != before
    hits = search(library, photos / "things" / "deep" / "rocket.jpg", k=2)
    assert {hit.path for hit in hits} == {str(cat), str(photos / "things" / "deep" / "rocket.jpg")}
    assert_consistent(library)


def test_touched_file_with_same_bytes_is_not_re_embedded(library, photos: Path) -> None:  # type: ignore[no-untyped-def]
    index(library, photos)
    os.utime(photos / "camera.jpg", ns=(10**18, 10**18))
    summary = index(library, photos)
    assert (summary.unchanged, summary.embedded, summary.changed) == (5, 0, 0)
    again = index(library, photos)  # the new mtime was recorded
    assert again.unchanged == 5


def test_deleted_file_leaves_catalog_and_index(library, photos: Path) -> None:  # type: ignore[no-untyped-def]
    index(library, photos)
    (photos / "camera.jpg").unlink()
    summary = index(library, photos)
    assert summary.deleted == 1
    assert str(photos / "camera.jpg") not in paths_of(library)
    assert len(index_ids(library)) == 4
    assert_consistent(library)


def test_moved_and_renamed_file_keeps_its_vectors(library, photos: Path) -> None:  # type: ignore[no-untyped-def]
    index(library, photos)
    ids_before = index_ids(library)
    target = photos / "elsewhere" / "kitty-renamed.jpg"
    target.parent.mkdir()
    shutil.move(photos / "animals" / "cat.jpg", target)
    summary = index(library, photos)
    assert (summary.moved, summary.new, summary.deleted, summary.embedded) == (1, 0, 0, 0)
    assert str(target) in paths_of(library)
    assert index_ids(library) == ids_before  # same region ids: nothing re-embedded
    assert search(library, target, k=1)[0].path == str(target)
    assert_consistent(library)


def test_copy_reuses_vectors(library, photos: Path) -> None:  # type: ignore[no-untyped-def]
    index(library, photos)
    shutil.copy(photos / "camera.jpg", photos / "camera-copy.jpg")
    summary = index(library, photos)
    assert (summary.new, summary.reused, summary.embedded) == (1, 1, 0)
    hits = search(library, photos / "camera.jpg", k=2)
    assert {h.path for h in hits} == {str(photos / "camera.jpg"), str(photos / "camera-copy.jpg")}
    assert hits[0].score == pytest.approx(hits[1].score)
    assert_consistent(library)


def test_indexing_a_subfolder_never_deletes_outside_it(library, photos: Path) -> None:  # type: ignore[no-untyped-def]
    index(library, photos)
    summary = index(library, photos / "things")
    assert (summary.deleted, summary.unchanged) == (0, 2)
    assert len(paths_of(library)) == 5


def test_missing_root_is_reported_and_deletes_nothing(
    library, photos: Path, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    from searchapp.errors import UsageError
    from tests.integration.helpers import Recorder

    index(library, photos)
    with pytest.raises(UsageError, match=r"nothing to index: .*unplugged-drive: no such file"):
        index(library, tmp_path / "unplugged-drive")  # the only root: exit 2, not a quiet 0
    assert len(paths_of(library)) == 5
    recorder = Recorder()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    summary = index(library, elsewhere, tmp_path / "unplugged-drive", recorder=recorder)
    assert summary.deleted == 0 and len(paths_of(library)) == 5
    assert "no such file or folder" in recorder.failures[0][1]


def test_search_returns_the_original_of_a_resized_recompressed_copy(
    library, photos: Path, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    index(library, photos)
    original = photos / "astronaut.jpg"
    query = tmp_path / "small.jpg"
    with Image.open(original) as image:
        image.resize((image.width // 3, image.height // 3)).save(query, quality=40)
    hits = search(library, query)
    assert hits[0].path == str(original)
    assert hits[0].kind == "scene" and hits[0].bbox == (0, 0, 512, 512)
    assert hits[0].score > hits[1].score
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)


def test_rotated_photo_is_stored_as_displayed(library, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    folder = tmp_path / "rot"
    folder.mkdir()
    exif = Image.Exif()
    exif[0x0112] = 6  # stored landscape, displayed portrait
    sample_image("rocket").save(folder / "r.jpg", exif=exif.tobytes())
    index(library, folder)
    stored = sample_image("rocket").size
    hit = search(library, folder / "r.jpg", k=1)[0]
    assert hit.bbox == (0, 0, stored[1], stored[0])


def test_another_encoder_is_refused_with_the_reindex_hint(library, photos: Path) -> None:  # type: ignore[no-untyped-def]
    index(library, photos)
    with pytest.raises(EncoderMismatchError, match="reindex --encoder"):
        index(library, photos, encoder="clip:ViT-B-32/laion2b_s34b_b79k")


def test_rebuild_index_reproduces_the_vectors_without_the_encoder(library, photos: Path) -> None:  # type: ignore[no-untyped-def]
    index(library, photos, options=HYBRID)  # several region kinds to rebuild
    like = str(photos / "camera.jpg")
    before = library.search(like=like, k=5, include_self=True).hits
    for path in library.directory.glob("index-*.faiss"):
        path.unlink()
    library._indexes = None
    library._encoder = None  # rebuilding must not need the model
    stats = library.stats()
    assert library.rebuild_index() == stats.vectors > stats.images  # scenes and tiles
    after = library.search(like=like, k=5, include_self=True).hits
    assert [(h.path, round(h.score, 5)) for h in after] == [
        (h.path, round(h.score, 5)) for h in before
    ]
    # one file a kind, an empty one for a kind with no regions (frames: no video here)
    written = {path.name.split("-")[1] for path in library.directory.glob("index-*.faiss")}
    assert written == set(REGION_KINDS) and set(stats.regions_by_kind) < written


def test_skip_low_quality_lists_poor_photos_without_vectors(library, photos: Path) -> None:  # type: ignore[no-untyped-def]
    from PIL import ImageFilter

    astronaut = sample_image("astronaut")
    astronaut.filter(ImageFilter.GaussianBlur(8)).save(photos / "blurry.jpg")
    Image.eval(astronaut, lambda v: v // 12).save(photos / "dark.jpg")
    summary = index(library, photos, options=replace(OPTIONS, skip_low_quality=True))
    assert (summary.new, summary.embedded, summary.low_quality) == (7, 5, 2)
    stats = library.stats()
    assert (stats.images, stats.low_quality, stats.regions_by_kind["scene"]) == (7, 2, 5)
    hits = library.search(image=str(photos / "blurry.jpg"), k=10, verify=False).hits
    assert {str(photos / "blurry.jpg"), str(photos / "dark.jpg")}.isdisjoint(h.path for h in hits)
    assert index(library, photos).unchanged == 7  # listed, so not read again
