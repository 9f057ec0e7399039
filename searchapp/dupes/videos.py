"""Duplicates among videos, and photos that are a frame of a video.

Two videos are copies when most frames of the shorter one find a frame of the other showing the
same picture (frame cosine FRAME_MATCH or more), and those matches agree on one time offset,
within a sampling step. The same timing (offset and length) makes a re-encoded or resized copy,
tier "near"; a part of the other, a trimmed copy, tier "crop". The pair carries the matched
frames and the offset as its evidence.

A photo whose scene is as close as STILL_MATCH to a frame is checked against that frame's
pixels (dupes.pixels): the same picture whole ("near") makes it a still of the video, reported
with the video and the time, not grouped with it (moving a video away because a photo of one
of its frames exists would lose the video). A photo the frame is only a part of is the picture
a video pans across, not a still.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from searchapp.dupes.candidates import neighbour_pairs
from searchapp.dupes.groups import DupePair
from searchapp.dupes.pixels import COMPARE_SIDE, PixelComparer
from searchapp.errors import ImageLoadError
from searchapp.ingest.load import load_image
from searchapp.ingest.video import SampleOptions, frame_at, frames_between
from searchapp.records import FileStat, clock

if TYPE_CHECKING:
    from searchapp.store.catalog import Catalog
    from searchapp.store.dupe_reads import PhotoTable

FRAME_MATCH = 0.8  # two frames that may show one picture (320 px at CRF 32 against 640: 0.87-0.93)
MIN_SHARE = 0.5  # of the shorter video's frames that must find their match at the offset
MIN_FRAMES = 3  # matched frames at least, or every frame of a shorter video
SLACK = SampleOptions().every  # s: frames are sampled this far apart, in either video
SAME_LENGTH = 0.05  # relative: a re-encoded copy lasts as long, within container rounding
STILL_MATCH = 0.85
NEIGHBOURS = 16
STILL_VIDEOS = 3  # videos a still is checked against: the copies of one video, mostly


@dataclass(frozen=True)
class FrameStill:
    photo: int  # rows of the photo table
    video: int
    time: float
    score: float  # the scene's cosine with the frame


@dataclass
class Frames:
    rows: np.ndarray  # the video's row in the photo table, per frame
    times: np.ndarray
    vectors: np.ndarray  # float32, unit length

    @classmethod
    def read(cls, catalog: Catalog, table: PhotoTable, dim: int) -> Frames:
        owners, times, vectors = catalog.frame_vectors(dim)
        positions = np.searchsorted(table.ids, owners)
        positions = np.clip(positions, 0, max(0, len(table.ids) - 1))
        known = table.ids[positions] == owners if len(table.ids) else np.zeros(0, bool)
        return cls(positions[known], times[known], vectors[known])

    def __len__(self) -> int:
        return len(self.rows)


def _stat(path: str) -> FileStat:
    st = os.stat(path)
    return FileStat(path, st.st_size, st.st_mtime_ns)


def video_pairs(
    frames: Frames,
    table: PhotoTable,
    comparer: PixelComparer | None = None,
    joined: Callable[[int, int], bool] = lambda a, b: False,
) -> list[DupePair]:
    """Copies among the videos, each pair with its matched frames and offset, confirmed by the
    pixels of two matched moments; pairs already `joined` (the same bytes) are not checked."""
    if len(frames) < 2:
        return []
    # the photo tiers' neighbour search: exact while cheap, IVF and a rescore beyond
    found = neighbour_pairs(frames.vectors, frames.vectors, NEIGHBOURS, FRAME_MATCH)
    matches: dict[tuple[int, int], dict[float, tuple[float, float]]] = {}
    for i, j, score in zip(*found, strict=True):
        a, b = int(frames.rows[i]), int(frames.rows[j])
        if b <= a:  # the same video, or the pair seen from its other side
            continue
        best = matches.setdefault((a, b), {})
        time_a = float(frames.times[i])
        if score > best.get(time_a, (0.0, -1.0))[1]:
            best[time_a] = (float(frames.times[j]), float(score))
    counts = np.bincount(frames.rows, minlength=len(table))
    comparer = comparer or PixelComparer()
    pairs = []
    for (a, b), best in sorted(matches.items()):
        if joined(a, b):
            continue
        pair = _pair(table, a, b, best, int(min(counts[a], counts[b])), comparer)
        if pair is not None:
            pairs.append(pair)
    return pairs


def _closest(path: str, around: float, picture: Image.Image) -> float | None:
    """The time of the frame within a sampling step of `around` most like `picture`: sampled
    frames of two videos, or a still, seldom fall on the same frame."""
    width = 64
    height = max(1, round(width * picture.height / max(1, picture.width)))

    def thumb(image: Image.Image) -> np.ndarray:
        return np.asarray(image.convert("L").resize((width, height)), dtype=np.float32)

    wanted = thumb(picture)
    best: tuple[float, float] | None = None
    try:
        for time, frame in frames_between(path, around - SLACK, around + SLACK, side=height):
            difference = float(np.abs(thumb(frame) - wanted).mean())
            if best is None or difference < best[0]:
                best = (difference, time)
    except ImageLoadError:
        return None  # gone or unreadable since indexing: not confirmed
    return best[1] if best else None


def _confirmed(
    path_a: str, path_b: str, time_a: float, offset: float, comparer: PixelComparer
) -> float | None:
    """The exact offset at which B shows A's frame at `time_a`, if its pixels agree."""
    try:
        picture = frame_at(path_a, time_a, side=COMPARE_SIDE)
    except ImageLoadError:
        return None
    exact = _closest(path_b, time_a + offset, picture)
    if exact is None:
        return None
    evidence = comparer.compare(path_a, path_b, time_a=time_a, time_b=exact)
    # no tier: the same scene, not the same pictures (another video of it)
    return exact - time_a if evidence.tier is not None else None


