"""Small real videos for the tests, written with PyAV from scikit-image's photos by the same
code as examples/make_videos.py: pans across a photo, cuts between photos, a still shot, a
phone-style clip stored sideways with its rotation in the container's display matrix, and
re-encoded and trimmed copies."""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

_spec = importlib.util.spec_from_file_location(
    "make_videos", Path(__file__).parents[1] / "examples" / "make_videos.py"
)
assert _spec is not None and _spec.loader is not None
make_videos: Any = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(make_videos)

SIZE = (320, 240)
reencode = make_videos.reencode
frame_at = make_videos.frame_at


def pan(photo: Image.Image, t: float, size: tuple[int, int] = SIZE) -> Image.Image:
    return make_videos.pan(photo, t, size)  # type: ignore[no-any-return]


def write_clip(
    path: Path,
    shots: Sequence[tuple[Image.Image, float, bool]],
    *,
    fps: int = 10,
    size: tuple[int, int] = SIZE,
    gop: int = 10,
    rotation: int | None = None,
    created: str | None = None,
) -> Path:
    """One H.264 clip: for each (photo, seconds, moving) shot, a pan across the photo (or the
    photo still), with a hard cut between shots; a keyframe every `gop` frames."""
    moves = [(photo, seconds, "pan" if moving else "still") for photo, seconds, moving in shots]
    return make_videos.write_clip(  # type: ignore[no-any-return]
        path, moves, size, fps=fps, gop=gop, rotation=rotation, created=created
    )


def write_variable_rate(path: Path, frames: int = 60) -> Path:
    """A clip whose frames come 33 ms and 100 ms apart in turn, as a phone's do in low light."""
    import av

    container = av.open(str(path), "w")
    stream = container.add_stream("h264", rate=30)
    stream.width, stream.height = 160, 120
    stream.pix_fmt = "yuv420p"
    stream.codec_context.time_base = Fraction(1, 1000)
    pts = 0
    for i in range(frames):
        frame = av.VideoFrame.from_ndarray(np.full((120, 160, 3), i * 4, np.uint8), format="rgb24")
        frame.pts, frame.time_base = pts, Fraction(1, 1000)
        pts += 33 if i % 2 == 0 else 100
        _encode(container, stream, frame)
    _encode(container, stream, None)
    container.close()
    return path


def write_frames(
    path: Path,
    count: int,
    *,
    first_pts: int = 0,
    faststart: bool = False,
    size: tuple[int, int] = (160, 120),
) -> Path:
    """`count` frames at 10 a second, each a flat grey 9 levels above the last (so that each
    differs from the one before), timestamps from `first_pts` tenths of a second (as a trim
    copied without re-encoding keeps them); `faststart` puts the index before the frames, so
    that a truncated copy still opens."""
    import av

    options = {"movflags": "faststart"} if faststart else {}
    container = av.open(str(path), "w", options=options)
    stream = container.add_stream("h264", rate=10)
    stream.width, stream.height = size
    stream.pix_fmt = "yuv420p"
    stream.codec_context.gop_size = 10
    stream.codec_context.time_base = Fraction(1, 10)
    for i in range(count):
        grey = np.full((size[1], size[0], 3), (i * 9) % 256, np.uint8)
        frame = av.VideoFrame.from_ndarray(grey, format="rgb24")
        frame.pts, frame.time_base = first_pts + i, Fraction(1, 10)
        _encode(container, stream, frame)
    _encode(container, stream, None)
    container.close()
    return path


def _encode(container: Any, stream: Any, frame: Any) -> None:
    for packet in stream.encode(frame):
        container.mux(packet)


def write_audio_only(path: Path, seconds: float = 1.0) -> Path:
    import av

    container = av.open(str(path), "w")
    stream = container.add_stream("aac", rate=44100)
    samples = int(44100 * seconds)
    tone = (0.2 * np.sin(np.arange(samples) * 2 * np.pi * 440 / 44100)).astype(np.float32)
    for start in range(0, samples, 1024):
        chunk = tone[start : start + 1024][None, :]
        frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout="mono")
        frame.sample_rate = 44100
        _encode(container, stream, frame)
    _encode(container, stream, None)
    container.close()
    return path
