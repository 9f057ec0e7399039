"""Switching encoders: every photo re-embedded, identity recorded, an interrupted switch resumes."""

from __future__ import annotations

from pathlib import Path

import pytest

from searchapp.encoders.base import EncoderOptions
from tests.integration.helpers import OPTIONS, Recorder, assert_consistent, index, paths_of


def test_reindex_switches_encoder_and_resumes(
    library, photos: Path, tiny_clip_checkpoint: Path
) -> None:  # type: ignore[no-untyped-def]
    index(library, photos)
    before = paths_of(library)
    options = EncoderOptions(clip_weights=tiny_clip_checkpoint)
    library._encoder = None

    recorder = Recorder()
    interrupted = library.reindex(
        "clip:tiny-test",
        encoder_options=options,
        callbacks=recorder.callbacks(stop_after=2),
        options=OPTIONS,
    )
    assert interrupted.interrupted
    assert library.encoder_identity.name == "clip:tiny-test"  # type: ignore[union-attr]
    assert len(paths_of(library)) < len(before)

    resumed = library.reindex(None, encoder_options=options)  # no --encoder: finish the switch
    assert not resumed.interrupted
    assert paths_of(library) == before
    assert library.encoder_identity.dim == 32  # type: ignore[union-attr]
    assert library.catalog.get_setting("reindex.pending") == ""
    assert_consistent(library)
    hit = library.search(image=str(photos / "camera.jpg"), k=1, include_self=True).hits
    assert hit[0].path == str(photos / "camera.jpg")


def test_reindex_without_encoder_or_pending_work_is_an_error(library, photos: Path) -> None:  # type: ignore[no-untyped-def]
    from searchapp.errors import SearchappError

    index(library, photos)
    with pytest.raises(SearchappError, match="--encoder"):
        library.reindex(None)


def test_a_library_that_stored_no_photo_takes_another_encoder(
    library, photos: Path, tmp_path: Path, tiny_clip_checkpoint: Path
) -> None:  # type: ignore[no-untyped-def]
    from searchapp.errors import EncoderMismatchError

    unreadable = tmp_path / "unreadable"
    unreadable.mkdir()
    (unreadable / "broken.jpg").write_bytes(b"not a photo")
    assert index(library, unreadable).failed == 1  # the first run chose the CNN, stored nothing
    options = EncoderOptions(clip_weights=tiny_clip_checkpoint)
    summary = index(library, photos, encoder="clip:tiny-test", encoder_options=options)
    assert summary.embedded == len(paths_of(library)) > 0
    assert library.encoder_identity.name == "clip:tiny-test"  # type: ignore[union-attr]
    assert_consistent(library)
    with pytest.raises(EncoderMismatchError, match="reindex --encoder"):  # now it holds photos
        index(library, photos, encoder="cnn:efficientnet-lite0")


def test_a_switch_to_an_encoder_that_cannot_load_keeps_the_library(
    library, photos: Path, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    from searchapp.errors import WeightsUnavailableError

    index(library, photos)
    before = paths_of(library)
    missing = EncoderOptions(clip_weights=tmp_path / "not-downloaded.pt", allow_download=False)
    with pytest.raises(WeightsUnavailableError, match=r"not-downloaded\.pt"):
        library.reindex("clip:tiny-test", encoder_options=missing)
    assert paths_of(library) == before  # nothing removed: it still answers with the old vectors
    assert library.encoder_identity.name == "cnn:efficientnet-lite0"  # type: ignore[union-attr]
    assert library.catalog.get_setting("reindex.pending") in (None, "")
    hit = library.search(like=str(photos / "camera.jpg"), k=1, include_self=True).hits
    assert hit[0].path == str(photos / "camera.jpg")
