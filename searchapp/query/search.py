"""Search: turn weighted terms into one query vector, kNN over the regions that pass the filters,
aggregate regions to photos.

A photo's score is the cosine similarity of the query and its best region; that region's kind,
bbox and label come with it. Filters become an exact FAISS ID selector built from SQL, so a filter
that keeps 1% of the library still returns k hits when k exist. On a library whose encoder has no
text tower (the offline CNN), words are matched against the ImageNet labels stored per photo
instead (see labels.py).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import TYPE_CHECKING

import numpy as np

from searchapp.encoders.registry import supports_text
from searchapp.errors import QueryError
from searchapp.ingest.regions import TILE_LABEL_MIN_PROB
from searchapp.query import labels as label_match
from searchapp.query import query_vectors, spaces, verify
from searchapp.query.query_vectors import Library, combine, image_file, term_vector
from searchapp.records import TAG_MIN_PROB, BBox, Filters, RegionHit
from searchapp.vectors import faiss_index

if TYPE_CHECKING:
    from PIL import Image


TERM_SOURCES = ("text", "image", "like")
LABEL_MIN_PROB = 0.05  # a label this likely counts as present when words filter or exclude
LABEL_FLOORS = {"tile": TILE_LABEL_MIN_PROB}
CLIP_HINT = (
    "for free-text search, index with CLIP: searchapp reindex --encoder "
    "clip:ViT-B-32/laion2b_s34b_b79k"
)


@dataclass(frozen=True)
class Term:
    source: str  # "text", "image" (a file on disk) or "like" (a photo already indexed)
    value: str
    weight: float = 1.0  # negative: subtract this term
    # an image's path in the library, where the file read is a copy of it (a server's copy of a
    # fan-out's query image): that photo is left out of the answer, as the query itself
    indexed_as: str | None = None


Matched = list[tuple[Term, dict[str, frozenset[str]]]]  # text terms with the labels they match


@dataclass(frozen=True)
class Query:
    terms: tuple[Term, ...]
    filters: Filters = field(default_factory=Filters)
    k: int = 10
    kinds: tuple[str, ...] = ("scene",)
    include_self: bool = False
    verify: bool = True  # re-rank a pure image query's top hits geometrically (verify.py)


@dataclass(frozen=True)
class SearchHit:
    path: str
    score: float
    kind: str
    bbox: BBox
    label: str | None
    taken_at: float
    labels: tuple[tuple[str, float], ...] = ()
    verified: str | None = None  # what the pixel check said: "pixels", "geometry" or None
    # the check's evidence: how alike the aligned pixels are (-1..1), and the keypoints one
    # homography holds; None where it did not look
    agreement: float | None = None
    inliers: int | None = None
    image_id: int | None = None  # the photo's id in the catalog
    photo_size: tuple[int, int] = (0, 0)  # its displayed width and height
    time: float | None = None  # a video's: the time of its best frame, in seconds
    moments: tuple[tuple[float, float], ...] = ()  # a video's best frames: (time, score)

    @property
    def date(self) -> str:
        return datetime.fromtimestamp(self.taken_at).isoformat(timespec="seconds")

    @property
    def tags(self) -> list[str]:
        """The photo's tags: its scene labels from TAG_MIN_PROB, by their first name."""
        return [label_match.short_name(n) for n, p in self.labels if p >= TAG_MIN_PROB]

    def as_dict(self) -> dict[str, object]:
        return {
            "path": self.path,
            "score": round(self.score, 6),
            "date": self.date,
            "labels": [{"name": name, "prob": round(prob, 4)} for name, prob in self.labels],
            "tags": self.tags,
            "region": {"kind": self.kind, "bbox": list(self.bbox), "label": self.label},
            "verified": self.verified,
            **(
                {"agreement": round(self.agreement, 4), "inliers": self.inliers}
                if self.agreement is not None
                else {}
            ),
            **(
                {
                    "time": self.time,
                    "moments": [{"time": t, "score": round(s, 6)} for t, s in self.moments],
                }
                if self.time is not None
                else {}
            ),
        }


