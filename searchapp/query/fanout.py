"""One query over several libraries: each is searched as `searchapp search` searches one, and
the answers are merged by score into one top k.

Scores compare only between vectors of one model, so the libraries must hold vectors of the same
encoder, weights included. Each model loads once and serves every library. A query image's pixel
check runs once, on the merged top, not once per library. This is the fan-out of docs/scale.md:
a library per disk, per machine or per shard of an archive, asked at once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, Protocol

from searchapp.errors import QueryError
from searchapp.query import query_vectors, verify
from searchapp.query.query_vectors import Library
from searchapp.query.search import Query, SearchHit, SearchResults, search, verified_first


class Fanned(Library, Protocol):
    """A library that can be searched beside others (searchapp.library.Library is one)."""

    directory: Path

    def share_encoders(self, other: Any) -> None: ...  # another library of its class


def search_libraries(libraries: Sequence[Fanned], query: Query) -> SearchResults:
    """The query's best k over all the libraries, each photo once (a folder two libraries
    index is answered by the better of their scores)."""
    if len(libraries) == 1:
        return search(libraries[0], query)
    _require_one_encoder(libraries)
    if any(term.source == "like" for term in query.terms):
        raise QueryError(
            "--like names a photo of one library; to search several, give its file with --image"
        )
    check_pixels = query.verify and [term.source for term in query.terms] == ["image"]
    # checked once, below, on the merged top, which each library's candidates must fill
    wanted = max(query.k, verify.CANDIDATES) if check_pixels else query.k
    each = replace(query, verify=False, k=wanted)
    answers: list[SearchResults] = []
    memo: query_vectors.Memo = {}
    for position, library in enumerate(libraries):
        if position:  # the models the first search loaded serve the rest
            library.share_encoders(libraries[0])
        answers.append(search(library, each, memo))  # the query embedded once
    best: dict[str, SearchHit] = {}
    for hit in (hit for answer in answers for hit in answer.hits):
        if hit.path not in best or hit.score > best[hit.path].score:
            best[hit.path] = hit
    hits = sorted(best.values(), key=lambda hit: (-hit.score, hit.path))
    regions = sorted(
        (region for answer in answers for region in answer.region_hits),
        key=lambda region: -region.score,
    )
    notes = list(dict.fromkeys(note for answer in answers for note in answer.notes))
    checked = 0
    if check_pixels and hits:
        pixels = query_vectors.load_query(query.terms[0].value, verify.DECODE_SIDE)
        hits = verified_first(pixels.image, hits[:wanted], pixels.scale)
        checked = min(len(hits), verify.CANDIDATES)
    first = answers[0]
    return SearchResults(
        hits=hits[: query.k],
        mode=first.mode,
        notes=notes,
        region_hits=regions[: query.k],
        checked=checked,
        vector=first.vector,
        tile_vector=first.tile_vector,
    )


def _require_one_encoder(libraries: Sequence[Fanned]) -> None:
    first = libraries[0]
    identity = first.require_identity()
    for library in libraries[1:]:
        other = library.require_identity()
        if other != identity:
            raise QueryError(
                f"library {library.directory} holds vectors of {other.describe()}, and library "
                f"{first.directory} of {identity.describe()}: scores of two encoders do not "
                "compare. Search them one at a time, or `searchapp reindex` one with the "
                "other's encoder"
            )