def _pair(
    table: PhotoTable,
    a: int,
    b: int,
    best: dict[float, tuple[float, float]],
    fewest: int,
    comparer: PixelComparer,
) -> DupePair | None:
    """A pair from A's frames and their best matches in B, if they agree on an offset and the
    pixels of their best match agree."""
    found = sorted((time_a, time_b, score) for time_a, (time_b, score) in best.items())
    offset = float(np.median([time_b - time_a for time_a, time_b, _ in found]))
    agreeing = []
    taken: set[float] = set()  # each frame of B matched once, by its best frame of A
    for match in sorted(found, key=lambda m: -m[2]):
        if abs(match[1] - match[0] - offset) <= SLACK and match[1] not in taken:
            taken.add(match[1])
            agreeing.append(match)
    agreeing.sort()
    matched = len(agreeing)
    if matched < min(MIN_FRAMES, fewest) or matched < MIN_SHARE * fewest:
        return None
    # two moments apart must show the same pixels: one alone could be a static scene that two
    # recordings share. Up to four are tried (the best match, then spread over the overlap),
    # as a small copy's low-texture frame may give the pixel check too little to align.
    ordered = sorted(agreeing, key=lambda m: -m[2])
    spread = [m for m in agreeing if all(abs(m[0] - o[0]) >= SLACK for o in ordered[:1])]
    picks = [ordered[0], *spread[:: max(1, len(spread) // 3)][:3]]
    confirmed: list[tuple[float, float]] = []
    for time_a, _, _ in picks:
        exact = _confirmed(table.paths[a], table.paths[b], time_a, offset, comparer)
        if exact is not None:
            confirmed.append((time_a, exact))
        if len(confirmed) >= min(2, len(picks)):
            break
    if len(confirmed) < min(2, len(picks)):
        return None
    time_a, offset = confirmed[0]
    cosine = float(np.mean([score for _, _, score in agreeing]))
    length_a, length_b = float(table.durations[a]), float(table.durations[b])
    longest = max(length_a, length_b)
    same_length = abs(length_a - length_b) <= max(SLACK / 2, SAME_LENGTH * longest)
    name = table.paths[a if length_a <= length_b else b].rsplit("/", 1)[-1]
    frames = tuple((round(t_a, 3), round(t_b, 3), round(s, 4)) for t_a, t_b, s in agreeing)
    checked = f"pixels agree at {' and '.join(clock(t) for t, _ in confirmed)}"
    if same_length and abs(offset) <= SLACK / 2:
        reason = (
            f"the same video re-encoded: {matched} of {fewest} frames match "
            f"(cosine {cosine:.2f}), same timing; {checked}"
        )
        return DupePair(a, b, "near", round(cosine, 4), reason, frames, round(offset, 3))
    start = clock(max(offset, 0.0) if length_a <= length_b else max(-offset, 0.0))
    reason = (
        f"trimmed copy: {matched} of {fewest} frames of {name} match the other from {start} "
        f"(offset {offset:+.2f} s, cosine {cosine:.2f}); {checked}"
    )
    return DupePair(a, b, "crop", round(cosine, 4), reason, frames, round(offset, 3))


def frame_stills(
    frames: Frames,
    table: PhotoTable,
    scene_lookup: np.ndarray,
    scenes: np.ndarray,
    comparer: PixelComparer | None = None,
) -> list[FrameStill]:
    """Photos that are a frame of a video, confirmed by the pixels."""
    if not len(frames) or not len(scenes):
        return []
    rows = np.flatnonzero(scene_lookup >= 0)
    queries, frame_ids, scores = neighbour_pairs(
        scenes[scene_lookup[rows]], frames.vectors, NEIGHBOURS, STILL_MATCH
    )
    comparer = comparer or PixelComparer()
    stills = []
    tried: dict[int, set[int]] = {}  # per photo, the videos tried: each once, at its best frame
    for query in np.argsort(-scores, kind="stable"):
        row, frame = int(rows[queries[query]]), int(frame_ids[query])
        video, time = int(frames.rows[frame]), float(frames.times[frame])
        videos = tried.setdefault(row, set())
        if video in videos or len(videos) >= STILL_VIDEOS:
            continue
        videos.add(video)
        exact = _still_time(table.paths[row], table.paths[video], time, comparer)
        if exact is not None:
            stills.append(FrameStill(row, video, round(exact, 3), round(float(scores[query]), 4)))
    return sorted(stills, key=lambda still: (still.photo, -still.score))


def _still_time(photo: str, video: str, time: float, comparer: PixelComparer) -> float | None:
    """The time of the video's frame that `photo` is, near a sampled `time`; None if none is."""
    try:
        picture = load_image(_stat(photo), min_side=64).image
    except (OSError, ImageLoadError):
        return None
    exact = _closest(video, time, picture)
    if exact is None:
        return None
    evidence = comparer.compare(photo, video, time_b=exact)
    # the whole picture: a still, not a photo the video pans across
    return exact if evidence.tier == "near" else None