@dataclass
class SearchResults:
    hits: list[SearchHit]
    mode: str  # "vector" (embedding similarity) or "labels" (ImageNet label matching)
    notes: list[str] = field(default_factory=list)
    region_hits: list[RegionHit] = field(default_factory=list)  # best regions, unaggregated
    checked: int = 0  # top hits the pixel check looked at (verify.py); 0 when it did not run
    vector: np.ndarray | None = None  # what regions were ranked by: (1, dim); None for labels
    tile_vector: np.ndarray | None = None  # what tiles were ranked by, in a space of their own
    # with tiles in a space of their own, and asked for: each space's best k photos, which
    # fanout.py merges across libraries space by space before fusing the spaces by rank
    spaces: list[list[SearchHit]] = field(default_factory=list)

    def __iter__(self) -> Iterator[SearchHit]:
        return iter(self.hits)

    def __len__(self) -> int:
        return len(self.hits)

    def __getitem__(self, index: int) -> SearchHit:
        return self.hits[index]


def aggregate(region_hits: list[RegionHit], k: int) -> list[RegionHit]:
    """Best region per photo, best photo first; ties broken by path for stable output."""
    best: dict[int, RegionHit] = {}
    for hit in region_hits:
        current = best.get(hit.image_id)
        if current is None or hit.score > current.score:
            best[hit.image_id] = hit
    return sorted(best.values(), key=lambda h: (-h.score, h.path))[:k]


MOMENTS = 3  # a video's best moments, listed with its hit
MOMENT_GAP = 2.0  # seconds between two moments listed: one sampling step


def moments(region_hits: list[RegionHit]) -> dict[int, tuple[tuple[float, float], ...]]:
    """Each video's best frames among the hits, as (time, score), best first: at most MOMENTS,
    MOMENT_GAP apart, so that one long shot does not fill the list."""
    found: dict[int, list[tuple[float, float]]] = {}
    for hit in sorted(region_hits, key=lambda h: -h.score):
        if hit.time is None:
            continue
        kept = found.setdefault(hit.image_id, [])
        if len(kept) < MOMENTS and all(abs(t - hit.time) >= MOMENT_GAP for t, _ in kept):
            kept.append((hit.time, hit.score))
    return {image: tuple(times) for image, times in found.items()}


def checks_pixels(query: Query) -> bool:
    """Whether the query's best candidates are checked against its pixels: one image file."""
    return query.verify and [term.source for term in query.terms] == ["image"]


def validate(query: Query) -> None:
    if query.k < 1:
        raise QueryError(f"-k must be at least 1 (got {query.k})")
    if not query.terms:
        raise QueryError("nothing to search for: give text, --image FILE or --like PATH")
    for term in query.terms:
        if term.source not in TERM_SOURCES:
            raise QueryError(f"unknown term source {term.source!r}; valid: {TERM_SOURCES}")
        if not term.value or not term.value.strip():
            raise QueryError("empty search text: say what to look for, e.g. searchapp search cat")
        if not math.isfinite(term.weight) or term.weight == 0:
            raise QueryError(f"weight {term.weight} of {term.value!r} must be a non-zero number")
        if term.source == "image":
            image_file(term.value)  # a missing file is a bad query, whatever the library
    if not any(term.weight > 0 for term in query.terms):
        raise QueryError("every term is subtracted; give at least one positive term")


def _knn(
    library: Library,
    vector: np.ndarray,
    query: Query,
    allowed: np.ndarray | None,
    excluded: set[int],
    wide: bool = False,
    off_cluster: bool = False,
) -> list[RegionHit]:
    """Region hits of every kind, enough to hold k distinct photos when they exist.

    A photo has one scene region but many tiles and objects, so k regions may be a handful of
    photos: fetch more regions, four times as many each round, until k photos are in hand or the
    index has nothing more to give. `wide`: scenes as many as the others, for a ranking merged
    with another space's (spaces.py), whose ties need to know how the other space ranks a photo.
    `off_cluster`: the vector holds words, which lie outside the photos' clusters, and an IVF
    index probes more lists for it."""
    hits: list[RegionHit] = []
    for kind in query.kinds:
        index = library.indexes().get(kind, persist=False)
        exact = library.indexes().exact_vectors(kind, index)  # a PQ index's re-rank
        available = index.ntotal if allowed is None else min(index.ntotal, len(allowed))
        if available == 0:
            continue
        few = kind == "scene" and not wide
        fetch = query.k + len(excluded) if few else 8 * (query.k + len(excluded))
        queries = library.catalog.project_query(kind, vector)  # onto its codec's basis
        while True:
            scores, ids = faiss_index.search(index, queries, fetch, allowed, exact, off_cluster)
            found = {int(i): float(s) for i, s in zip(ids[0], scores[0], strict=True) if i >= 0}
            kind_hits = library.catalog.hydrate(found)
            photos = {h.image_id for h in kind_hits} - excluded
            if len(photos) >= query.k or fetch >= available:
                break
            fetch *= 4
        hits.extend(kind_hits)
    return hits


