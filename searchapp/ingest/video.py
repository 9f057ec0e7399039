"""Video files: what a container says about its video stream, and the frames worth embedding.

Reading is PyAV (FFmpeg in its wheels). Sampling keeps, in time order:
- the first frame;
- the first frame after a scene cut: a jump in the colours of the frame (the total variation
  between 16-bin hue, saturation and value histograms of a 32 x 18 thumbnail and those of the
  previous decoded frame). A pixelwise difference, as PySceneDetect's ContentDetector takes it,
  could not tell a cut from a pan between keyframes a second apart (0.29 at a cut, 0.22 within
  a pan, on the test clips); the histograms could (0.34 and 0.10), and a still or slow shot stays
  under 0.07 frame to frame;
- a frame every `every` seconds within a shot;
and drops a frame almost identical to the last one kept, and any beyond `max_per_minute`.

Decoding only what is needed: where the stream's keyframes come at least every `every` seconds
(phones write one a second or two), only keyframes are decoded (`skip_frame="NONKEY"`), and
encoders put a keyframe at a cut anyway; a stream with sparse keyframes is decoded whole, on the
decoder's threads, and only the frames sampled are converted to pictures.
"""

from __future__ import annotations

import datetime as dt
import functools
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from searchapp.errors import ImageLoadError

VIDEO_SUFFIXES = frozenset({".mp4", ".mov", ".m4v", ".mkv", ".webm", ".avi"})
SIGNATURE_SIZE = (32, 18)


def is_video(path: str) -> bool:
    return os.path.splitext(path)[1].lower() in VIDEO_SUFFIXES


@dataclass(frozen=True)
class VideoInfo:
    duration: float  # seconds
    fps: float | None  # the average frame rate, None where the container gives none
    codec: str
    width: int  # as displayed, after the rotation
    height: int
    rotation: int  # degrees the stored frames are turned to display them
    created: float | None  # unix seconds, from the container's creation_time
    variable_rate: bool  # the stream's frame timing is not one fixed rate
    origin: float = 0.0  # the stream's first timestamp: times count from there


@dataclass(frozen=True)
class SampleOptions:
    every: float = 2.0  # seconds between frames within a shot
    cut: float = 0.2  # colour-histogram change that starts a new shot
    same: float = 0.015  # thumbnail change below which a frame repeats the last one kept
    max_per_minute: int = 60
    max_pixels: int = 250_000_000


@dataclass
class SampleReport:
    """What a sampling pass saw, for its caller to judge: where the decoded frames ended."""

    last_time: float | None = None
    stopped: str | None = None  # why decoding stopped before the end, after frames came


@dataclass(frozen=True)
class SampledFrame:
    time: float  # seconds from the start
    image: Image.Image  # RGB, as displayed
    why: str  # "first", "cut" or "interval"


def _open(path: str) -> Any:
    import av

    try:
        if os.path.getsize(path) == 0:
            raise ImageLoadError(path, "zero-length file (an empty or unfinished copy)")
        if not os.access(path, os.R_OK):
            raise ImageLoadError(
                path, "permission denied; make it readable (chmod +r) and run index again"
            )
    except FileNotFoundError:
        raise ImageLoadError(path, "file vanished during the run") from None
    try:
        container = av.open(path)
    except (av.FFmpegError, OSError, UnicodeDecodeError) as exc:
        raise ImageLoadError(
            path, f"not a readable video (truncated, or not a video): {_first_line(exc)}"
        ) from exc
    if not container.streams.video:
        container.close()
        raise ImageLoadError(path, "no video stream in this file (audio only?)")
    if container.streams.video[0].codec_context is None:
        container.close()
        raise ImageLoadError(
            path,
            "unsupported video codec: FFmpeg in PyAV has no decoder for it; convert it, e.g. "
            "`ffmpeg -i IN -c:v libx264 OUT.mp4`",
        )
    return container


def _first_line(exc: BaseException) -> str:
    """An FFmpeg error as a person reads it: its message, without the errno and the file name
    PyAV adds ("[Errno 1094995529] Invalid data found when processing input: 'x.mkv'")."""
    import av

    if isinstance(exc, av.FFmpegError) and exc.strerror:
        return str(exc.strerror)
    return (str(exc).splitlines() or [type(exc).__name__])[0]


def _rotation(stream: Any, container: Any, path: str) -> int:
    """Degrees to turn the stored frames by, from the first frame's display matrix."""
    import av

    try:
        for frame in container.decode(stream):
            return round(float(getattr(frame, "rotation", 0) or 0)) % 360
    except av.FFmpegError as exc:
        raise ImageLoadError(
            path, f"the video stream cannot be decoded: {_first_line(exc)}"
        ) from exc
    raise ImageLoadError(path, "the video has no frames (zero length)")


def probed(path: str) -> VideoInfo:
    """probe(), kept while the file's size and mtime stay: a pixel check or a duplicate pair
    reads frames of one video several times, and each probe opens the container."""
    try:
        st = os.stat(path)
    except OSError:
        return probe(path)  # says what is wrong with it
    return _probed(path, st.st_size, st.st_mtime_ns)


