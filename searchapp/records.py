"""Plain records passed between layers. The storage layer returns these, never ORM objects."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

BBox = tuple[int, int, int, int]  # x0, y0, x1, y1 in displayed-photo pixels


REGION_KINDS = ("scene", "object", "tile", "frame")  # one FAISS index each
PHOTO_KINDS = ("scene", "object", "tile")  # cut from photos; a video's are its frames


@dataclass(frozen=True)
class ImageMeta:
    width: int  # as displayed, after EXIF orientation
    height: int
    format: str
    taken_at: float  # unix seconds
    taken_source: str  # "exif" or "mtime"
    camera_make: str | None = None
    camera_model: str | None = None
    gps_lat: float | None = None
    gps_lon: float | None = None
    blur: float | None = None
    brightness: float | None = None
    contrast: float | None = None
    quality_flag: str | None = None  # set when --skip-low-quality kept it out of the vectors
    phash: bytes | None = None  # ingest.hashes.phash_variants of the displayed photo
    pixel_hash: str | None = None  # set when the photo was decoded at full resolution
    colourfulness: float | None = None  # Hasler-Suesstrunk; 0 for greyscale
    regions_pending: str | None = None  # kinds still to embed after the scene ("object,tile")
    duration: float | None = None  # a video's, in seconds; None for a photo
    frame_rate: float | None = None
    codec: str | None = None
    frames_until: float | None = None  # a video sampled this far, its run not yet done

    @property
    def is_video(self) -> bool:
        return self.duration is not None


@dataclass(frozen=True)
class PhotoRegion:
    id: int
    kind: str
    bbox: BBox
    label: str | None
    label_score: float | None
    time: float | None = None  # a video frame's


@dataclass(frozen=True)
class PhotoDetails:
    """One photo as the catalog knows it: what a viewer shows beside the picture."""

    id: int
    path: str
    size: int
    content_hash: str
    meta: ImageMeta
    set_aside: bool
    regions: tuple[PhotoRegion, ...]
    labels: tuple[tuple[str, float], ...]


@dataclass
class RegionData:
    kind: str
    bbox: BBox
    vector: np.ndarray  # float32, L2-normalised
    label: str | None = None
    label_score: float | None = None
    labels: list[tuple[str, float]] = field(default_factory=list)  # top classes, best first
    norm: float | None = None  # the vector's length before normalising, where the encoder said
    time: float | None = None  # a video frame's, seconds from the start


@dataclass(frozen=True)
class FileStat:
    path: str
    size: int
    mtime_ns: int


@dataclass(frozen=True)
class KnownImage:
    id: int
    path: str
    size: int
    mtime_ns: int
    content_hash: str
    frames_until: float | None = None  # a video whose sampling a killed run left unfinished

    def same_file(self, stat: FileStat) -> bool:
        """Whether the file looks unchanged since indexed: its size and mtime (nothing read)."""
        return (self.size, self.mtime_ns) == (stat.size, stat.mtime_ns)


@dataclass(frozen=True)
class KnownFailure:
    path: str
    size: int
    mtime_ns: int
    reason: str


@dataclass
class NewImage:
    stat: FileStat
    content_hash: str
    meta: ImageMeta
    regions: list[RegionData]
    replaces_id: int | None = None  # set when the file at this path changed


@dataclass(frozen=True)
class Move:
    image_id: int
    stat: FileStat


@dataclass(frozen=True)
class Copy:
    """A new path whose bytes equal an indexed image: its regions are cloned, not re-embedded."""

    source_id: int
    stat: FileStat
    replaces_id: int | None = None


@dataclass(frozen=True)
class PendingImage:
    """A photo whose scene is embedded and whose other region kinds are still to come."""

    id: int
    path: str
    size: int
    mtime_ns: int
    content_hash: str
    kinds: tuple[str, ...]


@dataclass
class RegionsAdded:
    """The region stage's output for photos of one content: the same regions go to each."""

    image_ids: list[int]
    regions: list[RegionData]
    still_pending: str | None = None  # kinds this run did not make


@dataclass
class FramesAdded:
    """More frames of a video already in the catalog, and how far it is now sampled (None:
    done)."""

    image_id: int
    regions: list[RegionData]
    until: float | None
    duration: float | None = None  # measured by decoding, where the container said none


@dataclass(frozen=True)
class Failure:
    stat: FileStat
    reason: str


@dataclass
class CatalogBatch:
    """Everything one transaction writes. Applied all-or-nothing."""

    new: list[NewImage] = field(default_factory=list)
    moves: list[Move] = field(default_factory=list)
    copies: list[Copy] = field(default_factory=list)
    touched: list[Move] = field(default_factory=list)  # same bytes, new mtime: update stat only
    set_aside: list[Move] = field(default_factory=list)  # moved away by `dupes`: out of search
    restored: list[Move] = field(default_factory=list)  # moved back by `dupes --undo`
    deleted_ids: list[int] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)
    cleared_failures: list[str] = field(default_factory=list)
    regions_added: list[RegionsAdded] = field(default_factory=list)
    frames_added: list[FramesAdded] = field(default_factory=list)

    def is_empty(self) -> bool:
        return not (
            self.new
            or self.moves
            or self.copies
            or self.touched
            or self.set_aside
            or self.restored
            or self.deleted_ids
            or self.failures
            or self.cleared_failures
            or self.regions_added
            or self.frames_added
        )


