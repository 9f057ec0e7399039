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
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from searchapp.errors import ImageLoadError
from searchapp.ingest.encoding import LazyModel, PreparedCut, embed, prepare
from searchapp.ingest.load import hash_file
from searchapp.ingest.regions import RegionCut
from searchapp.ingest.video import SampledFrame, SampleOptions, VideoInfo, probe, sample_frames
from searchapp.records import (
    CatalogBatch,
    FileStat,
    FramesAdded,
    ImageMeta,
    KnownImage,
    NewImage,
    RegionData,
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
    facts; frames_until 0 until the run has sampled it through."""
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
        frames_until=0.0,
    )


@dataclass
class _Video:
    stat: FileStat
    previous: KnownImage | None
    digest: str
    info: VideoInfo | None  # None when resuming: the row holds its facts
    image_id: int | None = None  # once its first chunk is committed
    start: float = 0.0


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
            run.record_failure(stat, exc.reason, previous)
            if video.image_id is not None and (previous is None or previous.id != video.image_id):
                batch = CatalogBatch(deleted_ids=[video.image_id])
                run.write(batch)  # its first chunks go with it: a failed file has no rows
            run.commit_now()

    def _open(self, stat: FileStat, previous: KnownImage | None) -> _Video | None:
        unchanged = previous is not None and (previous.size, previous.mtime_ns) == (
            stat.size,
            stat.mtime_ns,
        )
        if previous is not None and unchanged and previous.frames_until is not None:
            video = _Video(stat, previous, previous.content_hash, None, previous.id)
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
        frames = sample_frames(
            video.stat.path,
            self.sampling,
            start=video.start,
            side=model.input_size,
            info=video.info,
        )
        chunk: list[SampledFrame] = []
        for frame in frames:
            chunk.append(frame)
            if len(chunk) >= FRAMES_PER_COMMIT:
                self._commit(video, chunk, done=False)
                chunk = []
        self._commit(video, chunk, done=True)
        self.run.summary.embedded += 1

    def _commit(self, video: _Video, chunk: list[SampledFrame], done: bool) -> None:
        regions = self._embed(chunk, video)
        if chunk:
            video.start = chunk[-1].time
        until = None if done else video.start
        self.run.summary.frames += len(regions)
        if video.image_id is None:
            assert video.info is not None
            meta = video_meta(video.stat, video.info)
            meta = ImageMeta(**{**meta.__dict__, "frames_until": until})
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
            self.run.write(CatalogBatch(frames_added=[FramesAdded(video.image_id, regions, until)]))

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
        width, height = self._displayed(video)
        for region, frame in zip(regions, chunk, strict=True):
            region.time = round(frame.time, 3)
            region.bbox = (0, 0, width, height)  # the whole frame, in displayed pixels
        return regions

    def _displayed(self, video: _Video) -> tuple[int, int]:
        if video.info is not None:
            return video.info.width, video.info.height
        details = self.run.catalog.photo_details(video.image_id) if video.image_id else None
        if details is None:
            return (0, 0)
        return details.meta.width, details.meta.height
