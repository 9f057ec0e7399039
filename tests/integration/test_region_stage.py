"""The region stage: scenes first, objects and tiles after, resumable, counted by stats."""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from searchapp.errors import ImageLoadError
from searchapp.ingest import region_stage
from searchapp.ingest.pipeline import IndexCallbacks
from searchapp.ingest.regions import RegionOptions
from searchapp.library import Library
from tests.conftest import searchapp_here
from tests.integration.helpers import HYBRID, Recorder, assert_consistent, index

LATER = replace(HYBRID, regions_later=True)
TILES = replace(HYBRID, regions=RegionOptions(kinds=("scene", "tile")))


def kinds_of(lib: Library) -> dict[str, int]:
    return lib.stats().regions_by_kind


def test_scenes_now_regions_on_the_next_run(library: Library, photos: Path) -> None:
    first = index(library, photos, options=LATER)
    assert first.embedded == 5 and first.with_regions == 0 and first.regions_pending == 5
    assert kinds_of(library) == {"scene": 5}
    assert library.stats().regions_pending == 5
    found = library.search(image=str(photos / "things" / "coffee.jpg"), k=1, include_self=True)
    hits = found.hits
    assert hits and hits[0].path.endswith("coffee.jpg")  # searchable before any region exists
    # and the answer says what it could not search yet, and how to get it
    waiting = "5 photos are searched by the whole scene only, their objects and tiles still to come"
    assert found.notes == [f"{waiting}: run `searchapp index` on their folders"]
    # a filtered search counts the photos it could have found: things/ holds two of the five
    things = library.search(image=str(photos / "camera.jpg"), k=1, folder=str(photos / "things"))
    assert things.notes[0].startswith("2 photos are searched by the whole scene only")
    writer = Library(library.directory)
    writer.lock.acquire()  # a run making them: named instead
    try:
        found = library.search(image=str(photos / "things" / "coffee.jpg"), k=1)
        assert found.notes == [f"{waiting}: searchapp pid {os.getpid()} is making them now"]
        assert library.search(image=str(photos / "camera.jpg"), k=1, kinds=("scene",)).notes == []
    finally:
        writer.close()

    second = index(library, photos, options=HYBRID)
    assert second.embedded == 0 and second.unchanged == 5
    assert second.with_regions == 5 and second.regions_pending == 0
    assert library.stats().regions_pending == 0
    assert library.search(image=str(photos / "things" / "coffee.jpg"), k=1).notes == []
    counts = kinds_of(library)
    assert counts["scene"] == 5 and counts["tile"] >= 5 and counts.get("object", 0) >= 1
    assert_consistent(library)
    assert index(library, photos, options=HYBRID).with_regions == 0  # nothing left to make


def test_one_run_gives_what_two_stages_give(
    library: Library, photos: Path, tmp_path: Path, cnn_encoder
) -> None:
    index(library, photos, options=TILES)
    staged = Library(tmp_path / "staged")
    staged._encoder = cnn_encoder
    staged.catalog.set_encoder_identity(cnn_encoder.identity)
    try:
        index(staged, photos, options=replace(TILES, regions_later=True))
        index(staged, photos, options=TILES)
        assert kinds_of(staged) == kinds_of(library)
        crop = tmp_path / "crop.jpg"
        from PIL import Image

        with Image.open(photos / "astronaut.jpg") as image:
            image.crop((150, 40, 330, 220)).save(crop)
        for lib in (library, staged):
            hits = lib.search(image=str(crop), k=1, kinds=("tile",)).hits
            assert hits[0].path.endswith("astronaut.jpg") and hits[0].kind == "tile"
    finally:
        staged.close()


def test_killed_region_stage_resumes(library: Library, photos: Path) -> None:
    index(library, photos, options=replace(TILES, regions_later=True))
    recorder = Recorder()
    # the region stage reports each photo as read; stop after two, one commit each
    options = replace(TILES, commit_every=1, batch_size=1, workers=1)
    stopped = index(library, photos, options=options, callbacks=recorder.callbacks(stop_after=2))
    assert stopped.interrupted
    waiting = library.stats().regions_pending
    assert 0 < waiting < 5
    assert_consistent(library)
    resumed = index(library, photos, options=TILES)
    assert resumed.with_regions == waiting and library.stats().regions_pending == 0
    with library.catalog.engine.connect() as conn:
        rows = conn.exec_driver_sql(
            "SELECT image_id, x0, y0, x1, y1 FROM regions WHERE kind = 'tile'"
        ).all()
    assert len(rows) == len(set(rows))  # no photo got its tiles twice
    assert {row[0] for row in rows} == {image.id for image in library.catalog.all_images()}