def _labelled(library: Library, hits: list[RegionHit]) -> list[RegionHit]:
    """Hits whose region has no label of its own (tiles, scenes) get the class the CNN was
    surest of there, when it is sure enough to count in a word query: it shows why they came."""
    unlabelled = [hit.region_id for hit in hits if hit.label is None]
    if not unlabelled:
        return hits
    top = library.catalog.region_top_labels(unlabelled)
    shown = []
    for hit in hits:
        name, prob = top.get(hit.region_id, ("", 0.0))
        if hit.label is None and name and prob >= label_floor(hit.kind):
            hit = replace(hit, label=label_match.short_name(name))
        shown.append(hit)
    return shown


def _finish(
    library: Library,
    region_hits: list[RegionHit],
    query: Query,
    excluded: set[int],
    tile_hits: list[RegionHit] | None = None,
    spaces_too: bool = False,
) -> tuple[list[SearchHit], list[RegionHit], list[list[SearchHit]]]:
    """Photos from region hits; with `tile_hits` (tiles in a space of their own), the photos of
    the two spaces merged by rank (spaces.py), and with `spaces_too` each space's best k."""

    def kept(hits: list[RegionHit]) -> list[RegionHit]:
        hits = [h for h in hits if h.image_id not in excluded]
        if query.filters.min_score is not None:
            hits = [h for h in hits if h.score >= query.filters.min_score]
        return sorted(hits, key=lambda h: (-h.score, h.path, h.region_id))

    region_hits = kept(region_hits)
    rankings: list[list[RegionHit]] = []
    if tile_hits is None:
        best = aggregate(region_hits, query.k)
    else:
        tiles = kept(tile_hits)
        rankings = [aggregate(region_hits, len(region_hits)), aggregate(tiles, len(tiles))]
        best = spaces.merged(rankings, query.k, lambda hit: hit.image_id)
        region_hits = sorted(region_hits + tiles, key=lambda h: (-h.score, h.path, h.region_id))
    best_moments = moments(region_hits)
    by_space = [_photos(library, r[: query.k], best_moments) for r in rankings if spaces_too]
    return _photos(library, best, best_moments), region_hits[: query.k], by_space


def _photos(
    library: Library,
    best: list[RegionHit],
    best_moments: dict[int, tuple[tuple[float, float], ...]],
) -> list[SearchHit]:
    """Photos of their best region hits, with the labels that show why they came."""
    best = _labelled(library, best)
    photo_labels = library.catalog.image_labels(h.image_id for h in best)
    # a video's labels are those of the frame that matched
    frame_labels = library.catalog.region_labels(h.region_id for h in best if h.time is not None)
    for hit in best:
        if hit.time is not None:
            photo_labels[hit.image_id] = frame_labels.get(hit.region_id, [])
    return [
        SearchHit(
            h.path,
            h.score,
            h.kind,
            h.bbox,
            h.label,
            h.taken_at,
            tuple(photo_labels.get(h.image_id, [])),
            image_id=h.image_id,
            photo_size=h.photo_size,
            time=h.time,
            moments=best_moments.get(h.image_id, ()),
        )
        for h in best
    ]


def _label_terms(query: Query) -> tuple[Matched, str]:
    matched = []
    described = []
    for term in query.terms:
        if term.source != "text":
            continue
        matches = label_match.match_labels(term.value)
        if not matches:
            raise QueryError(
                f"no ImageNet label matches {term.value!r}: this library's encoder has no text "
                f"tower and can only match the 1000 ImageNet classes; {CLIP_HINT}"
            )
        matched.append((term, matches))
        names = sorted({label_match.short_name(n) for found in matches.values() for n in found})
        shown = ", ".join(names[:6]) + (f" and {len(names) - 6} more" if len(names) > 6 else "")
        described.append(f"{term.value!r} -> {shown}")
    return matched, "; ".join(described)


