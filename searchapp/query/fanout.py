"""One query over several libraries: each is searched as `searchapp search` searches one, and
the answers are merged by score into one top k.

Scores compare only between vectors of one model, so the libraries must hold vectors of the same
encoder, weights included. Each model loads once and serves every library. A query image's pixel
check runs once, on the merged top, not once per library. This is the fan-out of docs/scale.md:
a library per disk, per machine or per shard of an archive, asked at once.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, Protocol, TypeVar

from searchapp.errors import QueryError
from searchapp.query import query_vectors, spaces, verify
from searchapp.query.query_vectors import Library
from searchapp.query.search import (
    Query,
    SearchHit,
    SearchResults,
    checks_pixels,
    search,
    validate,
    verified_first,
)
from searchapp.records import EncoderIdentity, RegionHit


class Fanned(Library, Protocol):
    """A library that can be searched beside others (searchapp.library.Library is one)."""

    directory: Path

    @property
    def encoder_identity(self) -> EncoderIdentity | None: ...

    def share_encoders(self, other: Any) -> None: ...  # another library of its class


def search_libraries(libraries: Sequence[Fanned], query: Query) -> SearchResults:
    """The query's best k over all the libraries, each photo once (a folder two libraries
    index is answered by the better of their scores). A library with no photos yet is left
    out with a note."""
    validate(query)
    if not libraries:
        raise QueryError("no library to search")
    ready = [library for library in libraries if library.encoder_identity is not None]
    if len(ready) <= 1:
        answer = search(ready[0] if ready else libraries[0], query)
        answer.notes += _left_out(libraries, ready)
        return answer
    _require_one_encoder(ready)
    if any(term.source == "like" for term in query.terms):
        raise QueryError(
            "--like names a photo of one library; to search several, give its file with --image"
        )
    check_pixels = checks_pixels(query)
    # checked once, below, on the merged top, which each library's candidates must fill
    wanted = max(query.k, verify.CANDIDATES) if check_pixels else query.k
    each = replace(query, verify=False, k=wanted)
    answers: list[SearchResults] = []
    memo: query_vectors.Memo = {}  # the query embedded once
    for position, library in enumerate(ready):
        if position:  # the models the first search loaded serve the rest
            library.share_encoders(ready[0])
        answers.append(search(library, each, memo, spaces_too=True))
    hits = merged_hits(answers, wanted)
    checked = 0
    if check_pixels and hits:
        side = max(verify.DECODE_SIDE, ready[0].encoder().input_size)  # as one library decodes
        pixels = query_vectors.load_query(query.terms[0].value, side)
        hits = verified_first(pixels.image, hits[:wanted], pixels.scale)
        checked = min(len(hits), verify.CANDIDATES)
    first = answers[0]
    return SearchResults(
        hits=hits[: query.k],
        mode=first.mode,
        notes=_notes(ready, answers) + _left_out(libraries, ready),
        region_hits=_regions(answers)[: query.k],
        checked=checked,
        vector=first.vector,
        tile_vector=first.tile_vector,
    )


def merged_hits(answers: Sequence[SearchResults], wanted: int) -> list[SearchHit]:
    """The libraries' photos as one library ranks them: by score, or, where the tiles have a
    space of their own, by score within each space and then by rank across the spaces (a
    cosine in one space says nothing of one in the other)."""
    if not answers[0].spaces:
        return _best_first([answer.hits for answer in answers])
    count = len(answers[0].spaces)
    rankings = [_best_first([answer.spaces[s] for answer in answers]) for s in range(count)]
    return spaces.merged(rankings, wanted, lambda hit: hit.path)


Ranked = TypeVar("Ranked", SearchHit, RegionHit)


def _best_first(
    rankings: Iterable[Iterable[Ranked]], key: Callable[[Ranked], Hashable] | None = None
) -> list[Ranked]:
    """Hits from several libraries, by score, each once (its best): a photo by its path, or a
    region by `key` (where libraries share a folder)."""
    best: dict[Hashable, Ranked] = {}
    for hit in (hit for ranking in rankings for hit in ranking):
        known = key(hit) if key else hit.path
        if known not in best or hit.score > best[known].score:
            best[known] = hit
    return sorted(best.values(), key=lambda hit: (-hit.score, hit.path))


def _regions(answers: list[SearchResults]) -> list[RegionHit]:
    """The regions that matched, by score, each region once where libraries share a folder."""
    regions = [answer.region_hits for answer in answers]
    return _best_first(regions, lambda region: (region.path, region.kind, region.bbox, region.time))


def _notes(libraries: Sequence[Fanned], answers: list[SearchResults]) -> list[str]:
    """Each library's notes; one that not every library gave names those that did."""
    givers: dict[str, list[str]] = {}
    for library, answer in zip(libraries, answers, strict=True):
        for note in dict.fromkeys(answer.notes):
            givers.setdefault(note, []).append(str(library.directory))
    return [
        note if len(names) == len(libraries) else f"{note} (library {', '.join(names)})"
        for note, names in givers.items()
    ]


def _left_out(libraries: Sequence[Fanned], ready: Sequence[Fanned]) -> list[str]:
    return [
        f"library {library.directory} has no photos yet; the others were searched"
        for library in libraries
        if library not in ready
    ]


def _require_one_encoder(libraries: Sequence[Fanned]) -> None:
    """One encoder, weights included, for the vectors and for the tiles: scores of two models
    do not compare."""
    first = libraries[0]
    kept = (first.require_identity(), first.catalog.tile_identity())
    for library in libraries[1:]:
        other = (library.require_identity(), library.catalog.tile_identity())
        if other != kept:
            theirs, ours = (
                " and tiles of ".join(i.describe() for i in pair if i) for pair in (other, kept)
            )
            raise QueryError(
                f"library {library.directory} holds vectors of {theirs}, and library "
                f"{first.directory} of {ours}: scores of two encoders do not compare. Search "
                "them one at a time, or `searchapp reindex` one with the other's encoder"
            )
