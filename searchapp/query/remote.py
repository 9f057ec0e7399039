"""A library that `searchapp serve` serves on another machine, searched beside others
(fanout.py). The query travels, its words and an image's bytes; the machine that holds the
library embeds it, searches, and checks its own candidates' pixels. Photos and models stay
where they are: clip-retrieval's split of a thin client and servers that hold the indexes.

The query's and the answer's wire form lives here, for both ends (web/shard_routes.py serves).
"""

from __future__ import annotations

import base64
import binascii
import http.client
import json
import math
import os
import threading
import urllib.parse
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from datetime import datetime
from typing import Any, TypeVar

from searchapp.errors import QueryError
from searchapp.paths import from_stored, shown_address, stored
from searchapp.query.query_vectors import image_file
from searchapp.query.search import Query, SearchHit, SearchResults, Term
from searchapp.records import REGION_KINDS, EncoderIdentity, Filters, RegionHit

ROUTE = "api/shard/search"
# what a malformed answer raises as it is read (OverflowError and OSError: a date no calendar
# shows)
MALFORMED = (
    KeyError,
    TypeError,
    ValueError,
    AttributeError,
    RecursionError,
    OverflowError,
    OSError,
)
TOKEN_ENV = "SEARCHAPP_TOKEN"  # the token of servers whose address does not carry ?token=
CONNECT_S = 10.0  # a machine asleep, or a wrong address: a note after this long
READ_S = 120.0  # a server's first query loads its model and indexes: seconds, on a cold machine
IMAGE_LIMIT = 50 * 2**20  # bytes of a query image, here and in the web app's uploads
MAX_K = 10_000  # photos one answer may hold


class Unreachable(QueryError):
    """A library that did not answer: the others' answer stands, with a note."""


@dataclass(frozen=True)
class RemoteAnswer:
    results: SearchResults
    identity: EncoderIdentity | None  # None: the library has no photos yet
    tile_identity: EncoderIdentity | None


class RemoteLibrary:
    """The address `searchapp serve` printed: http://HOST:PORT/, with ?token=... where the
    server asks for one (or the token in $SEARCHAPP_TOKEN)."""

    def __init__(self, address: str):
        parts = urllib.parse.urlsplit(address)
        try:
            port = parts.port
        except ValueError:  # not a number, or past 65535
            port = -1
        if port == 0:  # no server listens there; None (not given) takes the scheme's
            port = -1
        try:
            hostname = parts.hostname or ""
            hostname.encode("idna")  # a name no resolver takes: refused here, in words
        except UnicodeError:
            hostname = ""
        if parts.scheme not in ("http", "https") or not hostname or port == -1:
            raise QueryError(f"--library {shown_address(address)}: an address is http://HOST:PORT/")
        given = urllib.parse.parse_qs(parts.query).get("token")
        self._token = given[0] if given else os.environ.get(TOKEN_ENV)
        self._secure, self._hostname = parts.scheme == "https", hostname
        self._port = port or (443 if self._secure else 80)  # an IPv6 literal's needs saying
        prefix = parts.path.rstrip("/")
        self._route = f"{prefix}/{ROUTE}"
        self.base = shown_address(f"{parts.scheme}://{parts.netloc}{prefix}/")
        self.directory = self.base  # as notes name a library
        # its photos' paths are shown as HOST:PORT:/path (the machine, then the path there)
        self.host = self.base.split("://", 1)[1].rstrip("/")

    def search(self, query: Query) -> RemoteAnswer:
        return self.ask(query_to_wire(query))

    def ask(self, wire: dict[str, Any]) -> RemoteAnswer:
        """The answer to a query in its wire form (fanout.py makes it once for every server)."""
        try:
            status, data = self._post(json.dumps(wire).encode())
        except (OSError, http.client.HTTPException) as exc:  # refused, reset, timed out
            reason = "timed out" if isinstance(exc, TimeoutError) else str(exc) or repr(exc)
            raise Unreachable(f"library {self.base} did not answer ({reason})") from None
        if status != 200:
            raise self._refusal(status, data)
        try:
            return answer_from_wire(json.loads(data), self.host)
        except MALFORMED as exc:
            raise Unreachable(f"library {self.base} answered in an unknown form ({exc})") from None

    def _post(self, body: bytes) -> tuple[int, bytes]:
        """One POST, with a short wait to connect and a long one to answer; no redirect is
        followed, so the token goes to this server only."""
        kind = http.client.HTTPSConnection if self._secure else http.client.HTTPConnection
        connection = kind(self._hostname, self._port, timeout=CONNECT_S)
        headers = {"Content-Type": "application/json"}
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        try:
            connection.connect()
            assert connection.sock is not None
            connection.sock.settimeout(READ_S)
            connection.request("POST", self._route, body, headers)
            response = connection.getresponse()
            return response.status, response.read()
        finally:
            connection.close()

    def _refusal(self, status: int, data: bytes) -> QueryError:
        try:
            message = str(json.loads(data)["error"])
        except (ValueError, KeyError, TypeError):
            message = f"HTTP {status}"
        if status == 401:
            return QueryError(
                f"library {self.base} needs its token: give the address `searchapp serve` "
                f"printed (it ends in ?token=...), or set ${TOKEN_ENV}"
            )
        if status == 404:
            return Unreachable(
                f"library {self.base} serves no fan-out search (is it a searchapp server, and "
                "as new as this one?)"
            )
        if status >= 500:
            return Unreachable(f"library {self.base} failed: {message}")
        return QueryError(f"library {self.base}: {message}")


