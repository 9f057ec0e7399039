"""Duplicate videos: a re-encoded copy at another size and bitrate, a trimmed copy whose cut
falls between sampled frames, a photo that is one of a video's frames; another video is
no copy."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from searchapp.cli import main
from tests.conftest import sample_image
from tests.integration.helpers import index
from tests.videos import frame_at, reencode, write_clip


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("videos")
    shots = [
        (sample_image("astronaut"), 4, True),
        (sample_image("coffee"), 4, True),
        (sample_image("rocket"), 4, True),
    ]
    source = write_clip(folder / "source.mp4", shots)
    reencode(source, folder / "small.mp4", (192, 144), crf=30)
    reencode(source, folder / "trimmed.mp4", (320, 240), start=3.3, end=10.0)
    frame_at(source, 7.0).save(folder / "still.jpg", quality=90)
    other = [(sample_image("chelsea"), 4, True), (sample_image("camera"), 4, True)]
    write_clip(folder / "other.mp4", other)
    return folder


def test_copies_of_a_video_are_grouped_with_their_evidence(library, videos, capsys) -> None:
    summary = index(library, videos)
    assert (summary.new, summary.failed) == (5, 0)
    library.close()
    assert main(["dupes", "--json", "--library", str(library.directory)]) == 0
    data = json.loads(capsys.readouterr().out)
    (group,) = data["groups"]
    names = sorted(Path(p).name for p in group["paths"])
    assert names == ["small.mp4", "source.mp4", "trimmed.mp4"]  # other.mp4 is no copy
    assert Path(group["keep"]).name == "source.mp4"  # larger than small, longer than trimmed
    pairs = {frozenset((Path(p["a"]).name, Path(p["b"]).name)): p for p in group["pairs"]}
    small = pairs[frozenset(("source.mp4", "small.mp4"))]
    # the trimmed copy joins the group through the source or the small copy, whichever first
    (trimmed,) = [pair for names, pair in pairs.items() if "trimmed.mp4" in names]
    assert small["tier"] == "near" and "re-encoded" in small["reason"]
    assert abs(small["offset"]) < 0.15
    assert len(small["frames"]) >= 4
    assert trimmed["tier"] == "crop" and "trimmed copy" in trimmed["reason"]
    # trimmed at 3.3 s: its 0.0 is the source's 3.3, found to the frame (10 fps)
    sign = 1 if Path(trimmed["a"]).name == "trimmed.mp4" else -1
    assert sign * trimmed["offset"] == pytest.approx(3.3, abs=0.11)
    assert all(abs(sign * (f["b"] - f["a"]) - 3.3) <= 2.0 for f in trimmed["frames"])
    # one match a frame, as many as the reason counts
    matched = [f["b"] if sign < 0 else f["a"] for f in trimmed["frames"]]
    assert len(matched) == len(set(matched))
    assert f"{len(trimmed['frames'])} of " in trimmed["reason"]
    stills = {(Path(s["photo"]).name, Path(s["video"]).name): s["time"] for s in data["stills"]}
    assert stills[("still.jpg", "source.mp4")] == pytest.approx(7.0, abs=0.11)
    assert stills[("still.jpg", "trimmed.mp4")] == pytest.approx(3.7, abs=0.11)
    assert all(video != "other.mp4" for _, video in stills)

    assert main(["dupes", "--library", str(library.directory)]) == 0
    shown = capsys.readouterr().out
    assert "group 1: 3 files; keep" in shown and "source.mp4" in shown.splitlines()[0]
    assert "is the frame at 00:07.0 of" in shown
