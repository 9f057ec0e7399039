"""The route through which another machine's `searchapp search --library http://...` searches
this library beside its others (query/fanout.py, query/remote.py)."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool

from searchapp.errors import QueryError
from searchapp.ingest.load import content_hash
from searchapp.query import remote
from searchapp.query.search import SearchResults, search
from searchapp.web.routes import SEARCHING

if TYPE_CHECKING:
    from searchapp.library import Library

shard_router = APIRouter(prefix="/api/shard")


@shard_router.post("/search")
async def shard_search(request: Request) -> dict[str, Any]:
    """A query in remote.py's wire form (JSON; an image term carries its bytes in base64):
    this library's answer, each space's ranking where tiles have a space of their own, and
    the encoder its scores come from."""
    images = request.app.state.upload_limit
    limit = 2 * images * 4 // 3 + 2**16  # two images at most, in base64, and the rest
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise QueryError(
                f"the query's images are over {2 * images / 2**20:.0f} MiB together; send "
                "smaller ones"
            )
    try:
        payload = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise QueryError(f"the query is not JSON: {exc}") from None
    return await run_in_threadpool(_answer, request, payload)


def _answer(request: Request, payload: Any) -> dict[str, Any]:
    library = request.app.state.library
    identity = library.encoder_identity
    with tempfile.TemporaryDirectory(prefix="searchapp-query-") as folder:
        query, names = remote.query_from_wire(payload, folder, _holder(library))
        if identity is None:  # no photos yet: the client leaves this library out, with a note
            return remote.answer_to_wire(SearchResults([], "vector"), None, None)
        try:
            with SEARCHING:
                results = search(library, query, spaces_too=True)
        except QueryError as exc:  # the query image's temporary file, by the client's name
            message = str(exc)
            for path, name in names.items():
                message = message.replace(path, name)
            raise QueryError(message) from None
    return remote.answer_to_wire(results, identity, library.catalog.tile_identity())


def _holder(library: Library) -> Callable[[str, bytes], bool]:
    def holds(path: str, data: bytes) -> bool:
        known = library.catalog.image_by_path(path)
        return known is not None and known.content_hash == content_hash(data)

    return holds