class Asking(threading.Thread):
    """A library on another machine, asked in a thread of its own that never holds up the
    process's exit (Ctrl-C does not wait out a slow server): its answer, or what went wrong."""

    def __init__(self, library: RemoteLibrary, wire: dict[str, Any]):
        super().__init__(daemon=True, name=f"asking {library.base}")
        self.library, self.wire = library, wire
        self.answer: RemoteAnswer | None = None
        self.error: BaseException | None = None
        self.start()

    def run(self) -> None:
        try:
            self.answer = self.library.ask(self.wire)
        except Exception as exc:  # raised again in the thread that asked
            self.error = exc


def query_to_wire(query: Query) -> dict[str, Any]:
    """The query as JSON; an image term's file travels as its bytes."""
    terms: list[dict[str, Any]] = []
    for term in query.terms:
        wire: dict[str, Any] = {"source": term.source, "value": term.value, "weight": term.weight}
        if term.source == "image":
            path, stat = image_file(term.value)
            if stat.size > IMAGE_LIMIT:
                raise QueryError(
                    f"{path} is over the {IMAGE_LIMIT / 2**20:.0f} MiB a query image sent to "
                    "another machine may have; give a smaller copy"
                )
            with open(path, "rb") as file:
                wire["value"] = base64.b64encode(file.read()).decode("ascii")
            wire["name"] = stored(os.path.basename(path))  # any name, as JSON's UTF-8 takes
            wire["path"] = stored(path)  # the server's own photo, if it holds these bytes there
        terms.append(wire)
    return {
        "terms": terms,
        "filters": asdict(query.filters),
        "k": query.k,
        "kinds": list(query.kinds),
        "include_self": query.include_self,
        "verify": query.verify,
    }


QUERY_FIELDS = {"terms", "filters", "k", "kinds", "include_self", "verify"}
TERM_FIELDS = {"source", "value", "weight", "name", "path"}
# the type of each filter that is not None; formats are strings, tags tuples of strings
FILTER_TYPES: dict[str, type | tuple[type, ...]] = {
    "after": (int, float),
    "before": (int, float),
    "min_score": (int, float),
    "folder": str,
    "camera": str,
    "min_width": int,
    "min_pixels": int,
}


def query_from_wire(
    payload: Any, folder: str, holds: Callable[[str, bytes], bool]
) -> tuple[Query, dict[str, str]]:
    """The query a client sent, its images written into `folder`; and each image's file there
    with the name it had on the client's disk (for messages). An image the library `holds` at
    the client's path, with these bytes, is the query itself (a shared disk, or one machine):
    left out of the answer as one library leaves it out. A field this server does not know is
    refused: a newer client's filter, dropped, would widen the answer unseen."""
    names: dict[str, str] = {}
    try:
        _known(payload, QUERY_FIELDS, "query")
        terms = []
        for position, wire in enumerate(payload["terms"]):
            _known(wire, TERM_FIELDS, "term")
            value, itself = wire["value"], None
            if wire["source"] == "image":
                path = os.path.join(folder, f"query-{position}")
                data = base64.b64decode(value, validate=True)
                with open(path, "wb") as file:
                    file.write(data)
                names[path] = from_stored(str(wire.get("name") or "the query image"))
                value = path
                there = from_stored(wire["path"]) if isinstance(wire.get("path"), str) else None
                if there is not None and holds(there, data):
                    itself = there
            terms.append(Term(str(wire["source"]), str(value), float(wire["weight"]), itself))
        _known(payload["filters"], set(FILTER_TYPES) | {"formats", "tags"}, "filter")
        query = Query(
            terms=tuple(terms),
            filters=_filters(_rebuilt(Filters, payload["filters"])),
            k=int(payload["k"]),
            kinds=tuple(str(kind) for kind in payload["kinds"]),
            include_self=bool(payload["include_self"]),
            verify=bool(payload["verify"]),
        )
    except (KeyError, TypeError, ValueError, AttributeError, binascii.Error) as exc:
        raise QueryError(f"not a fan-out query ({type(exc).__name__}: {exc})") from None
    if not 1 <= query.k <= MAX_K:
        raise QueryError(f"k {query.k}: this server answers from 1 to {MAX_K} photos")
    if not query.kinds or not set(query.kinds) <= set(REGION_KINDS):
        raise QueryError(f"kinds {list(query.kinds)}: give some of {list(REGION_KINDS)}")
    return query, names


