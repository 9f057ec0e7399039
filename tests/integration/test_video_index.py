"""Videos in a library: indexed beside photos, searched to the moment, resumed after a kill,
moved without re-embedding, and bad files one line each while the run goes on."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from PIL import Image

from searchapp.cli import main
from searchapp.errors import ImageLoadError
from searchapp.ingest import video_stage
from searchapp.query.search import Query, Term, search
from searchapp.records import REGION_KINDS, Filters
from tests.conftest import sample_image
from tests.integration.helpers import Recorder, catalog_ids, index, index_ids
from tests.videos import frame_at, write_audio_only, write_clip, write_frames, write_variable_rate

# 4 s panning the astronaut, 4 s panning the coffee, 4 s still on the rocket: frames are kept
# at 0, 2 (interval), 4 (cut), 6, 8 (cut); the still shot repeats itself after that
SHOTS = (("astronaut", 4, True), ("coffee", 4, True), ("rocket", 4, False))
COFFEE = (4.0, 8.0)


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("clip")
    shots = [(sample_image(name), seconds, moving) for name, seconds, moving in SHOTS]
    return write_clip(folder / "three.mp4", shots, created="2021-05-18T20:54:45Z")


def crop_of(clip: Path, time: float, target: Path) -> Path:
    """The middle 60% of the frame shown at `time`."""
    frame = frame_at(clip, time)
    width, height = frame.size
    frame.crop((width // 5, height // 5, width - width // 5, height - height // 5)).save(target)
    return target


def test_a_crop_of_a_frame_finds_the_video_and_its_moment(library, photos, clip, tmp_path) -> None:
    video = str(shutil.copy(clip, photos / "three.mp4"))
    summary = index(library, photos)
    assert (summary.new, summary.failed, summary.frames) == (6, 0, 5)
    details = library.catalog.photo_details(library.catalog.image_by_path(video).id)
    meta = details.meta
    assert (meta.codec, meta.frame_rate, meta.width, meta.height) == ("h264", 10.0, 320, 240)
    assert meta.duration == pytest.approx(12.0, abs=0.15)
    assert (meta.taken_at, meta.taken_source) == (1621371285.0, "video")
    assert meta.frames_until is None
    assert [r.kind for r in details.regions] == ["frame"] * 5
    assert sorted(r.time for r in details.regions) == [0.0, 2.0, 4.0, 6.0, 8.0]

    crop = crop_of(clip, 6.0, tmp_path / "crop.png")
    found = search(library, Query((Term("image", str(crop)),), k=3, kinds=REGION_KINDS))
    # coffee.jpg, the photo the shot pans across, is in the library too: the frame wins
    assert found[0].path == video and found[0].verified == "pixels"
    assert abs(found[0].time - 6.0) <= 2.0 and COFFEE[0] <= found[0].time < COFFEE[1]
    assert found[0].moments[0][0] == found[0].time
    assert found[0].kind == "frame" and found[0].bbox == (0, 0, 320, 240)

    photos_only = search(library, Query((Term("image", str(crop)),), k=10, kinds=("scene",)))
    assert video not in [hit.path for hit in photos_only]
    videos_only = search(library, Query((Term("image", str(crop)),), k=10, kinds=("frame",)))
    assert [hit.path for hit in videos_only] == [video]

    # a word for what the coffee shot shows (the CNN's label) lands in the coffee shot
    worded = search(library, Query((Term("text", "espresso"),), k=3, kinds=("frame",)))
    assert worded[0].path == video and COFFEE[0] <= worded[0].time < COFFEE[1]
    assert worded[0].label == "espresso"
    assert "espresso" in worded[0].as_dict()["tags"]  # the matching frame's labels
    # --tag alone reaches videos by their frames' labels, each video once
    tagged = library.tagged_photos(Filters(tags=(("espresso",),)), 5, ("frame",))
    assert [path for path, _, _ in tagged] == [video]


def test_search_json_gives_the_time_and_the_best_moments(library, photos, clip, tmp_path, capsys):
    video = str(shutil.copy(clip, photos / "three.mp4"))
    index(library, photos)
    library.close()
    crop = crop_of(clip, 2.0, tmp_path / "crop.png")
    args = ["--library", str(library.directory)]
    assert main(["search", "--image", str(crop), "--kind", "frame", "--json", *args]) == 0
    (hit,) = json.loads(capsys.readouterr().out)["results"]
    assert hit["path"] == video and hit["region"]["kind"] == "frame"
    assert hit["time"] in (0.0, 2.0)  # the astronaut shot; 2.0 is the frame itself
    assert hit["moments"][0]["time"] == hit["time"]
    assert main(["search", "--image", str(crop), "--kind", "frame", *args]) == 0
    shown = capsys.readouterr().out
    assert "three.mp4" in shown and "frame 00:0" in shown


def test_a_killed_run_resumes_the_video_where_its_frames_were_committed(
    library, clip, tmp_path, monkeypatch
) -> None:
    folder = tmp_path / "videos"
    folder.mkdir()
    video = str(shutil.copy(clip, folder / "three.mp4"))
    monkeypatch.setattr(video_stage, "FRAMES_PER_COMMIT", 2)
    embed = video_stage.VideoStage._embed
    calls = []

    def killed_on_the_second_chunk(self, chunk, video):  # type: ignore[no-untyped-def]
        calls.append(len(chunk))
        if len(calls) == 2:
            raise KeyboardInterrupt
        return embed(self, chunk, video)

    monkeypatch.setattr(video_stage.VideoStage, "_embed", killed_on_the_second_chunk)
    summary = index(library, folder)
    assert summary.interrupted
    row = library.catalog.image_by_path(video)
    assert row.frames_until == 2.0  # frames 0 and 2 committed
    assert sorted(r.time for r in library.catalog.photo_details(row.id).regions) == [0.0, 2.0]

    monkeypatch.setattr(video_stage.VideoStage, "_embed", embed)
    starts = []
    sample = video_stage.sample_frames

    def spy(*args, **kw):  # type: ignore[no-untyped-def]
        starts.append(kw.get("start"))
        return sample(*args, **kw)

    monkeypatch.setattr(video_stage, "sample_frames", spy)
    summary = index(library, folder)
    assert starts == [2.0]  # sampled on from the mark, not from the start
    assert (summary.new, summary.unchanged) == (0, 0)
    details = library.catalog.photo_details(row.id)
    assert sorted(r.time for r in details.regions) == [0.0, 2.0, 4.0, 6.0, 8.0]
    assert details.meta.frames_until is None
    assert index_ids(library, "frame") == catalog_ids(library, "frame")
    assert index(library, folder).unchanged == 1  # and done: the next run reads nothing


def test_a_moved_video_keeps_its_frames_and_a_deleted_one_loses_them(
    library, clip, tmp_path
) -> None:
    folder = tmp_path / "videos"
    (folder / "sub").mkdir(parents=True)
    shutil.copy(clip, folder / "three.mp4")
    index(library, folder)
    before = index_ids(library, "frame")
    assert len(before) == 5
    (folder / "three.mp4").rename(folder / "sub" / "renamed.mp4")
    summary = index(library, folder)
    assert (summary.moved, summary.embedded, summary.frames) == (1, 0, 0)
    assert index_ids(library, "frame") == before
    (folder / "sub" / "renamed.mp4").unlink()
    assert index(library, folder).deleted == 1
    assert index_ids(library, "frame") == set() == catalog_ids(library, "frame")


def test_bad_videos_are_one_line_each_and_the_run_goes_on(library, photos, clip) -> None:
    write_audio_only(photos / "voice.mp4")
    (photos / "empty.mov").write_bytes(b"")
    (photos / "notes.mkv").write_text("not a video\n" * 50)
    data = clip.read_bytes()
    (photos / "cut_short.mp4").write_bytes(data[: len(data) // 2])
    (photos / "odd_codec.mp4").write_bytes(data.replace(b"avc1", b"zzzz"))
    write_variable_rate(photos / "low_light.mp4")
    Image.new("RGB", (64, 64)).save(photos / "tiny.png")
    recorder = Recorder()
    summary = index(library, photos, recorder=recorder)
    reasons = {Path(path).name: reason for path, reason in recorder.failures}
    assert set(reasons) == {"voice.mp4", "empty.mov", "notes.mkv", "cut_short.mp4", "odd_codec.mp4"}
    assert "no video stream" in reasons["voice.mp4"]
    assert "zero-length" in reasons["empty.mov"]
    assert "not a readable video" in reasons["notes.mkv"]
    assert "truncated" in reasons["cut_short.mp4"]
    assert "unsupported video codec" in reasons["odd_codec.mp4"]
    assert [(Path(p).name, "variable frame rate" in r) for p, r in recorder.notes] == [
        ("low_light.mp4", True)
    ]
    assert summary.new == 7  # the five photos, tiny.png and the variable-rate video
    assert {Path(f.path).name for f in library.catalog.all_failures()} == set(reasons)


def test_a_video_failing_midway_leaves_no_rows_and_a_cut_off_one_keeps_its_frames(
    library, clip, tmp_path, monkeypatch
) -> None:
    folder = tmp_path / "videos"
    folder.mkdir()
    shutil.copy(clip, folder / "three.mp4")
    whole = write_frames(tmp_path / "whole.mp4", 120, faststart=True)
    data = whole.read_bytes()
    (folder / "cut_off.mp4").write_bytes(data[: len(data) // 2])  # its index still opens
    monkeypatch.setattr(video_stage, "FRAMES_PER_COMMIT", 2)
    sample = video_stage.sample_frames

    def fails_after_three_frames(path, *args, **kw):  # type: ignore[no-untyped-def]
        for number, frame in enumerate(sample(path, *args, **kw)):
            if number == 3 and path.endswith("three.mp4"):
                raise ImageLoadError(path, "decoding stopped: a disk error")
            yield frame

    monkeypatch.setattr(video_stage, "sample_frames", fails_after_three_frames)
    recorder = Recorder()
    summary = index(library, folder, recorder=recorder)
    # the two frames committed before the failure went with the video
    assert [(Path(p).name, r) for p, r in recorder.failures] == [
        ("three.mp4", "decoding stopped: a disk error")
    ]
    assert library.catalog.image_by_path(str(folder / "three.mp4")) is None
    assert (summary.new, summary.failed) == (1, 1)
    cut = library.catalog.image_by_path(str(folder / "cut_off.mp4"))
    assert cut is not None and cut.frames_until is None
    assert summary.frames == len(library.catalog.photo_details(cut.id).regions) > 0
    assert index_ids(library, "frame") == catalog_ids(library, "frame")
    ((path, note),) = recorder.notes
    assert Path(path).name == "cut_off.mp4" and "truncated: frames end at 00:0" in note
    assert "of 00:12.0" in note and "indexed that far" in note
