"""The map in the web app: the same points, colours and layout as `searchapp map`'s file, with
thumbnails served by the app instead of embedded."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Request

from searchapp.web.map_page import payload

if TYPE_CHECKING:
    from searchapp.library import Library

map_router = APIRouter(prefix="/api")
COLOURS = ("folder", "date", "label", "cluster", "camera")


@map_router.get("/map")
def collection_map(request: Request, kind: str = "scene", colour: str = "folder") -> dict[str, Any]:
    """Every region of a kind laid out in 2-D (the library's stored layout, new photos placed
    beside their neighbours), coloured by folder, date, label, cluster or camera."""
    from searchapp.errors import UsageError

    if colour not in COLOURS:
        raise UsageError(f"colour {colour!r}: choose from {', '.join(COLOURS)}")
    library: Library = request.app.state.library
    points = library.map_points(kind, with_clusters=colour == "cluster")
    return payload(points, colour, {}, for_web=True)
