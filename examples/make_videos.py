"""Write small H.264 videos made from real photos, to index beside them, and query images cut
from their frames, each with the answer a search should give.

Usage: python examples/make_videos.py VIDEOS QUERIES [PHOTO ...]

From three photos or more (scikit-image's astronaut, coffee and rocket where none are given)
it writes to VIDEOS:
- trip.mp4: 18 s at 640 x 360, a pan across the first photo, a zoom into the second, a pan across
  the third, with hard cuts between; a keyframe every second, as phones write them;
- trip_small.mp4: the same video re-encoded at 320 x 180 and a lower bitrate;
- trip_trimmed.mp4: 6 s to 15 s of it, re-encoded;
- portrait.mp4: a phone-style clip of the fourth photo (or the first), stored sideways with a
  -90 degree rotation in the container, as phones store portrait video;
- trip_still.jpg: the frame of trip.mp4 at 9.0 s as a photo.
and to QUERIES crops of the frames at 3.0 s and at 15.0 s (their middle 60%), named by the time
they come from. Both fall in pans: a crop from the zoom would show what a later, closer frame
of it shows, and find that frame.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

SIZE = (640, 360)
FPS = 15
Shot = tuple[Image.Image, float, str]  # photo, seconds, "pan" | "zoom" | "still"


def pan(photo: Image.Image, t: float, size: tuple[int, int] = SIZE) -> Image.Image:
    """A window of 70% of the photo, moved left to right as t goes from 0 to 1."""
    width, height = photo.size
    w, h = int(width * 0.7), int(height * 0.7)
    x0, y0 = int((width - w) * t), (height - h) // 2
    return photo.crop((x0, y0, x0 + w, y0 + h)).resize(size, Image.Resampling.BILINEAR)


def zoom(photo: Image.Image, t: float, size: tuple[int, int] = SIZE) -> Image.Image:
    """A window around the centre, from 90% of the photo down to 50%."""
    width, height = photo.size
    share = 0.9 - 0.4 * t
    w, h = int(width * share), int(height * share)
    x0, y0 = (width - w) // 2, (height - h) // 2
    return photo.crop((x0, y0, x0 + w, y0 + h)).resize(size, Image.Resampling.BILINEAR)


MOVES: dict[str, Callable[[Image.Image, float, tuple[int, int]], Image.Image]] = {
    "pan": pan,
    "zoom": zoom,
    "still": lambda photo, _t, size: pan(photo, 0.5, size),
}


class Writer:
    """A video stream (H.264 unless told) in a container named by the file, fed PIL
    pictures."""

    def __init__(
        self,
        path: Path,
        size: tuple[int, int],
        *,
        fps: int = FPS,
        gop: int = FPS,
        crf: int = 23,
        rotation: int | None = None,
        created: str | None = None,
        codec: str = "h264",
    ):
        import av

        self.container = av.open(str(path), "w")
        if created:
            self.container.metadata["creation_time"] = created
        options = {"crf": str(crf)} if codec == "h264" else {}
        self.stream = self.container.add_stream(codec, rate=fps, options=options)
        self.stream.width, self.stream.height = size
        self.stream.pix_fmt = "yuv420p"
        self.stream.codec_context.gop_size = gop
        self.stream.codec_context.time_base = Fraction(1, fps)
        if rotation is not None:
            self.stream.set_display_rotation(rotation)

    def add(self, picture: Image.Image) -> None:
        import av

        array = np.asarray(picture.convert("RGB"))
        self._mux(av.VideoFrame.from_ndarray(array, format="rgb24"))

    def _mux(self, frame: Any) -> None:
        for packet in self.stream.encode(frame):
            self.container.mux(packet)

    def close(self) -> None:
        self._mux(None)  # flush the encoder
        self.container.close()


def write_clip(path: Path, shots: Sequence[Shot], size: tuple[int, int] = SIZE, **kw: Any) -> Path:
    """One clip: each shot moves across its photo, with a hard cut to the next."""
    fps = kw.get("fps", FPS)
    writer = Writer(path, size, **kw)
    for photo, seconds, move in shots:
        frames = round(seconds * fps)
        for i in range(frames):
            writer.add(MOVES[move](photo, i / max(frames - 1, 1), size))
    writer.close()
    return path


def frames_of(path: Path) -> list[tuple[float, Image.Image]]:
    """Every frame of a video as stored (a rotation in the container is not applied), with its
    time."""
    import av

    with av.open(str(path)) as container:
        return [(float(f.time), f.to_image()) for f in container.decode(video=0)]


def reencode(
    source: Path,
    target: Path,
    size: tuple[int, int],
    *,
    crf: int = 23,
    start: float = 0.0,
    end: float = float("inf"),
) -> Path:
    """A copy of `source` at another size and quality, from `start` to `end` seconds."""
    import av

    with av.open(str(source)) as container:
        fps = round(float(container.streams.video[0].average_rate or FPS))
    writer = Writer(target, size, fps=fps, gop=fps, crf=crf)
    for time, picture in frames_of(source):
        if start - 1e-6 <= time < end - 1e-6:
            writer.add(picture.resize(size, Image.Resampling.BILINEAR))
    writer.close()
    return target


def frame_at(path: Path, time: float) -> Image.Image:
    return min(frames_of(path), key=lambda found: abs(found[0] - time))[1]


def middle(picture: Image.Image, share: float = 0.6) -> Image.Image:
    width, height = picture.size
    w, h = int(width * share), int(height * share)
    x0, y0 = (width - w) // 2, (height - h) // 2
    return picture.crop((x0, y0, x0 + w, y0 + h))


def sample_photos() -> list[Image.Image]:
    from skimage import data

    return [Image.fromarray(getattr(data, name)()) for name in ("astronaut", "coffee", "rocket")]


def main(videos: Path, queries: Path, photo_paths: Sequence[str]) -> None:
    photos = [Image.open(p).convert("RGB") for p in photo_paths] or sample_photos()
    if len(photos) < 3:
        sys.exit("make_videos.py: give three photos or more (or none, for scikit-image's)")
    videos.mkdir(parents=True, exist_ok=True)
    queries.mkdir(parents=True, exist_ok=True)
    shots = [(photos[0], 6.0, "pan"), (photos[1], 6.0, "zoom"), (photos[2], 6.0, "pan")]
    trip = write_clip(videos / "trip.mp4", shots, created="2024-07-14T10:30:00Z")
    reencode(trip, videos / "trip_small.mp4", (320, 180), crf=32)
    reencode(trip, videos / "trip_trimmed.mp4", SIZE, start=6.0, end=15.0)
    portrait = photos[3] if len(photos) > 3 else photos[0]
    write_clip(videos / "portrait.mp4", [(portrait, 4.0, "pan")], rotation=-90)
    frame_at(trip, 9.0).save(videos / "trip_still.jpg", quality=92)
    for time in (3.0, 15.0):
        middle(frame_at(trip, time)).save(queries / f"trip_at_{time:04.1f}s.png")
    written = "trip.mp4, trip_small.mp4, trip_trimmed.mp4, portrait.mp4, trip_still.jpg"
    print(f"wrote {written} to {videos}")
    print(f"wrote trip_at_03.0s.png and trip_at_15.0s.png to {queries}: crops of trip.mp4's frames")


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit("usage: python examples/make_videos.py VIDEOS QUERIES [PHOTO ...]")
    main(Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3:])
