"""The videos of an indexing run, after its photos: each one new or changed is hashed as a
stream, probed, sampled (video.py) and its frames embedded as regions of kind "frame".

A long video is committed a chunk of frames at a time, its row saying how far it is sampled
(frames_until); a killed run leaves that mark, and the next run seeks there and goes on instead
of decoding the video again. Bytes the catalog holds already (a moved or copied video) are
resolved as a photo's are, without decoding anything.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Protocol

from searchapp.errors import ImageLoadError
from searchapp.ingest.encoding import LazyModel, PreparedCut, embed, prepare
from searchapp.ingest.load import hash_file
from searchapp.ingest.regions import RegionCut
from searchapp.ingest.video import (
    SampledFrame,
    SampleOptions,
    SampleReport,
    VideoInfo,
    probe,
    sample_frames,
)
from searchapp.records import (
    CatalogBatch,
    FileStat,
    FramesAdded,
    ImageMeta,
    KnownImage,
    NewImage,
    RegionData,
    clock,
)

if TYPE_CHECKING:
    from searchapp.ingest.run_options import IndexOptions, IndexSummary
    from searchapp.store.catalog import Catalog

FRAMES_PER_COMMIT = 64  # what a killed run may have to decode again, at most


class VideoRun(Protocol):
    """What the video stage needs of its indexing run (pipeline.IndexRun is one)."""

    catalog: Catalog
    encoder: LazyModel
    options: IndexOptions
    summary: IndexSummary

    def resolve_known(
        self,
        stat: FileStat,
        previous: KnownImage | None,
        digest: str,
        missing: dict[str, KnownImage],
    ) -> bool: ...

    def record_failure(self, stat: FileStat, reason: str, previous: KnownImage | None) -> None: ...

    def note(self, path: str, reason: str) -> None: ...

    def commit_now(self) -> None: ...

    def write(self, batch: CatalogBatch, force_save: bool = False) -> None: ...


def video_meta(stat: FileStat, info: VideoInfo) -> ImageMeta:
    """A video's row: its displayed size, the container's creation time (else the file's), its
    facts."""
    taken, source = (info.created, "video") if info.created is not None else (None, "mtime")
    return ImageMeta(
        width=info.width,
        height=info.height,
        format=os.path.splitext(stat.path)[1].lstrip(".").upper(),
        taken_at=taken if taken is not None else stat.mtime_ns / 1e9,
        taken_source=source,
        duration=round(info.duration, 3),
        frame_rate=round(info.fps, 3) if info.fps else None,
        codec=info.codec,
    )


@dataclass
class _Video:
    stat: FileStat
    previous: KnownImage | None
    digest: str
    info: VideoInfo
    image_id: int | None = None  # once its first chunk is committed
    start: float | None = None  # the time of the last frame committed
    frames: int = 0  # committed by this run


class VideoStage:
    def __init__(self, run: VideoRun, known_hashes: set[str], missing: dict[str, KnownImage]):
        self.run = run
        self.known_hashes = known_hashes
        self.missing = missing
        self.sampling = SampleOptions(max_pixels=run.options.limits.max_pixels)

    def run_all(
        self, work: list[tuple[FileStat, KnownImage | None]], advance: Callable[[], None]
    ) -> None:
        for stat, previous in work:
            self.index(stat, previous)
            advance()

    def index(self, stat: FileStat, previous: KnownImage | None) -> None:
        run = self.run
        try:
            video = self._open(stat, previous)
        except ImageLoadError as exc:
            run.record_failure(stat, exc.reason, previous)
            run.commit_now()
            return
        if video is None:  # moved, copied or touched: no decoding
            run.commit_now()
            return
        try:
            self._sample(video)
        except ImageLoadError as exc:
            self._fail(video, exc.reason)

    def _fail(self, video: _Video, reason: str) -> None:
        """A failed file keeps no rows: the chunks this run committed go, and its counts."""
        run, previous = self.run, video.previous
        run.record_failure(video.stat, reason, previous)
        if video.image_id is not None and (previous is None or previous.id != video.image_id):
            run.write(CatalogBatch(deleted_ids=[video.image_id]))
            if previous is None:
                run.summary.new -= 1
            else:
                run.summary.changed -= 1
            run.summary.frames -= video.frames
        run.commit_now()

    def _open(self, stat: FileStat, previous: KnownImage | None) -> _Video | None:
        if previous is not None and previous.same_file(stat) and previous.frames_until is not None:
            video = _Video(stat, previous, previous.content_hash, probe(stat.path), previous.id)
            video.start = previous.frames_until
            return video
        digest = hash_file(stat.path)
        if digest in self.known_hashes and self.run.resolve_known(
            stat, previous, digest, self.missing
        ):
            return None
        info = probe(stat.path)
        if info.variable_rate:  # said, and indexed: each frame's time is its own timestamp
            self.run.note(stat.path, "variable frame rate; times are read from each frame")
        return _Video(stat, previous, digest, info)

    def _sample(self, video: _Video) -> None:
        model = self.run.encoder.get()
        report = SampleReport()
        frames = sample_frames(
            video.stat.path,
            self.sampling,
            start=video.start,
            side=model.input_size,
            info=video.info,
            report=report,
        )
        chunk: list[SampledFrame] = []
        for frame in frames:
            chunk.append(frame)
            if len(chunk) >= FRAMES_PER_COMMIT:
                self._commit(video, chunk, done=False)
                chunk = []
        if video.image_id is None and not chunk:
            raise ImageLoadError(video.stat.path, "no frame could be read (no timestamps?)")
        self._commit(video, chunk, done=True, ended=report.last_time, stopped=report.stopped)
        self.run.summary.embedded += 1

    def _commit(
        self,
        video: _Video,
        chunk: list[SampledFrame],
        done: bool,
        ended: float | None = None,
        stopped: str | None = None,
    ) -> None:
        regions = self._embed(chunk, video)
        if chunk:
            video.start = chunk[-1].time
        until = None if done else video.start
        duration = self._duration(video, ended, stopped) if done else None
        self.run.summary.frames += len(regions)
        video.frames += len(regions)
        if video.image_id is None:
            meta = replace(video_meta(video.stat, video.info), frames_until=until)
            if duration is not None:
                meta = replace(meta, duration=duration)
            replaces = video.previous.id if video.previous is not None else None
            new = NewImage(video.stat, video.digest, meta, regions, replaces)
            self.run.write(CatalogBatch(new=[new]))
            found = self.run.catalog.image_by_path(video.stat.path)
            video.image_id = found.id if found is not None else None
            self.known_hashes.add(video.digest)
            if video.previous is None:
                self.run.summary.new += 1
            else:
                self.run.summary.changed += 1
        else:
            added = FramesAdded(video.image_id, regions, until, duration)
            self.run.write(CatalogBatch(frames_added=[added]))

    def _duration(self, video: _Video, ended: float | None, stopped: str | None) -> float | None:
        """A duration to store in place of the container's, when decoding said otherwise:
        none given (some WebM and MKV writers), or frames that stop well short of it (a
        truncated file, indexed as far as it goes, and said)."""
        stated = video.info.duration
        if ended is None:
            return None
        step = 1 / video.info.fps if video.info.fps else 0.0
        if stated <= 0:
            return round(ended + step, 3)
        short = ended < stated - max(2 * self.sampling.every, 0.1 * stated)
        if short or stopped:
            why = f" ({stopped})" if stopped else ""
            self.run.note(
                video.stat.path,
                f"truncated: frames end at {clock(ended)} of {clock(stated)}{why}; "
                "indexed that far",
            )
        return None

    def _embed(self, chunk: list[SampledFrame], video: _Video) -> list[RegionData]:
        if not chunk:
            return []
        model = self.run.encoder.get()
        started = time.monotonic()
        cuts: list[PreparedCut] = []
        for frame in chunk:
            box = (0, 0, frame.image.width, frame.image.height)
            cuts.append(prepare(RegionCut("frame", box, frame.image), model))
        (regions,) = embed(model, [cuts], self.run.options.batch_size)
        self.run.summary.frame_seconds += time.monotonic() - started
        for region, frame in zip(regions, chunk, strict=True):
            region.time = round(frame.time, 3)
            # the whole frame, in displayed pixels
            region.bbox = (0, 0, video.info.width, video.info.height)
        return regions
