"""The library's state (counts, failed files, low-quality photos, index runs) and index runs
started from the page, followed live as server-sent events."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Body, Request
from fastapi.responses import JSONResponse, StreamingResponse

if TYPE_CHECKING:
    from searchapp.library import Library
    from searchapp.web.index_runs import IndexRuns

library_router = APIRouter(prefix="/api")
POLL = 0.25  # seconds between looks at a run's events


def _library(request: Request) -> Library:
    library: Library = request.app.state.library
    return library


def _runs(request: Request) -> IndexRuns:
    runs: IndexRuns = request.app.state.index_runs
    return runs


def folders(request: Request) -> list[str]:
    """What the page may index: the library's folders and those given to `serve`."""
    given = [os.path.abspath(folder) for folder in request.app.state.folders]
    return sorted(set(given) | set(_library(request).folders()))


@library_router.get("/library")
def library_state(request: Request) -> dict[str, Any]:
    """Counts (as `stats --json`), the folders an index run may take, failed files with their
    reasons, photos kept out as low quality, and this server's index runs."""
    library = _library(request)
    return {
        "library": str(library.directory.absolute()),
        "stats": library.stats().as_dict(),
        "folders": folders(request),
        "failures": [{"path": f.path, "reason": f.reason} for f in library.failures()],
        "low_quality": [
            {"id": photo_id, "path": path, "why": why}
            for photo_id, path, why in library.low_quality()
        ],
        "runs": [run.summary() for run in _runs(request).runs.values()],
    }


@library_router.post("/index", status_code=202)
def start_index(
    request: Request,
    folder: Annotated[str, Body(embed=True, description="one of GET /api/library's folders")],
) -> JSONResponse:
    """Index a folder on a thread of the server; searches go on meanwhile."""
    run = _runs(request).start(os.path.abspath(folder), folders(request))
    body = {"run": run.id, "events": f"/api/index/{run.id}/events"}
    return JSONResponse(body, status_code=202)


@library_router.post("/index/{run_id}/stop")
def stop_index(request: Request, run_id: int) -> dict[str, Any]:
    """Stop a run as Ctrl-C would: what it committed stays, the next run does the rest."""
    return _runs(request).stop(run_id).summary()


@library_router.get("/index/{run_id}/events", response_class=StreamingResponse)
async def index_events(request: Request, run_id: int) -> StreamingResponse:
    """The run's events, from its start, as server-sent events: `progress` (stage, done,
    total, rate, eta_seconds), `failure` (path, reason), then `done` (the summary of
    `index --json`) or `error` (message)."""
    run = _runs(request).get(run_id)

    async def stream() -> AsyncIterator[str]:
        sent = 0
        while True:
            new, finished = run.since(sent)
            for event in new:
                yield f"event: {event['type']}\ndata: {json.dumps(event)}\n\n"
            sent += len(new)
            if (finished and not new) or await request.is_disconnected():
                return
            await asyncio.sleep(POLL)

    return StreamingResponse(
        stream(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"}
    )
