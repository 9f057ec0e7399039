"""A library that `searchapp serve` serves on another machine, searched beside others
(fanout.py). The query travels, its words and an image's bytes; the machine that holds the
library embeds it, searches, and checks its own candidates' pixels. Photos and models stay
where they are: clip-retrieval's split of a thin client and servers that hold the indexes.

The query's and the answer's wire form lives here, for both ends (web/shard_routes.py serves).
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from typing import Any, TypeVar

from searchapp.errors import QueryError
from searchapp.query.search import Query, SearchHit, SearchResults, Term
from searchapp.records import EncoderIdentity, Filters, RegionHit

ROUTE = "api/shard/search"
TOKEN_ENV = "SEARCHAPP_TOKEN"  # the token of servers whose address does not carry ?token=
# a server's first query loads its model and indexes: seconds, on a cold machine
TIMEOUT_S = 60.0


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
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise QueryError(f"--library {address}: an address is http://HOST:PORT/")
        given = urllib.parse.parse_qs(parts.query).get("token")
        self._token = given[0] if given else os.environ.get(TOKEN_ENV)
        self.base = f"{parts.scheme}://{parts.netloc}{parts.path.rstrip('/')}/"
        self.directory = self.base  # as notes name a library
        self.host = parts.netloc  # its photos' paths are shown as HOST:PORT:/path

    def search(self, query: Query) -> RemoteAnswer:
        headers = {"Content-Type": "application/json"}
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        request = urllib.request.Request(
            self.base + ROUTE,
            data=json.dumps(query_to_wire(query)).encode(),
            headers=headers,
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
                payload = json.load(response)
        except urllib.error.HTTPError as exc:
            raise self._refusal(exc) from None
        except (OSError, ValueError) as exc:  # refused, reset, timed out; or not JSON
            reason = getattr(exc, "reason", None) or exc
            raise Unreachable(f"library {self.base} did not answer ({reason})") from None
        try:
            return answer_from_wire(payload, self.host)
        except (KeyError, TypeError, ValueError) as exc:
            raise Unreachable(f"library {self.base} answered in an unknown form ({exc})") from None

    def _refusal(self, exc: urllib.error.HTTPError) -> QueryError:
        try:
            message = json.load(exc).get("error") or exc.reason
        except (ValueError, AttributeError, OSError):
            message = exc.reason
        if exc.code == 401:
            return QueryError(
                f"library {self.base} needs its token: give the address `searchapp serve` "
                f"printed (it ends in ?token=...), or set ${TOKEN_ENV}"
            )
        if exc.code == 404:
            return Unreachable(
                f"library {self.base} serves no fan-out search (is it a searchapp server, and "
                "as new as this one?)"
            )
        if exc.code >= 500:
            return Unreachable(f"library {self.base} failed: {message}")
        return QueryError(f"library {self.base}: {message}")


def query_to_wire(query: Query) -> dict[str, Any]:
    """The query as JSON; an image term's file travels as its bytes."""
    terms: list[dict[str, Any]] = []
    for term in query.terms:
        wire: dict[str, Any] = {"source": term.source, "value": term.value, "weight": term.weight}
        if term.source == "image":
            with open(term.value, "rb") as file:  # validate() found it
                wire["value"] = base64.b64encode(file.read()).decode("ascii")
            wire["name"] = os.path.basename(term.value)
            wire["path"] = os.path.abspath(term.value)  # the server's own photo, if it holds it
        terms.append(wire)
    return {
        "terms": terms,
        "filters": asdict(query.filters),
        "k": query.k,
        "kinds": list(query.kinds),
        "include_self": query.include_self,
        "verify": query.verify,
    }


def query_from_wire(
    payload: Any, folder: str, holds: Callable[[str, bytes], bool]
) -> tuple[Query, dict[str, str]]:
    """The query a client sent, its images written into `folder`; and each image's file there
    with the name it had on the client's disk (for messages). An image the library `holds` at
    the client's path, with these bytes, is the query itself (a shared disk, or one machine):
    left out of the answer as one library leaves it out."""
    names: dict[str, str] = {}
    try:
        terms = []
        for position, wire in enumerate(payload["terms"]):
            value, itself = wire["value"], None
            if wire["source"] == "image":
                path = os.path.join(folder, f"query-{position}")
                data = base64.b64decode(value, validate=True)
                with open(path, "wb") as file:
                    file.write(data)
                names[path] = str(wire.get("name") or "the query image")
                value = path
                if isinstance(wire.get("path"), str) and holds(wire["path"], data):
                    itself = wire["path"]
            terms.append(Term(str(wire["source"]), str(value), float(wire["weight"]), itself))
        query = Query(
            terms=tuple(terms),
            filters=_rebuilt(Filters, payload["filters"]),
            k=int(payload["k"]),
            kinds=tuple(str(kind) for kind in payload["kinds"]),
            include_self=bool(payload["include_self"]),
            verify=bool(payload["verify"]),
        )
    except (KeyError, TypeError, ValueError, binascii.Error) as exc:
        raise QueryError(f"not a fan-out query ({type(exc).__name__}: {exc})") from None
    return query, names


def answer_to_wire(
    results: SearchResults, identity: EncoderIdentity | None, tiles: EncoderIdentity | None
) -> dict[str, Any]:
    return {
        "identity": asdict(identity) if identity else None,
        "tile_identity": asdict(tiles) if tiles else None,
        "mode": results.mode,
        "notes": results.notes,
        "checked": results.checked,
        "hits": [asdict(hit) for hit in results.hits],
        "spaces": [[asdict(hit) for hit in space] for space in results.spaces],
        "regions": [asdict(region) for region in results.region_hits],
    }


def answer_from_wire(payload: dict[str, Any], host: str) -> RemoteAnswer:
    """The answer of the server at `host`, its photos' paths written HOST:PORT:/path, as scp
    and rsync write a file on another machine."""

    def hit(wire: dict[str, Any]) -> SearchHit:
        return _rebuilt(SearchHit, {**wire, "path": f"{host}:{wire['path']}"})

    def region(wire: dict[str, Any]) -> RegionHit:
        return _rebuilt(RegionHit, {**wire, "path": f"{host}:{wire['path']}"})

    identity, tiles = payload["identity"], payload["tile_identity"]
    results = SearchResults(
        hits=[hit(wire) for wire in payload["hits"]],
        mode=str(payload["mode"]),
        notes=[str(note) for note in payload["notes"]],
        region_hits=[region(wire) for wire in payload["regions"]],
        checked=int(payload["checked"]),
        spaces=[[hit(wire) for wire in space] for space in payload["spaces"]],
    )
    return RemoteAnswer(
        results,
        EncoderIdentity(**identity) if identity else None,
        EncoderIdentity(**tiles) if tiles else None,
    )


Record = TypeVar("Record")


def _rebuilt(kind: type[Record], wire: dict[str, Any]) -> Record:
    """A frozen record from its JSON, lists back to the tuples it holds. Fields it does not
    know are left out: a newer server's additions."""
    names = {field.name for field in fields(kind)}  # type: ignore[arg-type]
    return kind(**{name: _tupled(value) for name, value in wire.items() if name in names})


def _tupled(value: Any) -> Any:
    return tuple(_tupled(item) for item in value) if isinstance(value, list) else value