def _known(wire: Any, names: set[str], what: str) -> None:
    unknown = sorted(set(wire) - names)
    if unknown:
        raise ValueError(f"{what} fields this server does not know: {unknown}; update it")


def _filters(made: Filters) -> Filters:
    for name, kind in FILTER_TYPES.items():
        value = getattr(made, name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, kind)):
            raise TypeError(f"filter {name} is {value!r}")
    if not all(isinstance(f, str) for f in made.formats) or not all(
        isinstance(tag, tuple) and all(isinstance(n, str) for n in tag) for tag in made.tags
    ):
        raise TypeError("formats and tags are lists of names")
    return made


def answer_to_wire(
    results: SearchResults, identity: EncoderIdentity | None, tiles: EncoderIdentity | None
) -> dict[str, Any]:
    """The answer as JSON; a path that is not UTF-8 travels as the catalog stores it."""

    def travelling(record: Any) -> dict[str, Any]:
        return {**asdict(record), "path": stored(record.path)}

    return {
        "identity": asdict(identity) if identity else None,
        "tile_identity": asdict(tiles) if tiles else None,
        "mode": results.mode,
        "notes": [stored(note) for note in results.notes],  # shown where printed, once
        "checked": results.checked,
        "hits": [travelling(hit) for hit in results.hits],
        "spaces": [[travelling(hit) for hit in space] for space in results.spaces],
        "regions": [travelling(region) for region in results.region_hits],
    }


def answer_from_wire(payload: dict[str, Any], host: str) -> RemoteAnswer:
    """The answer of the server at `host`, its photos' paths written HOST:PORT:/path (the
    machine, then the path there). Fields it does not know are left out: a newer server's
    additions. Scores, dates and paths must be what they say."""

    def hit(wire: dict[str, Any]) -> SearchHit:
        return _checked(_rebuilt(SearchHit, _here(wire, host)))

    def region(wire: dict[str, Any]) -> RegionHit:
        return _checked(_rebuilt(RegionHit, _here(wire, host)))

    identity, tiles = payload["identity"], payload["tile_identity"]
    results = SearchResults(
        hits=[hit(wire) for wire in payload["hits"]],
        mode=str(payload["mode"]),
        notes=[from_stored(str(note)) for note in payload["notes"]],
        region_hits=[region(wire) for wire in payload["regions"]],
        checked=int(payload["checked"]),
        spaces=[[hit(wire) for wire in space] for space in payload["spaces"]],
    )
    return RemoteAnswer(
        results,
        _rebuilt(EncoderIdentity, identity) if identity else None,
        _rebuilt(EncoderIdentity, tiles) if tiles else None,
    )


def _here(wire: dict[str, Any], host: str) -> dict[str, Any]:
    if not isinstance(wire["path"], str):
        raise TypeError(f"path {wire['path']!r}")
    return {**wire, "path": f"{host}:{from_stored(wire['path'])}"}


Ranked = TypeVar("Ranked", SearchHit, RegionHit)


def _checked(hit: Ranked) -> Ranked:
    """What the merge sorts, hashes and prints, as it must be (a server's, not trusted): a
    score, a date a calendar shows, a region's kind and box, labels, and a check's verdict and
    evidence."""
    for value in (hit.score, hit.taken_at, *hit.bbox):
        if not _number(value):
            raise TypeError(f"scores, dates and boxes are numbers: {value!r}")
    if len(hit.bbox) != 4 or hit.kind not in REGION_KINDS:
        raise ValueError(f"a region {hit.kind!r} {hit.bbox!r} out of shape")
    datetime.fromtimestamp(hit.taken_at)  # ValueError, OverflowError or OSError: no such date
    if hit.time is not None and not _number(hit.time):
        raise TypeError(f"a time {hit.time!r}")
    if not (hit.label is None or isinstance(hit.label, str)) or not all(
        isinstance(pair, tuple) and len(pair) == 2 and isinstance(pair[0], str) and _number(pair[1])
        for pair in getattr(hit, "labels", ())
    ):
        raise TypeError(f"labels {hit.label!r} {getattr(hit, 'labels', ())!r}")
    if isinstance(hit, SearchHit):
        evidence_ok = (hit.agreement is None or _number(hit.agreement)) and (
            hit.inliers is None or (_number(hit.inliers) and isinstance(hit.inliers, int))
        )
        if hit.verified not in (None, "pixels", "geometry") or not evidence_ok:
            raise TypeError(f"a check of {hit.verified!r}, {hit.agreement!r}, {hit.inliers!r}")
    return hit


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


Record = TypeVar("Record")


def _rebuilt(kind: type[Record], wire: dict[str, Any]) -> Record:
    """A frozen record from its JSON, lists back to the tuples it holds; fields it does not
    know left out."""
    names = {field.name for field in fields(kind)}  # type: ignore[arg-type]
    return kind(**{name: _tupled(value) for name, value in wire.items() if name in names})


def _tupled(value: Any) -> Any:
    return tuple(_tupled(item) for item in value) if isinstance(value, list) else value