def _labels_only(
    library: Library, query: Query, matched: Matched
) -> tuple[dict[int, float], dict[int, str]]:
    """Score = weighted sum over the query's words of the best matching label probability; and
    for each region, the label that matched best, to show why it came. A subtracted word drops
    every photo labelled with it, as it does when words filter an image query."""
    scores: dict[int, float] = {}
    why: dict[int, tuple[float, str]] = {}
    dropped: set[int] = set()
    for term, matches in matched:
        if term.weight < 0:
            dropped |= _labelled_photos(library, query, frozenset().union(*matches.values()))
            continue
        for names in matches.values():
            floors = {kind: label_floor(kind, scoring=True) for kind in query.kinds}
            found = library.catalog.label_scores(names, query.kinds, query.filters, floors)
            for region_id, (prob, name) in found.items():
                scores[region_id] = scores.get(region_id, 0.0) + term.weight * prob
                if prob > why.get(region_id, (0.0, ""))[0]:
                    why[region_id] = (prob, name)
    kept = {region: score for region, score in scores.items() if region not in dropped}
    return kept, {region: label_match.short_name(why[region][1]) for region in kept}


def label_floor(kind: str, scoring: bool = False) -> float:
    """The probability from which a region's label counts: to score a word query (any, but a
    tile's must be sure), or to say a label is present (filters, subtraction, the label shown)."""
    floor = LABEL_FLOORS.get(kind, 0.0)
    return floor if scoring else max(LABEL_MIN_PROB, floor)


def _labelled_photos(library: Library, query: Query, names: frozenset[str]) -> set[int]:
    """Every region of the photos that show one of these labels."""
    floors = {kind: label_floor(kind) for kind in query.kinds}
    present = library.catalog.label_scores(names, query.kinds, query.filters, floors)
    return library.catalog.sibling_regions(present)


def _label_filter(library: Library, query: Query, matched: Matched) -> np.ndarray:
    """Region ids allowed when words filter an image query on a label-only library: a word
    keeps the regions labelled with it; a subtracted word drops the photos labelled with it."""
    allowed = set(library.catalog.region_ids_where(query.filters, query.kinds).tolist())
    floors = {kind: label_floor(kind) for kind in query.kinds}
    for term, matches in matched:
        names = frozenset().union(*matches.values())
        if term.weight > 0:  # the region that shows it may match
            allowed &= set(library.catalog.label_scores(names, query.kinds, query.filters, floors))
        else:  # "minus moped": no photo with a moped in it, whichever region would match
            allowed -= _labelled_photos(library, query, names)
    return np.fromiter(sorted(allowed), dtype=np.int64)


def verified_first(
    query: Image.Image, hits: list[SearchHit], decoded_scale: float = 1.0
) -> list[SearchHit]:
    """The top verify.CANDIDATES hits checked against the query's pixels (decoded at
    `decoded_scale` displayed px per px), each marked with its verdict, those the pixels
    confirm moved first; the rest follow unchecked. Scores are not changed, so a confirmed hit
    may score below an unconfirmed one under it."""
    head = hits[: verify.CANDIDATES]
    places = [(hit.path, hit.bbox, hit.time) for hit in head]
    matches = verify.check(query, places, decoded_scale)
    order = verify.verified_order(matches)
    checked = [with_check(hit, match) for hit, match in zip(head, matches, strict=True)]
    return [checked[i] for i in order] + hits[len(head) :]


def with_check(hit: SearchHit, match: verify.Match) -> SearchHit:
    """`hit` with the pixel check's verdict and its evidence."""
    return replace(hit, verified=match.verdict, agreement=match.agreement, inliers=match.inliers)


def _regions_to_come(library: Library, query: Query) -> list[str]:
    """A note where a search of regions misses some: photos (of those the filters let through)
    whose objects and tiles an index run has still to make (it makes every photo's scene
    first, so that search starts early)."""
    regions = {"object", "tile"} & set(query.kinds)
    waiting = library.catalog.count_awaiting_regions(query.filters) if regions else 0
    if not waiting:
        return []
    writer = library.lock.holder()
    how = f"{writer} is making them now" if writer else "run `searchapp index` on their folders"
    photos = "1 photo is" if waiting == 1 else f"{waiting} photos are"
    return [
        f"{photos} searched by the whole scene only, their objects and tiles still to come: {how}"
    ]


