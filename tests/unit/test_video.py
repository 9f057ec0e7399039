"""Reading and sampling video files made with PyAV from real photos: the facts of the stream,
the frames kept (first, cuts, every N seconds, no repeats, a cap), rotation, and bad files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from searchapp.errors import ImageLoadError
from searchapp.ingest.video import SampleOptions, SampleReport, frame_at, probe, sample_frames
from tests.conftest import sample_image
from tests.videos import (
    make_videos,
    pan,
    write_audio_only,
    write_clip,
    write_frames,
    write_variable_rate,
)


@pytest.fixture(scope="module")
def photos() -> dict[str, Image.Image]:
    return {name: sample_image(name) for name in ("astronaut", "coffee", "rocket")}


@pytest.fixture(scope="module")
def three_shots(tmp_path_factory: pytest.TempPathFactory, photos) -> Path:
    """4 s panning the astronaut, 4 s panning the coffee, 4 s still on the rocket."""
    folder = tmp_path_factory.mktemp("video")
    shots = [
        (photos["astronaut"], 4, True),
        (photos["coffee"], 4, True),
        (photos["rocket"], 4, False),
    ]
    return write_clip(folder / "three.mp4", shots, created="2021-05-18T20:54:45Z")


def test_probe_reads_the_streams_facts(three_shots: Path) -> None:
    info = probe(str(three_shots))
    assert info.duration == pytest.approx(12.0, abs=0.15)
    assert info.fps == pytest.approx(10.0)
    assert (info.codec, info.width, info.height, info.rotation) == ("h264", 320, 240, 0)
    assert info.created == pytest.approx(1621371285.0)  # 2021-05-18T20:54:45Z
    assert info.variable_rate is False


@pytest.mark.parametrize("gop", [10, 100])  # keyframes every second (decoded alone) or every 10 s
def test_sampling_keeps_the_first_frame_each_shot_and_every_two_seconds(
    photos, tmp_path, gop
) -> None:
    shots = [
        (photos["astronaut"], 4, True),
        (photos["coffee"], 4, True),
        (photos["rocket"], 4, False),
    ]
    clip = write_clip(tmp_path / "clip.mp4", shots, gop=gop)
    kept = list(sample_frames(str(clip)))
    times = [round(f.time, 1) for f in kept]
    assert times[0] == 0.0 and kept[0].why == "first"
    assert 4.0 in times and 8.0 in times  # each new shot from its first frame
    assert [t for t in times if t > 8.0] == []  # the still shot: its later frames repeat it
    gaps = np.diff(times)
    assert gaps.max() <= 2.0 + 1e-6  # within a moving shot, every 2 s
    assert [f.why for f in kept if round(f.time, 1) == 8.0] == ["cut"]
    # each kept frame shows what the clip showed then
    for frame in kept:
        shot = int(frame.time // 4)
        photo = [photos["astronaut"], photos["coffee"], photos["rocket"]][shot]
        moving = shot < 2
        expected = pan(photo, ((frame.time % 4) * 10) / 39 if moving else 0.5)
        difference = np.abs(np.asarray(frame.image, float) - np.asarray(expected, float)).mean()
        assert difference < 12, (frame.time, difference)  # H.264 at default quality


def test_a_cap_per_minute_and_a_longer_step(three_shots: Path) -> None:
    capped = list(sample_frames(str(three_shots), SampleOptions(max_per_minute=2)))
    assert [round(f.time, 1) for f in capped] == [0.0, 2.0]
    sparse = list(sample_frames(str(three_shots), SampleOptions(every=5.0)))
    assert [round(f.time, 1) for f in sparse][:2] == [0.0, 4.0]  # the cut, not 5 s


def test_a_phone_style_clip_is_turned_upright(photos, tmp_path) -> None:
    portrait = photos["rocket"]  # 427 x 640: taller than wide
    stored = [(portrait.transpose(Image.Transpose.ROTATE_90), 2, False)]  # kept sideways
    clip = write_clip(tmp_path / "phone.mp4", stored, size=(320, 240), rotation=-90)
    info = probe(str(clip))
    assert (info.rotation, info.width, info.height) == (270, 240, 320)
    frame = next(sample_frames(str(clip)))
    assert frame.image.size == (240, 320)
    upright = pan(portrait.transpose(Image.Transpose.ROTATE_90), 0.5).transpose(
        Image.Transpose.ROTATE_270
    )
    difference = np.abs(np.asarray(frame.image, float) - np.asarray(upright, float)).mean()
    assert difference < 12


def test_bad_files_are_one_clear_reason_each(tmp_path, three_shots, photos) -> None:
    audio = write_audio_only(tmp_path / "voice.m4a")
    with pytest.raises(ImageLoadError, match="no video stream"):
        probe(str(audio))
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    with pytest.raises(ImageLoadError, match="zero-length file"):
        probe(str(empty))
    text = tmp_path / "notes.mp4"
    text.write_text("not a video at all\n" * 100)
    with pytest.raises(ImageLoadError, match="not a readable video"):
        probe(str(text))
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(three_shots.read_bytes()[: three_shots.stat().st_size // 2])
    # the index is at the end, cut off: the file cannot be opened
    with pytest.raises(ImageLoadError, match=r"truncated, or not a video.*Invalid data"):
        list(sample_frames(str(truncated)))
    # a codec FFmpeg has no decoder for: the stream's four-character code made up
    unknown = tmp_path / "unknown_codec.mp4"
    unknown.write_bytes(three_shots.read_bytes().replace(b"avc1", b"zzzz"))
    with pytest.raises(ImageLoadError, match=r"unsupported video codec.*libx264"):
        probe(str(unknown))
    with pytest.raises(ImageLoadError, match="over the 0 MP limit"):
        list(sample_frames(str(three_shots), SampleOptions(max_pixels=1000)))


def test_variable_frame_rate_is_seen_and_times_come_from_each_frame(tmp_path) -> None:
    clip = write_variable_rate(tmp_path / "vfr.mp4")
    info = probe(str(clip))
    assert info.variable_rate is True
    times = [frame.time for frame in sample_frames(str(clip), SampleOptions(same=0.0))]
    # 60 frames 33 and 100 ms apart in turn: 3.99 s, not the 2 s a fixed 30 fps would make
    assert times[-1] == pytest.approx(3.8, abs=0.25)
    assert times == sorted(times)


def test_resuming_starts_after_the_time_given_and_frames_come_scaled(three_shots) -> None:
    whole = [frame.time for frame in sample_frames(str(three_shots))]
    rest = list(sample_frames(str(three_shots), start=whole[1], side=120))
    assert [frame.time for frame in rest] == pytest.approx([t for t in whole if t > whole[1]])
    assert all(min(frame.image.size) == 120 for frame in rest)  # 320 x 240 scaled down


def test_frame_at_gives_the_picture_shown_then(three_shots, photos) -> None:
    shown = frame_at(str(three_shots), 6.0)
    expected = pan(photos["coffee"], 0.5)  # the coffee shot runs 4-8 s, panning
    difference = np.abs(np.asarray(shown, float) - np.asarray(expected, float)).mean()
    assert difference < 20
    other = pan(photos["astronaut"], 0.5)
    assert np.abs(np.asarray(shown, float) - np.asarray(other, float)).mean() > 2 * difference


@pytest.mark.parametrize(
    ("name", "codec"),
    [
        ("clip.mov", "h264"),
        ("clip.m4v", "h264"),
        ("clip.mkv", "hevc"),
        ("clip.webm", "libvpx-vp9"),
        ("clip.avi", "mpeg4"),
    ],
)
def test_every_container_reads_and_samples(tmp_path, photos, name, codec) -> None:
    shots = [(photos["astronaut"], 2.0, "pan"), (photos["coffee"], 2.0, "pan")]
    clip = make_videos.write_clip(tmp_path / name, shots, (160, 120), fps=10, gop=10, codec=codec)
    info = probe(str(clip))
    assert (info.width, info.height) == (160, 120)
    assert info.duration == pytest.approx(4.0, abs=0.3)
    kept = list(sample_frames(str(clip)))
    assert [frame.why for frame in kept] == ["first", "cut"]
    assert [frame.time for frame in kept] == pytest.approx([0.0, 2.0], abs=0.15)


def test_times_count_from_the_streams_first_frame(tmp_path) -> None:
    # timestamps from 5 s, as `ffmpeg -ss 5 -c copy` leaves them
    clip = write_frames(tmp_path / "late.mp4", 30, first_pts=50)
    info = probe(str(clip))
    assert info.origin == pytest.approx(5.0, abs=0.11)
    times = [frame.time for frame in sample_frames(str(clip), SampleOptions(every=1.0))]
    assert times[0] == pytest.approx(0.0, abs=0.01) and times[-1] < info.duration
    grey_at_one_second = np.asarray(frame_at(str(clip), 1.0)).mean()
    assert grey_at_one_second == pytest.approx(10 * 9, abs=6)  # the 11th frame, not the first


def test_a_truncated_file_that_still_opens_reports_where_its_frames_end(tmp_path) -> None:
    clip = write_frames(tmp_path / "whole.mp4", 120, faststart=True)
    data = clip.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 2])
    report = SampleReport()
    kept = list(sample_frames(str(cut), report=report))
    assert probe(str(cut)).duration == pytest.approx(12.0, abs=0.2)  # what the index says
    assert kept and report.last_time is not None and 0.5 <= report.last_time < 10.0
    assert report.stopped is not None and "Invalid data" in report.stopped