@functools.lru_cache(maxsize=64)
def _probed(path: str, size: int, mtime_ns: int) -> VideoInfo:
    return probe(path)


def probe(path: str) -> VideoInfo:
    """The facts of a video file's first video stream; ImageLoadError where it has none."""
    container = _open(path)
    try:
        stream = container.streams.video[0]
        duration = _duration(stream, container)
        rotation = _rotation(stream, container, path)
        width, height = stream.codec_context.width, stream.codec_context.height
        if rotation in (90, 270):
            width, height = height, width
        rate = stream.average_rate
        guessed = stream.guessed_rate
        fps = float(rate) if rate else (float(guessed) if guessed else None)
        variable = bool(rate and guessed and abs(float(rate) - float(guessed)) > 0.01)
        first = stream.start_time
        origin = float(first * stream.time_base) if first is not None and stream.time_base else 0.0
        return VideoInfo(
            duration=duration,
            fps=fps,
            codec=stream.codec_context.name,
            width=int(width),
            height=int(height),
            rotation=rotation,
            created=_created(container.metadata, stream.metadata),
            variable_rate=variable,
            origin=origin,
        )
    finally:
        container.close()


def _duration(stream: Any, container: Any) -> float:
    if stream.duration is not None and stream.time_base:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return float(container.duration) / 1_000_000  # AV_TIME_BASE
    return 0.0


def _created(*tags: dict[str, str]) -> float | None:
    for found in tags:
        text = found.get("creation_time") or found.get("com.apple.quicktime.creationdate")
        if not text:
            continue
        try:
            when = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            continue
        if when.tzinfo is None:
            when = when.replace(tzinfo=dt.timezone.utc)
        return when.timestamp()
    return None


def signature(frame: Any) -> np.ndarray:
    """A frame's content in a few hundred numbers: its 32 x 18 HSV thumbnail, 0 to 1."""
    small = frame.reformat(width=SIGNATURE_SIZE[0], height=SIGNATURE_SIZE[1], format="rgb24")
    picture = Image.fromarray(small.to_ndarray()).convert("HSV")
    return np.asarray(picture, dtype=np.float32) / 255.0


def change(a: np.ndarray, b: np.ndarray) -> float:
    """Mean absolute difference of two thumbnails, 0 to 1."""
    return float(np.abs(a - b).mean())


def colours(thumbnail: np.ndarray) -> np.ndarray:
    """16-bin histograms of the thumbnail's hue, saturation and value, each summing to 1."""
    pixels = thumbnail.shape[0] * thumbnail.shape[1]
    counts = [np.histogram(thumbnail[..., c], bins=16, range=(0.0, 1.0))[0] for c in range(3)]
    return np.concatenate(counts).astype(np.float64) / pixels


def colour_change(a: np.ndarray, b: np.ndarray) -> float:
    """Total variation between two frames' histograms, averaged over the channels: 0 to 1."""
    return float(np.abs(a - b).sum() / 6.0)


def _keyframes_suffice(stream: Any, container: Any, every: float) -> bool:
    """Whether the keyframes come at least every `every` seconds: read from the flags of the
    first packets (20 keyframes or a minute), without decoding any."""
    import av

    times: list[float] = []
    try:
        for packet in container.demux(stream):
            if packet.pts is None or packet.time_base is None:
                continue
            if packet.is_keyframe:
                times.append(float(packet.pts * packet.time_base))
            if len(times) >= 20 or float(packet.pts * packet.time_base) > 60:
                break
    except av.FFmpegError:
        return False
    finally:
        container.seek(0, stream=stream)
    if len(times) < 2:
        return False
    return float(np.median(np.diff(sorted(times)))) <= every


def check_size(path: str, info: VideoInfo, max_pixels: int) -> None:
    if info.width * info.height > max_pixels:
        raise ImageLoadError(
            path,
            f"frames of {info.width}x{info.height} are over the "
            f"{max_pixels / 1e6:.0f} MP limit (--max-pixels raises it)",
        )


def sample_frames(
    path: str,
    options: SampleOptions | None = None,
    *,
    start: float | None = None,
    side: int | None = None,
    info: VideoInfo | None = None,
    report: SampleReport | None = None,
) -> Iterator[SampledFrame]:
    """The frames worth embedding, in time order (see the module's docstring): with `start`,
    those after it (a resumed run's last frame), each scaled so that its shorter side is `side`
    pixels where it was larger (the encoder needs no more, and scaling in FFmpeg is cheap).
    Times are seconds from the stream's first frame; `report` learns where decoding ended."""
    import av

    options = options or SampleOptions()
    info = info or probe(path)
    check_size(path, info, options.max_pixels)
    container = _open(path)
    try:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        keyframes_only = _keyframes_suffice(stream, container, options.every)
        if keyframes_only:
            stream.codec_context.skip_frame = "NONKEY"
        if start is not None and stream.time_base:
            target = int((start + info.origin) / stream.time_base)
            container.seek(target, stream=stream, backward=True)
        report = report if report is not None else SampleReport()
        for frame in _sampled(container, stream, options, info.origin, start, report):
            yield SampledFrame(frame[0], _picture(frame[1], info.rotation, side), frame[2])
    except av.FFmpegError as exc:
        if report is None or report.last_time is None:
            raise ImageLoadError(path, f"decoding stopped: {_first_line(exc)}") from exc
        report.stopped = _first_line(exc)  # a cut-off file: what came before it is kept
    finally:
        container.close()