def test_identical_copies_are_decoded_once(
    library: Library, photos: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shutil.copy(photos / "astronaut.jpg", photos / "animals" / "astronaut-copy.jpg")
    index(library, photos, options=replace(TILES, regions_later=True))
    recorder = Recorder()
    decoded: list[str] = []
    real_decode = region_stage.decode

    def counting_decode(data, stat, **kw):  # type: ignore[no-untyped-def]
        decoded.append(stat.path)
        return real_decode(data, stat, **kw)

    monkeypatch.setattr(region_stage, "decode", counting_decode)
    summary = index(library, photos, options=TILES, recorder=recorder)
    assert summary.with_regions == 6
    assert recorder.advanced == 6 and len(decoded) == 5  # both copies counted, one decoded
    by_path = {image.path: image.id for image in library.catalog.all_images()}
    tiles = [
        library.catalog.region_vectors_of_image(by_path[str(p)], "tile", 1280)
        for p in (photos / "astronaut.jpg", photos / "animals" / "astronaut-copy.jpg")
    ]
    assert len(tiles[0]) == len(tiles[1]) > 0
    assert (tiles[0] == tiles[1]).all()


def test_changed_or_deleted_photo_between_stages(library: Library, photos: Path) -> None:
    index(library, photos, options=replace(TILES, regions_later=True))
    (photos / "camera.jpg").unlink()
    cat = photos / "animals" / "cat.jpg"
    with open(cat, "ab") as handle:  # new bytes after the JPEG's end: a changed file
        handle.write(b"changed")
    summary = index(library, photos, options=TILES)
    assert summary.deleted == 1 and summary.changed == 1
    assert summary.regions_pending == 0 and library.stats().regions_pending == 0
    assert library.stats().images == 4
    assert_consistent(library)


def test_cli_reports_waiting_photos(tmp_path: Path, photos: Path) -> None:
    lib = str(tmp_path / "clilib")
    base = ["--library", lib]
    done = searchapp_here(*base, "index", str(photos), "--regions-later", "--regions", "scene,tile")
    assert done.returncode == 0, done.stderr
    assert "5 still wait" in done.stdout
    stats = json.loads(searchapp_here(*base, "stats", "--json").stdout)
    assert stats["regions_pending"] == 5 and "tile" not in stats["regions"]
    done = searchapp_here(*base, "index", str(photos), "--json", "--regions", "scene,tile")
    summary = json.loads(done.stdout)
    assert summary["with_regions"] == 5 and summary["regions_pending"] == 0
    assert os.path.exists(lib)


def test_search_during_the_region_stage_opens_the_saved_scene_index(
    library: Library, photos: Path
) -> None:
    index(library, photos, options=replace(TILES, regions_later=True))
    seen: list[list[str]] = []

    def on_advance(n: int) -> None:
        # another process's view, after some of the region stage's commits
        if len(seen) < 3:
            reader = Library(library.directory)
            try:
                hits = reader.search(
                    image=str(photos / "camera.jpg"), k=1, kinds=("scene",), include_self=True
                ).hits
                assert hits and hits[0].path.endswith("camera.jpg")
                seen.append(list(reader.indexes().repairs))
            finally:
                reader.close()

    options = replace(TILES, commit_every=1, batch_size=1, workers=1)
    summary = library.index(
        [str(photos)], options=options, callbacks=IndexCallbacks(on_advance=on_advance)
    )
    assert summary.with_regions == 5 and len(seen) == 3
    assert all(not any(r.startswith("scene") for r in repairs) for repairs in seen), seen


def test_a_pooled_tile_is_the_crop_it_covers(cnn_encoder, sample_dir: Path) -> None:
    """One pass, pooled per box: each box's vector is nearest to the crop of that box, encoded
    on its own, among the crops of the other boxes."""
    from PIL import Image

    from searchapp.encoders.cnn import preprocess

    with Image.open(sample_dir / "astronaut.jpg") as opened:
        photo = opened.convert("RGB")
    boxes = [(0, 0, 256, 256), (256, 0, 512, 256), (0, 256, 256, 512), (256, 256, 512, 512)]
    fmap = cnn_encoder.feature_map(cnn_encoder.region_input(photo), photo.size)
    pooled = cnn_encoder.pool(fmap, boxes).vectors
    crops = cnn_encoder.encode(np.stack([preprocess(photo.crop(box)) for box in boxes])).vectors
    similarity = pooled @ crops.T
    assert (similarity.argmax(axis=1) == np.arange(4)).all(), similarity
    assert np.allclose(np.linalg.norm(pooled, axis=1), 1, atol=1e-5)


@pytest.mark.parametrize("vectors", ["crops", "pooled"])
def test_regions_of_a_turned_photo_are_in_displayed_pixels(
    library: Library, tmp_path: Path, sample_dir: Path, vectors: str
) -> None:
    """A phone photo stored landscape with EXIF orientation 6 is shown portrait: its tiles and
    objects are boxes of the portrait picture, and a crop of what is shown finds its tile."""
    from PIL import Image

    folder = tmp_path / "turned"
    folder.mkdir()
    with Image.open(sample_dir / "astronaut.jpg") as opened:
        shown = opened.convert("RGB").resize((384, 512))  # portrait, as displayed
    stored = shown.transpose(Image.Transpose.ROTATE_90)  # orientation 6 turns it back
    exif = Image.Exif()
    exif[0x0112] = 6
    stored.save(folder / "turned.jpg", quality=92, exif=exif)
    index(
        library, folder, options=replace(HYBRID, regions=replace(HYBRID.regions, vectors=vectors))
    )
    image = library.catalog.all_images()[0]
    crop = tmp_path / "crop.jpg"
    shown.crop((200, 40, 380, 220)).save(crop, quality=92)
    hits = library.search(image=str(crop), k=1, kinds=("tile",), verify=False).hits
    assert hits and hits[0].path == image.path
    x0, y0, x1, y1 = hits[0].bbox
    assert 0 <= x0 < x1 <= 384 and 0 <= y0 < y1 <= 512  # portrait coordinates
    overlap = max(0, min(x1, 380) - max(x0, 200)) * max(0, min(y1, 220) - max(y0, 40))
    assert overlap > 0.5 * (x1 - x0) * (y1 - y0)  # most of the tile lies in the crop
    objects = library.search(image=str(crop), k=1, kinds=("object",), verify=False).hits
    for hit in objects:
        assert hit.bbox[2] <= 384 and hit.bbox[3] <= 512


def test_a_photo_whose_regions_fail_keeps_its_scene_and_says_why(
    library: Library, photos: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    index(library, photos, options=replace(HYBRID, regions_later=True))
    real_decode = region_stage.decode
    broken = str(photos / "camera.jpg")

    def failing_decode(data, stat, **kw):  # type: ignore[no-untyped-def]
        if stat.path == broken:
            raise ImageLoadError(stat.path, "truncated data")
        return real_decode(data, stat, **kw)

    monkeypatch.setattr(region_stage, "decode", failing_decode)
    recorder = Recorder()
    summary = index(library, photos, options=TILES, recorder=recorder)
    assert summary.failed == 1 and summary.with_regions == 4
    assert [path for path, _ in recorder.failures] == [broken]
    assert [(f.path, "truncated" in f.reason) for f in library.failures()] == [(broken, True)]
    # this run made tiles only: the objects it never tried still wait
    waiting = {item.path: item.kinds for item in library.catalog.awaiting_regions()}
    assert waiting[broken] == ("object",)
    hits = library.search(image=broken, k=1, kinds=("scene",), include_self=True).hits
    assert hits[0].path == broken  # still searchable by its scene


@pytest.mark.parametrize(
    "error",
    [
        MemoryError(),
        # ONNX Runtime's and PyTorch's words for a failed allocation, not MemoryErrors
        RuntimeError("[ONNXRuntimeError] : 6 : RUNTIME_EXCEPTION : Failed to allocate memory"),
        RuntimeError("DefaultCPUAllocator: not enough memory: you tried to allocate 8 GB"),
        # a reader's CAM pass on a GPU: said as the GPU's, not as decoding's
        RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 3.8 GiB total)"),
    ],
)
def test_out_of_memory_leaves_the_photo_waiting(
    library: Library, photos: Path, monkeypatch: pytest.MonkeyPatch, error: Exception
) -> None:
    index(library, photos, options=replace(TILES, regions_later=True))

    def no_memory(data, stat, **kw):  # type: ignore[no-untyped-def]
        raise error

    monkeypatch.setattr(region_stage, "decode", no_memory)
    recorder = Recorder()
    summary = index(library, photos, options=TILES, recorder=recorder)
    assert summary.failed == 5 and library.stats().regions_pending == 5
    on_gpu = "CUDA" in str(error)
    said = {reason.split(": ", 1)[1] for _, reason in recorder.failures}
    assert said == {region_stage.DEVICE_OUT_OF_MEMORY if on_gpu else region_stage.OUT_OF_MEMORY}
    assert library.failures() == []  # nothing to list: the next run tries again
    monkeypatch.undo()
    assert index(library, photos, options=TILES).with_regions == 5
