"""One query over several libraries: each is searched as `searchapp search` searches one, and
the answers are merged by score into one top k.

Scores compare only between vectors of one model, so the libraries must hold vectors of the same
encoder, weights included. Each model loads once and serves every library. A query image's pixel
check runs once, on the merged top, not once per library. This is the fan-out of docs/scale.md:
a library per disk, per machine or per shard of an archive, asked at once.

A library on another machine (remote.py) is asked at the same time as those here are searched.
It embeds the query and checks its own candidates' pixels, sending the evidence; the libraries
here are checked once, where they reach the merged top, and the top is ordered from the evidence
of both as one library orders its own (verify.shown_before).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, Protocol, TypeVar

from searchapp.errors import QueryError
from searchapp.query import query_vectors, spaces, verify
from searchapp.query.query_vectors import Library
from searchapp.query.remote import Asking, RemoteLibrary, Unreachable, query_to_wire
from searchapp.query.search import (
    Query,
    SearchHit,
    SearchResults,
    checks_pixels,
    search,
    validate,
    with_check,
)
from searchapp.records import EncoderIdentity, RegionHit


class Fanned(Library, Protocol):
    """A library that can be searched beside others (searchapp.library.Library is one)."""

    directory: Path

    @property
    def encoder_identity(self) -> EncoderIdentity | None: ...

    def share_encoders(self, other: Any) -> None: ...  # another library of its class


Identities = tuple[EncoderIdentity, EncoderIdentity | None]  # the vectors', the tiles'


def search_libraries(libraries: Sequence[Fanned | RemoteLibrary], query: Query) -> SearchResults:
    """The query's best k over all the libraries, each photo once (a folder two libraries
    index is answered by the better of their scores). A library with no photos yet is left
    out with a note, as is one on another machine that does not answer."""
    validate(query)
    if not libraries:
        raise QueryError("no library to search")
    if len(libraries) > 1 and any(term.source == "like" for term in query.terms):
        raise QueryError(
            "--like names a photo of one library; to search several, give its file with --image"
        )
    here = [library for library in libraries if not isinstance(library, RemoteLibrary)]
    far = [library for library in libraries if isinstance(library, RemoteLibrary)]
    ready = [library for library in here if library.encoder_identity is not None]
    if not far and len(ready) <= 1:
        answer = search(ready[0] if ready else here[0], query)
        answer.notes += _left_out(here, ready)
        return answer
    return _search_several(here, ready, far, query)


def _search_several(
    here: Sequence[Fanned], ready: Sequence[Fanned], far: Sequence[RemoteLibrary], query: Query
) -> SearchResults:
    """The libraries on other machines asked at once, in threads, while those here are
    searched one after another with the query embedded once. Each machine checks its own
    candidates' pixels; those of the libraries here are checked once, where they reach the
    merged top. Of the top, those confirmed come first, as one library puts them: "pixels",
    then "geometry"."""
    named = [(str(library.directory), _identities(library)) for library in ready]
    if named:  # before any model is shared: one of another encoder would take the wrong one
        _require_one_encoder(named)
    check_pixels = checks_pixels(query)
    # each library's candidates must fill the merged top that is checked
    wanted = max(query.k, verify.CANDIDATES) if check_pixels else query.k
    each = replace(query, k=wanted)
    wire = query_to_wire(each) if far else {}  # the query image read once, for every server
    asked = [Asking(library, wire) for library in far]
    answers: list[SearchResults] = []
    memo: query_vectors.Memo = {}  # the query embedded once
    for position, library in enumerate(ready):
        if position:  # the models the first search loaded serve the rest
            library.share_encoders(ready[0])
        answers.append(search(library, each, memo, spaces_too=True, check=False))
    found_here = {_region_key(hit) for answer in answers for hit in _every_hit(answer)}
    missing = _left_out(here, ready)
    for asking in asked:
        asking.join()
        if isinstance(asking.error, Unreachable):
            missing.append(f"{asking.error}; the others were searched")
        elif asking.error is not None:
            raise asking.error
        elif asking.answer is None or asking.answer.identity is None:
            missing += _left_out([asking.library], [])
        else:
            answers.append(asking.answer.results)
            identities = (asking.answer.identity, asking.answer.tile_identity)
            named.append((asking.library.directory, identities))
    if not answers:
        raise QueryError("no library answered: " + "; ".join(missing))
    _require_one_encoder(named)
    hits = merged_hits(answers, wanted)
    checked = 0
    if check_pixels and hits:
        # each far library's checks, of the very region each merged hit shows (a CLIP
        # library's best region may differ by space); those here checked now, all at once
        said = {
            _region_key(hit): hit
            for answer in answers
            for hit in answer.hits
            if hit.agreement is not None or hit.verified
        }
        head = [_as_checked(hit, said.get(_region_key(hit))) for hit in hits[: verify.CANDIDATES]]
        mine = [i for i, hit in enumerate(head) if _region_key(hit) in found_here]
        if mine:
            side = max(verify.DECODE_SIDE, ready[0].encoder().input_size)  # as one library does
            pixels = query_vectors.load_query(query.terms[0].value, side)
            places = [(head[i].path, head[i].bbox, head[i].time) for i in mine]
            matches = verify.check(pixels.image, places, pixels.scale)
            for i, match in zip(mine, matches, strict=True):
                head[i] = with_check(head[i], match)
        order = sorted(
            range(len(head)),
            key=lambda i: verify.shown_before(
                head[i].verified, head[i].agreement or 0.0, head[i].inliers or 0, i
            ),
        )
        head = [head[i] for i in order]
        # past the head, as one library leaves them: unchecked, whatever their library said
        unchecked = [_as_checked(hit, None) for hit in hits[len(head) :]]
        hits = head + unchecked
        checked = sum(1 for hit in head if hit.agreement is not None or hit.verified)
    first = answers[0]
    return SearchResults(
        hits=hits[: query.k],
        mode=first.mode,
        notes=_notes([name for name, _ in named], answers) + missing,
        region_hits=_regions(answers)[: query.k],
        checked=checked,
        vector=first.vector if ready else None,
        tile_vector=first.tile_vector if ready else None,
    )


def _region_key(hit: SearchHit | RegionHit) -> tuple[object, ...]:
    """A region of a photo or a video frame: a region of another photo, another place of the
    photo, or another frame is another key."""
    return (hit.path, hit.kind, hit.bbox, hit.time)


def _every_hit(answer: SearchResults) -> Iterator[SearchHit]:
    yield from answer.hits
    for space in answer.spaces:
        yield from space


def _as_checked(hit: SearchHit, check: SearchHit | None) -> SearchHit:
    """`hit` with the verdict and evidence of `check` (its library's checked hit), or none."""
    if check is None:
        return replace(hit, verified=None, agreement=None, inliers=None)
    return replace(hit, verified=check.verified, agreement=check.agreement, inliers=check.inliers)


def merged_hits(answers: Sequence[SearchResults], wanted: int) -> list[SearchHit]:
    """The libraries' photos as one library ranks them: by score, or, where the tiles have a
    space of their own, by score within each space and then by rank across the spaces (a
    cosine in one space says nothing of one in the other)."""
    count = max(len(answer.spaces) for answer in answers)
    if not count:
        return _best_first([answer.hits for answer in answers])
    # a library that a filter left empty answers without its spaces
    rankings = [
        _best_first([answer.spaces[s] for answer in answers if answer.spaces]) for s in range(count)
    ]
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
    return _best_first(regions, _region_key)


def _notes(names: Sequence[str], answers: list[SearchResults]) -> list[str]:
    """Each library's notes; one that not every library gave names those that did."""
    givers: dict[str, list[str]] = {}
    for name, answer in zip(names, answers, strict=True):
        for note in dict.fromkeys(answer.notes):
            givers.setdefault(note, []).append(name)
    return [
        note if len(given) == len(names) else f"{note} (library {', '.join(given)})"
        for note, given in givers.items()
    ]


def _left_out(
    libraries: Sequence[Fanned | RemoteLibrary], ready: Sequence[Fanned | RemoteLibrary]
) -> list[str]:
    return [
        f"library {library.directory} has no photos yet; the others were searched"
        for library in libraries
        if library not in ready
    ]


def _identities(library: Fanned) -> Identities:
    return library.require_identity(), library.catalog.tile_identity()


def _require_one_encoder(libraries: Sequence[tuple[str, Identities]]) -> None:
    """One encoder, weights included, for the vectors and for the tiles: scores of two models
    do not compare."""
    first, kept = libraries[0]
    for name, other in libraries[1:]:
        if other != kept:
            theirs, ours = (
                " and tiles of ".join(i.describe() for i in pair if i) for pair in (other, kept)
            )
            raise QueryError(
                f"library {name} holds vectors of {theirs}, and library {first} of {ours}: "
                "scores of two encoders do not compare. Search them one at a time, or "
                "`searchapp reindex` one with the other's encoder"
            )
