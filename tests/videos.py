"""Small real videos for the tests, written with PyAV from scikit-image's photos: pans across a
photo, cuts between photos, a still shot, a phone-style clip stored sideways with its rotation in
the container's display matrix."""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

SIZE = (320, 240)


def pan(photo: Image.Image, t: float, size: tuple[int, int] = SIZE) -> Image.Image:
    """A window of 70% of the photo, moved across it as t goes from 0 to 1."""
    width, height = photo.size
    w, h = int(width * 0.7), int(height * 0.7)
    x0 = int((width - w) * t)
    y0 = (height - h) // 2
    return photo.crop((x0, y0, x0 + w, y0 + h)).resize(size)


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
    import av

    container = av.open(str(path), "w")
    if created:
        container.metadata["creation_time"] = created
    stream = container.add_stream("h264", rate=fps)
    stream.width, stream.height = size
    stream.pix_fmt = "yuv420p"
    stream.codec_context.gop_size = gop
    stream.codec_context.time_base = Fraction(1, fps)
    if rotation is not None:
        stream.set_display_rotation(rotation)
    for photo, seconds, moving in shots:
        frames = round(seconds * fps)
        for i in range(frames):
            picture = pan(photo, i / max(frames - 1, 1) if moving else 0.5, size)
            frame = av.VideoFrame.from_ndarray(np.asarray(picture.convert("RGB")), format="rgb24")
            _encode(container, stream, frame)
    _encode(container, stream, None)  # flush the encoder
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