def search(
    library: Library,
    query: Query,
    memo: query_vectors.Memo | None = None,
    spaces_too: bool = False,
    check: bool = True,
) -> SearchResults:
    """The query's answers from one library. For fanout.py, which searches several: `memo`
    keeps the query's vectors for the next library of the same encoder, `spaces_too` asks
    for each space's best photos where the tiles have a space of their own, and `check=False`
    leaves the pixel check to it (the merged top is checked once), the image still decoded and
    embedded as a checked query's is."""
    validate(query)
    memo = {} if memo is None else memo
    identity = library.require_identity()

    has_text = any(term.source == "text" for term in query.terms)
    label_mode = has_text and not supports_text(identity.name)
    notes: list[str] = []
    matched: Matched = []
    if label_mode:
        matched, described = _label_terms(query)
        notes.append(f"label matching ({identity.name} has no text tower): {described}")
        notes.append(CLIP_HINT)

    folder = query.filters.folder
    if folder and not os.path.isdir(folder):  # a typo, or a drive not mounted now
        notes.append(f"--folder {folder} is no folder on disk; searched the photos indexed there")
    notes.extend(_regions_to_come(library, query))
    excluded: set[int] = set()
    vector_terms = [t for t in query.terms if not (label_mode and t.source == "text")]
    check_pixels = checks_pixels(query)
    image_side = verify.DECODE_SIDE if check_pixels else 0
    vectors, weights, decoded = [], [], []
    for term in vector_terms:
        vector, image_id, pixels = term_vector(
            library, term.source, term.value, image_side, memo, term.indexed_as
        )
        decoded.append(pixels)
        vectors.append(vector)
        weights.append(term.weight)
        if image_id is not None and not query.include_self:
            excluded.add(image_id)
    query_pixels = next((pixels for pixels in decoded if pixels is not None), None)

    if label_mode and not vectors:
        scored, why = _labels_only(library, query, matched)
        hits = [replace(h, label=why[h.region_id]) for h in library.catalog.hydrate(scored)]
        photos, regions, _ = _finish(library, hits, query, excluded)
        return SearchResults(photos, "labels", notes, regions)

    if label_mode:
        allowed: np.ndarray | None = _label_filter(library, query, matched)
    elif query.filters.restricts_rows():
        allowed = library.catalog.region_ids_where(query.filters, query.kinds)
    else:
        allowed = None
    if allowed is not None and len(allowed) == 0:
        return SearchResults([], "vector", notes)
    if check_pixels and check:
        wanted = query.k
        query = replace(query, k=max(query.k, verify.CANDIDATES))
    vector = combine(vectors, weights)
    words = any(term.source == "text" for term in vector_terms)
    tile_vector, tile_hits = None, None
    if spaces.tiles_apart(query.kinds, library.catalog.tile_identity() is not None):
        sources = [term.source for term in vector_terms]
        tiles_by = library.catalog.tile_identity()  # one key per tile encoder
        tiles_key = ("tiles", tiles_by, *((t.source, t.value, t.weight) for t in vector_terms))

        def embed_tiles() -> np.ndarray:
            if tiles_key not in memo:
                memo[tiles_key] = query_vectors.tile_vector(library, decoded, weights)
            return memo[tiles_key]

        tile_vector = spaces.tile_query(sources, query.kinds, embed_tiles)
        query = replace(query, kinds=tuple(k for k in query.kinds if k != spaces.TILE_KIND))
        if tile_vector is not None:
            tiles = replace(query, kinds=(spaces.TILE_KIND,))
            tile_hits = _knn(library, tile_vector, tiles, allowed, excluded, False, words)
    wide = tile_hits is not None
    region_hits = _knn(library, vector, query, allowed, excluded, wide, words)
    photos, regions, by_space = _finish(
        library, region_hits, query, excluded, tile_hits, spaces_too
    )
    if check_pixels and check:
        assert query_pixels is not None  # a pure image query decoded its image above
        checked = min(len(photos), verify.CANDIDATES)
        photos = verified_first(query_pixels.image, photos, query_pixels.scale)[:wanted]
        regions = regions[:wanted]
        return SearchResults(
            photos, "vector", notes, regions, checked, vector, tile_vector, by_space
        )
    return SearchResults(
        photos, "vector", notes, regions, vector=vector, tile_vector=tile_vector, spaces=by_space
    )
