"""Find duplicates in a library: tiers, evidence, groups.

exact    same bytes (content hash) or same decoded pixels (pixel hash);
         videos too; a re-encoded video is "near", a trimmed one "crop" (dupes.videos);
near     the same picture resized, recompressed, relit, turned, flipped or slightly cropped:
         proposed by a pHash within Hamming 7 under any rotation or flip, or by a scene
         embedding at cosine 0.85 or more, and confirmed by the pixels (dupes.pixels);
crop     one photo is a crop of another: proposed by a tile or object region of the larger photo
         (or its scene) matching the smaller photo's scene, confirmed by the pixels;
similar  the same moment or subject (bursts, retakes): scene cosine 0.92 or more; only on request.

Proposals are cheap and many, confirmations cost a decode and a match (~40 ms), so a pair whose
photos are already grouped through other confirmed pairs is not checked again.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from searchapp.dupes.candidates import HashPairs, hash_pairs, neighbour_pairs
from searchapp.dupes.confirm import check_all
from searchapp.dupes.groups import DupeGroup, DupePair, UnionFind, build_groups
from searchapp.dupes.pixels import CONTAINED, PixelEvidence
from searchapp.dupes.videos import Frames, FrameStill, frame_stills, video_pairs
from searchapp.errors import ImageLoadError, UsageError
from searchapp.ingest.hashes import VARIANTS, pixel_hash
from searchapp.ingest.load import load_image
from searchapp.records import FileStat
from searchapp.store.catalog import Catalog
from searchapp.store.dupe_reads import PhotoTable

TIERS = ("exact", "near", "crop", "similar")
SAME_PIXELS = "exact: same pixels, other file format or metadata"
SAME_MOMENT_S = 1.0  # EXIF capture times are whole seconds: a burst shares one
DEFAULT_TIERS = ("exact", "near", "crop")
REGION_KINDS_FOR_CROPS = ("tile", "object")


@dataclass(frozen=True)
class DupeOptions:
    tiers: tuple[str, ...] = DEFAULT_TIERS
    hash_radius: int = 7  # Hamming bits, at most 7
    near_cosine: float = 0.85  # scene embeddings close enough to be worth a pixel check
    crop_cosine: float = 0.75  # a region of the larger photo against the smaller's scene
    similar_cosine: float = 0.92
    neighbours: int = 5  # nearest embeddings looked at per photo

    def __post_init__(self) -> None:
        unknown = [tier for tier in self.tiers if tier not in TIERS]
        if unknown or not self.tiers:
            raise UsageError(
                f"unknown tier {', '.join(unknown) or '(none)'}; choose from {', '.join(TIERS)}"
            )
        if not 0 <= self.hash_radius <= 7:
            raise UsageError("--hash-radius (--threshold hash=) must be between 0 and 7 bits")
        for name in ("near_cosine", "crop_cosine", "similar_cosine"):
            if not -1.0 <= getattr(self, name) <= 1.0:
                flag, short = name.replace("_", "-"), name.split("_")[0]
                raise UsageError(f"--{flag} (--threshold {short}=) must be between -1 and 1")


@dataclass
class DupeReport:
    table: PhotoTable
    groups: list[DupeGroup]
    pairs: list[DupePair]
    checked: int = 0  # candidate pairs whose pixels were compared
    proposed: int = 0
    seconds: dict[str, float] = field(default_factory=dict)
    stills: list[FrameStill] = field(default_factory=list)  # photos that are a video's frame


@dataclass
class _Candidate:
    a: int
    b: int
    variant: int = 0
    hamming: int | None = None
    cosine: float | None = None
    region: str | None = None  # the region kind that proposed a crop


class VectorSource:
    """Scene and region vectors as arrays aligned with the photo table's rows."""

    def __init__(self, catalog: Catalog, table: PhotoTable, dim: int):
        self.catalog, self.table, self.dim = catalog, table, dim

    def rows_of(self, image_ids: np.ndarray) -> np.ndarray:
        positions = np.searchsorted(self.table.ids, image_ids)
        positions = np.clip(positions, 0, max(0, len(self.table.ids) - 1))
        found = self.table.ids[positions] == image_ids if len(self.table.ids) else positions < 0
        return np.where(found, positions, -1)

    def load(self, kinds: tuple[str, ...], whole: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """(owner rows, float16 vectors) of every region of these kinds (`whole`: only those
        over the whole photo)."""
        owners, vectors = [], []
        regions = self.catalog.region_vectors_by_image(kinds, self.dim, whole=whole)
        for image_ids, block in regions:
            owners.append(self.rows_of(image_ids))
            vectors.append(block)
        if not owners:
            return np.zeros(0, dtype=np.int64), np.zeros((0, self.dim), dtype=np.float16)
        return np.concatenate(owners), np.concatenate(vectors)

    def scenes(self) -> tuple[np.ndarray, np.ndarray]:
        """(row -> position in the matrix or -1, scene matrix float32). Widened once here:
        converting float16 rows on every gather costs more than the search (100k photos)."""
        owners, half = self.load(("scene",))
        vectors = half.astype(np.float32)
        lookup = np.full(len(self.table), -1, dtype=np.int64)
        valid = owners >= 0
        lookup[owners[valid]] = np.flatnonzero(valid)
        return lookup, vectors


def find_duplicates(
    catalog: Catalog,
    dim: int | None,
    options: DupeOptions,
    keep_paths: set[str] | None = None,
    on_check: Callable[[int, int], None] | None = None,
) -> DupeReport:
    clock = time.monotonic()
    table: PhotoTable = catalog.photo_table()
    report = DupeReport(table, [], [])
    sets = UnionFind(len(table))

    def add(pair: DupePair) -> None:
        report.pairs.append(pair)
        sets.union(pair.a, pair.b)

    if "exact" in options.tiers:
        for pair in _exact_pairs(table):
            add(pair)
    report.seconds["exact"] = time.monotonic() - clock
    wants_pixels = {"near", "crop"} & set(options.tiers)
    scene_lookup = np.full(len(table), -1, dtype=np.int64)
    scenes = np.zeros((0, dim or 1), dtype=np.float32)
    # the hash search needs only the table: it runs while the vectors are read and searched
    # (FAISS and SQLite release the GIL)
    with ThreadPoolExecutor(1, thread_name_prefix="dupes-hash") as pool:
        hashes = (
            pool.submit(hash_pairs, table.phashes, table.has_phash, options.hash_radius)
            if wants_pixels
            else None
        )
        if dim and (wants_pixels or "similar" in options.tiers):
            clock = time.monotonic()
            scene_lookup, scenes = VectorSource(catalog, table, dim).scenes()
            report.seconds["vectors"] = time.monotonic() - clock
        if hashes is not None:
            clock = time.monotonic()
            embedded = _embedding_candidates(table, options, scene_lookup, scenes, dim, catalog)
            candidates = _merge(scene_lookup, scenes, hashes.result(), embedded)
            report.proposed = len(candidates)
            report.seconds["propose"] = time.monotonic() - clock
    if wants_pixels:
        clock = time.monotonic()

        late: dict[int, str] = {}

        def on_result(candidate: Any, evidence: PixelEvidence) -> None:
            confirmed = _confirmed(candidate, evidence, options)
            if confirmed is None or sets.find(confirmed.a) == sets.find(confirmed.b):
                return
            near = confirmed.tier == "near" and "exact" in options.tiers
            if near and _same_pixels(table, confirmed.a, confirmed.b, late):
                confirmed = DupePair(confirmed.a, confirmed.b, "exact", 1.0, SAME_PIXELS)
            elif _separate_exposures(table, confirmed.a, confirmed.b):
                return  # another shot of the scene, which only the "similar" tier reports
            add(confirmed)

        known = catalog.pixel_evidence()
        report.checked, fresh = check_all(table, candidates, sets, known, on_result, on_check)
        if fresh:
            catalog.keep_pixel_evidence(fresh)
        if late:
            catalog.keep_pixel_hashes({int(table.ids[row]): late[row] for row in late})
        report.seconds["verify"] = time.monotonic() - clock
    if dim and wants_pixels:
        clock = time.monotonic()
        frames = Frames.read(catalog, table, dim)
        joined = lambda a, b: sets.find(a) == sets.find(b)  # noqa: E731
        for pair in video_pairs(frames, table, joined=joined):
            if not joined(pair.a, pair.b) and pair.tier in options.tiers:
                add(pair)
        report.stills = frame_stills(frames, table, scene_lookup, scenes)
        report.seconds["videos"] = time.monotonic() - clock
    if "similar" in options.tiers and len(scenes):
        clock = time.monotonic()
        for pair in _similar_pairs(scene_lookup, scenes, options):
            if sets.find(pair.a) != sets.find(pair.b):
                add(pair)
        report.seconds["similar"] = time.monotonic() - clock
    clock = time.monotonic()
    report.groups = build_groups(table, report.pairs, keep_paths)
    report.seconds["groups"] = time.monotonic() - clock
    return report


def _separate_exposures(table: PhotoTable, a: int, b: int) -> bool:
    """Two shots, not a photo and its copy: both carry an EXIF capture time, and the times or
    the cameras differ. A copy (re-saved, resized, cropped) keeps its source's EXIF or loses it;
    it never gains another time. On the real phone photos an iPhone and a Pixel shot of one
    view, 17 s apart, aligned like a crop (residual 0.65 px): geometry alone cannot tell."""
    if not (table.taken_from_exif[a] and table.taken_from_exif[b]):
        return False
    if abs(float(table.taken_at[a]) - float(table.taken_at[b])) >= SAME_MOMENT_S:
        return True
    cameras = table.cameras[a], table.cameras[b]
    return all(cameras) and cameras[0] != cameras[1]


def _same_pixels(table: PhotoTable, a: int, b: int, late: dict[int, str]) -> bool:
    """Whether two photos of one displayed size hold the same pixels. Indexing takes no pixel
    hash where it decoded a large JPEG reduced, so a lossless PNG of it only came out "near";
    the missing hashes are taken here from a full decode, once (`late` collects them for the
    catalog), and only for pairs the pixel check already called near."""
    if (table.widths[a], table.heights[a]) != (table.widths[b], table.heights[b]):
        return False
    for row in (a, b):
        if table.pixel_hashes[row] is None:
            stat = FileStat(table.paths[row], int(table.sizes[row]), int(table.mtimes_ns[row]))
            try:
                loaded = load_image(stat)
            except ImageLoadError:
                return False  # gone or changed since indexing: it stays near
            if loaded.content_hash != table.content_hashes[row]:
                return False
            late[row] = table.pixel_hashes[row] = pixel_hash(loaded.image)
    return table.pixel_hashes[a] == table.pixel_hashes[b]


def _exact_pairs(table: PhotoTable) -> list[DupePair]:
    pairs: list[DupePair] = []
    seen_bytes: dict[str, int] = {}
    for row, digest in enumerate(table.content_hashes):
        first = seen_bytes.setdefault(digest, row)
        if first != row:
            pairs.append(DupePair(first, row, "exact", 1.0, "exact: same bytes"))
    seen_pixels: dict[str, int] = {}
    for row, pixels in enumerate(table.pixel_hashes):
        if pixels is None:
            continue
        first = seen_pixels.setdefault(pixels, row)
        if first != row and table.content_hashes[first] != table.content_hashes[row]:
            pairs.append(DupePair(first, row, "exact", 1.0, SAME_PIXELS))
    return pairs


def _merge(
    scene_lookup: np.ndarray,
    scenes: np.ndarray,
    hashes: HashPairs,
    embedded: list[_Candidate],
) -> list[_Candidate]:
    """Every pair worth a pixel check, strongest first, one entry per unordered pair."""
    found: dict[tuple[int, int], _Candidate] = {}

    def cosine(a: int, b: int) -> float | None:
        i, j = scene_lookup[a], scene_lookup[b]
        if i < 0 or j < 0:
            return None
        return float(scenes[i] @ scenes[j])

    for a, b, distance, variant in zip(
        hashes.a.tolist(),
        hashes.b.tolist(),
        hashes.distance.tolist(),
        hashes.variant.tolist(),
        strict=True,
    ):
        key = (min(a, b), max(a, b))
        found[key] = _Candidate(a, b, variant, distance, cosine(a, b) if variant == 0 else None)
    for candidate in embedded:
        found.setdefault((min(candidate.a, candidate.b), max(candidate.a, candidate.b)), candidate)
    return sorted(
        found.values(),
        key=lambda c: (
            c.hamming if c.hamming is not None else 99,
            -(c.cosine if c.cosine is not None else -1.0),
        ),
    )


def _embedding_candidates(
    table: PhotoTable,
    options: DupeOptions,
    scene_lookup: np.ndarray,
    scenes: np.ndarray,
    dim: int | None,
    catalog: Catalog,
) -> list[_Candidate]:
    """Pairs whose scenes are close, and photos whose scene is close to another's tile or
    object (the larger photo may hold the smaller as a crop)."""
    if not len(scenes):
        return []
    found: list[_Candidate] = []
    scene_rows = np.flatnonzero(scene_lookup >= 0)
    order = scene_lookup[scene_rows]
    in_place = len(order) == len(scenes) and bool(np.all(order == np.arange(len(order))))
    matrix = scenes if in_place else scenes[order]  # a copy costs 0.5 GB at 100k photos
    threshold = min(options.near_cosine, options.crop_cosine)
    queries, neighbours, scores = neighbour_pairs(matrix, matrix, options.neighbours + 1, threshold)
    for q, n, score in zip(queries.tolist(), neighbours.tolist(), scores.tolist(), strict=True):
        a, b = int(scene_rows[q]), int(scene_rows[n])
        if a != b and (score >= options.near_cosine or "crop" in options.tiers):
            found.append(_Candidate(a, b, cosine=score))
    if "crop" in options.tiers and dim:
        found.extend(_crop_candidates(table, options, scene_rows, matrix, dim, catalog))
    return found


def _crop_candidates(
    table: PhotoTable,
    options: DupeOptions,
    scene_rows: np.ndarray,
    matrix: np.ndarray,
    dim: int,
    catalog: Catalog,
) -> list[_Candidate]:
    """Photos whose scene is close to another's tile or object. A CLIP library's tiles are in
    the CNN's space, where each photo's whole-photo tile stands for its scene."""
    source = VectorSource(catalog, table, dim)
    found: list[_Candidate] = []
    searches = []
    kinds = tuple(kind for kind in REGION_KINDS_FOR_CROPS if catalog.same_space(kind))
    if kinds:
        # scenes onto the basis the library keeps its objects and tiles in, if it has one
        searches.append((scene_rows, catalog.project_query(kinds[0], matrix), kinds))
    if not catalog.same_space("tile"):
        owners, wholes = source.load(("tile",), whole=True)
        searches.append((owners, wholes.astype(np.float32), ("tile",)))
    for query_rows, queries, region_kinds in searches:
        owners, regions = source.load(region_kinds)
        if not len(regions) or not len(queries):
            continue
        rows, hits, scores = neighbour_pairs(
            queries, regions, options.neighbours, options.crop_cosine
        )
        for q, h, score in zip(rows.tolist(), hits.tolist(), scores.tolist(), strict=True):
            a, b = int(query_rows[q]), int(owners[h])
            if a != b and a >= 0 and b >= 0:
                found.append(_Candidate(a, b, cosine=score, region="region"))
    return found


def _confirmed(
    candidate: _Candidate, evidence: PixelEvidence, options: DupeOptions
) -> DupePair | None:
    tier = evidence.tier
    if tier is None or tier not in options.tiers:
        return None
    facts = []
    if candidate.hamming is not None:
        turned = f" ({VARIANTS[candidate.variant]})" if candidate.variant else ""
        facts.append(f"hamming {candidate.hamming}/64{turned}")
    if candidate.cosine is not None:
        facts.append(f"cosine {candidate.cosine:.2f}")
    facts.append(f"residual {evidence.residual:.2f} px")
    if tier == "near" and evidence.contained < CONTAINED:
        facts.append(f"turned {abs(evidence.turn):.0f} degrees")
    if tier == "crop":
        facts.insert(0, f"covers {evidence.covers:.0%} of the larger")
        score = evidence.covers
    else:
        score = (
            1 - candidate.hamming / 64 if candidate.hamming is not None else candidate.cosine or 0.0
        )
    # the smaller photo first, so a crop reads "a is a crop of b"
    a, b = (candidate.a, candidate.b) if evidence.smaller_is_a else (candidate.b, candidate.a)
    return DupePair(a, b, tier, round(float(score), 4), f"{tier}: {', '.join(facts)}")


def _similar_pairs(
    scene_lookup: np.ndarray, scenes: np.ndarray, options: DupeOptions
) -> list[DupePair]:
    scene_rows = np.flatnonzero(scene_lookup >= 0)
    matrix = scenes[scene_lookup[scene_rows]]
    queries, neighbours, scores = neighbour_pairs(
        matrix, matrix, options.neighbours + 1, options.similar_cosine
    )
    pairs, seen = [], set()
    for q, n, score in zip(queries.tolist(), neighbours.tolist(), scores.tolist(), strict=True):
        a, b = int(scene_rows[q]), int(scene_rows[n])
        if a != b and (min(a, b), max(a, b)) not in seen:
            seen.add((min(a, b), max(a, b)))
            pairs.append(
                DupePair(
                    min(a, b), max(a, b), "similar", round(score, 4), f"similar: cosine {score:.2f}"
                )
            )
    return sorted(pairs, key=lambda p: -p.score)
