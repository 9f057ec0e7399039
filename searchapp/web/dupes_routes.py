"""The duplicate routes: every group with its evidence, moving the extra copies away (journalled,
as `searchapp dupes --move-to DIR --apply` does) and putting them back from the journal."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Body, Request
from fastapi.responses import Response

from searchapp.dupes.find import DEFAULT_TIERS, DupeOptions
from searchapp.dupes.report import report_dict
from searchapp.errors import UsageError

if TYPE_CHECKING:
    from searchapp.dupes.moves import MoveOutcome
    from searchapp.library import Library

SET_ASIDE = "~/searchapp-set-aside"  # where the page offers to move copies; the CLI's example
dupes_router = APIRouter(prefix="/api/dupes")
_CHECKING = threading.Lock()  # one duplicate search at a time: it uses every core


def _library(request: Request) -> Library:
    library: Library = request.app.state.library
    return library


def _moves(outcome: MoveOutcome) -> dict[str, Any]:
    return {
        "moved": [{"from": m.source, "to": m.target} for m in outcome.moved],
        "not_moved": [{"from": m.source, "to": m.target, "why": why} for m, why in outcome.skipped],
        "journal": str(outcome.journal) if outcome.journal else None,
    }


def _report(request: Request, tier: str) -> dict[str, Any]:
    """The library's duplicate report, kept until the library's vectors change (an index run, a
    move): a viewer asks for one photo's copies many times."""
    library = _library(request)
    options = DupeOptions(tiers=tuple(part.strip() for part in tier.split(",") if part.strip()))
    with _CHECKING:
        key = (library.catalog.vector_generation(), options.tiers)
        kept = getattr(request.app.state, "dupes_report", None)
        if kept is not None and kept[0] == key:
            return dict(kept[1])
        library.backfill_hashes()
        report = report_dict(library.dupes(options))
        request.app.state.dupes_report = (key, report)
    return dict(report)


@dupes_router.get("")
def dupes(request: Request, tier: str = ",".join(DEFAULT_TIERS)) -> dict[str, Any]:
    """Every duplicate group (`searchapp dupes --json`): its photos, the one to keep and why,
    each pair's tier and evidence, the bytes moving the others would free, and whether the
    pixels confirmed every pair ("confirmed")."""
    return {"move_to": str(Path(SET_ASIDE).expanduser()), **_report(request, tier)}


@dupes_router.get("/of/{photo_id}")
def copies_of(request: Request, photo_id: int) -> dict[str, Any]:
    """The duplicate group a photo is in, if any (default tiers)."""
    path = _library(request).photo(photo_id).path
    groups = _report(request, ",".join(DEFAULT_TIERS))["groups"]
    return {"groups": [group for group in groups if path in group["paths"]]}


@dupes_router.get("/difference", response_class=Response)
def difference(request: Request, a: int, b: int) -> Response:
    """Photo `b` aligned onto photo `a` and their difference (JPEG): black where the pixels
    agree, bright where an edit changed them, blue where `b` does not cover `a`."""
    return Response(_library(request).difference_image(a, b), media_type="image/jpeg")


@dupes_router.post("/move")
def move(
    request: Request,
    ids: Annotated[list[int], Body(description="the photos to move away")],
    folder: Annotated[str, Body(description="where to; each keeps its path below it")] = SET_ASIDE,
) -> dict[str, Any]:
    """Move these photos below `folder`; the answer names the journal that undoes it."""
    if not ids:
        raise UsageError("no photos to move: give their ids")
    library = _library(request)
    paths = [library.photo(photo_id).path for photo_id in ids]
    return _moves(library.move_duplicates(paths, Path(folder).expanduser()))


@dupes_router.post("/undo")
def undo(
    request: Request,
    journal: Annotated[str, Body(embed=True, description="the journal a move answered with")],
) -> dict[str, Any]:
    """Put the photos of a move back where they were."""
    return _moves(_library(request).undo_moves(Path(journal).expanduser()))