@dataclass
class VectorDelta:
    """What a committed batch changed in the vector set, per region kind."""

    added_ids: dict[str, list[int]] = field(default_factory=dict)
    added_vectors: dict[str, list[np.ndarray]] = field(default_factory=dict)
    removed_ids: dict[str, list[int]] = field(default_factory=dict)
    recoded: list[str] = field(default_factory=list)  # kinds whose every vector was re-encoded

    def add(self, kind: str, region_id: int, vector: np.ndarray) -> None:
        self.added_ids.setdefault(kind, []).append(region_id)
        self.added_vectors.setdefault(kind, []).append(vector)

    def remove(self, kind: str, region_id: int) -> None:
        self.removed_ids.setdefault(kind, []).append(region_id)


@dataclass
class VectorCatchUp:
    """What an index file of an earlier generation lacks: apply the removals, then the
    additions, and it holds the kind as the catalog does at `generation` (`count` vectors)."""

    generation: int
    removed_ids: np.ndarray
    added_ids: np.ndarray
    added_vectors: np.ndarray
    count: int


@dataclass(frozen=True)
class EncoderIdentity:
    name: str  # registry name, e.g. "cnn:efficientnet-lite0"
    weights: str  # weights tag or file identity
    dim: int
    preprocess: str  # short description of the input transform

    def describe(self) -> str:
        return f"{self.name} ({self.weights}, dim {self.dim})"


def clock(seconds: float) -> str:
    """A time in a video as a person reads it: mm:ss.s (h:mm:ss.s from an hour)."""
    tenths = round(max(0.0, seconds) * 10)
    minutes, tenth_seconds = divmod(tenths, 600)
    hours, minutes = divmod(minutes, 60)
    rest = f"{minutes:02d}:{tenth_seconds // 10:02d}.{tenth_seconds % 10}"
    return f"{hours}:{rest}" if hours else rest


@dataclass(frozen=True)
class RegionHit:
    region_id: int
    image_id: int
    path: str
    kind: str
    bbox: BBox
    label: str | None
    taken_at: float
    score: float
    photo_size: tuple[int, int] = (0, 0)  # the photo's displayed width and height
    time: float | None = None  # a video frame's, seconds from the start


@dataclass(frozen=True)
class LibraryStats:
    images: int
    regions_by_kind: dict[str, int]
    vectors: int
    failures: int
    encoder: EncoderIdentity | None
    bytes_on_disk: int
    catalog_bytes: int
    index_bytes: int
    quality: dict[str, dict[str, float]] = field(default_factory=dict)  # metric -> percentiles
    low_quality: int = 0  # photos kept out of the vectors by --skip-low-quality
    set_aside: int = 0  # copies moved away by `dupes --move-to`, out of search until undone
    regions_pending: int = 0  # photos searchable by their scene, still waiting for their regions
    tile_encoder: EncoderIdentity | None = None  # where the tiles are not in the encoder's space
    videos: int = 0  # of `images`

    @property
    def regions_per_photo(self) -> dict[str, float]:
        """Regions of each kind per item that has them: frames per video, the rest per photo."""
        photos = self.images - self.videos
        return {
            kind: round(n / (self.videos if kind == "frame" else photos), 2)
            for kind, n in self.regions_by_kind.items()
            if (self.videos if kind == "frame" else photos)
        }

    @property
    def bytes_per_photo(self) -> int:
        return round(self.bytes_on_disk / self.images) if self.images else 0

    def as_dict(self) -> dict[str, object]:
        """What `stats --json` prints (after the library's folder) and the web API answers."""
        return {
            "images": self.images,
            "videos": self.videos,
            "regions": self.regions_by_kind,
            "vectors": self.vectors,
            "failures": self.failures,
            "encoder": self.encoder.__dict__ if self.encoder else None,
            "tile_encoder": self.tile_encoder.__dict__ if self.tile_encoder else None,
            "bytes_on_disk": self.bytes_on_disk,
            "catalog_bytes": self.catalog_bytes,
            "index_bytes": self.index_bytes,
            "regions_per_photo": self.regions_per_photo,
            "bytes_per_photo": self.bytes_per_photo,
            "quality": self.quality,
            "low_quality": self.low_quality,
            "set_aside": self.set_aside,
            "regions_pending": self.regions_pending,
        }


TAG_MIN_PROB = 0.1  # a scene label this likely is one of the photo's tags


@dataclass(frozen=True)
class Filters:
    """Which photos a search may return. Dates are unix seconds; folder is an absolute path."""

    after: float | None = None  # taken at or after
    before: float | None = None  # taken strictly before
    folder: str | None = None
    camera: str | None = None  # case-insensitive substring of make or model
    min_width: int | None = None
    min_pixels: int | None = None
    formats: tuple[str, ...] = ()  # Pillow format names, upper case
    min_score: float | None = None  # cut-off applied to scores, not to rows
    tags: tuple[tuple[str, ...], ...] = ()  # per --tag, the stored label names it stands for

    def restricts_rows(self) -> bool:
        return any(
            value not in (None, ())
            for value in (
                self.after,
                self.before,
                self.folder,
                self.camera,
                self.min_width,
                self.min_pixels,
                self.formats,
                self.tags,
            )
        )