def frame_at(
    path: str, time: float, side: int | None = None, info: VideoInfo | None = None
) -> Image.Image:
    """The picture a video shows at `time` seconds (the frame there or just before), as
    displayed: what a pixel check or a viewer compares with a query."""
    shown = None
    for at, picture in frames_between(path, time, time, side, info):
        if shown is not None and at > time + 1e-3:
            break
        shown = picture
    if shown is None:
        raise ImageLoadError(path, f"no frame at {time:.1f} s")
    return shown


def frames_between(
    path: str, start: float, end: float, side: int | None = None, info: VideoInfo | None = None
) -> Iterator[tuple[float, Image.Image]]:
    """Every frame from the last one at or before `start` to the first one after `end`, with
    its time, as displayed: where a sampled frame's neighbours are looked through."""
    import av

    info = info or probed(path)
    container = _open(path)
    try:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        if stream.time_base:
            target = int((max(0.0, start) + info.origin) / stream.time_base)
            container.seek(target, stream=stream, backward=True)
        earlier: tuple[float, Any] | None = None  # the last frame before `start`
        for frame in container.decode(stream):
            if frame.time is None:
                continue
            time = float(frame.time) - info.origin
            if time < start - 1e-3:
                earlier = (time, frame)
                continue
            if earlier is not None:
                if time > start + 1e-3:  # `start` falls between frames: the one shown then
                    yield earlier[0], _picture(earlier[1], info.rotation, side)
                earlier = None
            yield time, _picture(frame, info.rotation, side)
            if time > end + 1e-3:
                break
        if earlier is not None:  # `start` is past the last frame
            yield earlier[0], _picture(earlier[1], info.rotation, side)
    except av.FFmpegError as exc:
        raise ImageLoadError(path, f"decoding stopped: {_first_line(exc)}") from exc
    finally:
        container.close()


def _sampled(
    container: Any,
    stream: Any,
    options: SampleOptions,
    origin: float,
    start: float | None,
    report: SampleReport,
) -> Iterator[tuple[float, Any, str]]:
    previous: np.ndarray | None = None  # the last decoded frame's colour histograms
    kept_signature: np.ndarray | None = None
    last_kept = start if start is not None else -np.inf
    kept_in_minute: dict[int, int] = {}
    drift: list[float] = []  # the last few changes between decoded frames
    for frame in container.decode(stream):
        if frame.time is None:
            continue
        time = max(0.0, float(frame.time) - origin)
        report.last_time = time
        current = signature(frame)
        histograms = colours(current)
        if (
            start is not None and time <= start + 1e-6
        ):  # resuming: what came before only sets the state
            if previous is not None:
                drift = [*drift[-2:], colour_change(histograms, previous)]
            previous = histograms
            if time >= start - 1e-3:  # the last frame a killed run kept
                kept_signature = current
            continue
        why = "first" if previous is None else ""
        if previous is not None:
            moved = colour_change(histograms, previous)
            # a cut also stands out against the drift before it (a slow change of light)
            usual = float(np.mean(drift)) if drift else 0.0
            if moved > max(options.cut, 2.0 * usual):
                why = "cut"
            elif time - last_kept >= options.every:
                why = "interval"
            drift = [*drift[-2:], moved]
        previous = histograms
        if not why:
            continue
        if kept_signature is not None and change(current, kept_signature) < options.same:
            continue  # nothing new since the last frame kept
        minute = int(time // 60)
        if kept_in_minute.get(minute, 0) >= options.max_per_minute:
            continue
        kept_in_minute[minute] = kept_in_minute.get(minute, 0) + 1
        kept_signature, last_kept = current, time
        yield time, frame, why


def _picture(frame: Any, rotation: int, side: int | None = None) -> Image.Image:
    """The frame as displayed, its shorter side scaled down to `side`: `rotation` is
    counterclockwise degrees, as the display matrix gives them (a phone's portrait clip stores
    landscape frames with -90, that is 270)."""
    short = min(frame.width, frame.height)
    if side is not None and short > side:
        width, height = round(frame.width * side / short), round(frame.height * side / short)
        frame = frame.reformat(width=width, height=height, interpolation="AREA")
    image: Image.Image = frame.to_image()
    turn = {
        90: Image.Transpose.ROTATE_90,
        180: Image.Transpose.ROTATE_180,
        270: Image.Transpose.ROTATE_270,
    }
    return image.transpose(turn[rotation]) if rotation in turn else image
