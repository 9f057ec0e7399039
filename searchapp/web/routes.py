"""The JSON API: search, photos by id, thumbnails, the library's figures.

Search answers with the JSON of `searchapp search --json`; each result adds its photo's "id",
its "thumb" URL and its "size" (displayed width and height, for drawing the region's box); a
video's hit also its "time" and best "moments", and a thumbnail of the frame at that time. Files
are reached only by photo id, through the catalog (searchapp.query.photos checks that the file
still holds the bytes that were indexed).
"""

from __future__ import annotations

import base64
import hashlib
import os
import tempfile
import threading
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, File, Form, Query, Request, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, Response

from searchapp.errors import PhotoNotFoundError, QueryError
from searchapp.ingest.regions import REGION_KINDS
from searchapp.query.filters import build_filters
from searchapp.query.remote import IMAGE_LIMIT
from searchapp.query.search import Query as SearchQuery
from searchapp.query.search import SearchResults, Term, search
from searchapp.query.terms import apply_weights, parse_weights
from searchapp.web.result_pages import Ranking, ResultPages

if TYPE_CHECKING:
    from searchapp.library import Library
    from searchapp.records import PhotoDetails

UPLOAD_LIMIT = IMAGE_LIMIT  # bytes of a query image
MAX_PAGE = 500  # results in one answer
DATE_SORTED = 1000  # sorted by date: the best this many, so that every page sorts the same set
KINDS = ("any", "scene", "object", "tile", "frame")
MEDIA_TYPES = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp", "GIF": "image/gif"}
VIDEO_TYPES = {
    "MP4": "video/mp4",
    "M4V": "video/mp4",
    "MOV": "video/quicktime",
    "WEBM": "video/webm",
    "MKV": "video/x-matroska",
    "AVI": "video/x-msvideo",
}
CACHED = {"Cache-Control": "private, max-age=3600"}

api_router = APIRouter(prefix="/api")
SEARCHING = threading.Lock()  # the Library loads its encoder and indexes lazily, once


def _library(request: Request) -> Library:
    library: Library = request.app.state.library
    return library


@dataclass(frozen=True)
class SearchForm:
    """The fields a search takes, from a query string (GET) or a form (POST)."""

    q: str | None = None
    like: list[str] | None = None
    like_id: list[int] | None = None
    minus: list[str] | None = None
    minus_like: list[str] | None = None
    minus_id: list[int] | None = None
    weights: str | None = None
    photo: int | None = None
    box: str | None = None
    k: int = 50
    offset: int = 0
    kind: str = "any"
    after: str | None = None
    before: str | None = None
    folder: str | None = None
    camera: str | None = None
    min_width: int | None = None
    min_pixels: int | None = None
    format: str | None = None
    min_score: float | None = None
    sort: str = "score"
    include_self: bool = False
    verify: bool = True
    inline: int = 0  # thumbnails of this size already made come inside the answer


def _box(text: str) -> tuple[int, int, int, int]:
    try:
        x0, y0, x1, y1 = (round(float(part)) for part in text.split(","))
    except ValueError:
        raise QueryError(
            f"box {text!r}: give four numbers, x0,y0,x1,y1 in the photo's pixels"
        ) from None
    return x0, y0, x1, y1


def _terms(library: Library, form: SearchForm, query_image: str | None) -> tuple[Term, ...]:
    """In the order weights apply: words, the image, liked photos, then what is subtracted."""
    terms = [Term("text", form.q)] if form.q else []
    if query_image is not None:
        terms.append(Term("image", query_image))
    terms += [Term("like", path) for path in form.like or []]
    terms += [Term("like", library.photo(photo_id).path) for photo_id in form.like_id or []]
    terms += [Term("text", words, -1.0) for words in form.minus or []]
    terms += [Term("like", path, -1.0) for path in form.minus_like or []]
    terms += [Term("like", library.photo(photo_id).path, -1.0) for photo_id in form.minus_id or []]
    return apply_weights(terms, parse_weights(form.weights) if form.weights else None)


def _query(library: Library, form: SearchForm, query_image: str | None) -> SearchQuery:
    if form.kind not in KINDS:
        raise QueryError(f"kind {form.kind!r}: valid kinds are {', '.join(KINDS)}")
    if form.sort not in ("score", "date"):
        raise QueryError(f"sort {form.sort!r}: sort by score or by date")
    if form.offset < 0 or not 1 <= form.k <= MAX_PAGE:
        raise QueryError(
            f"offset {form.offset} and k {form.k}: k from 1 to {MAX_PAGE}, offset at least 0"
        )
    terms = _terms(library, form, query_image)
    if not terms:
        raise QueryError(
            "nothing to search for: give q (words), like or like_id (photos of the library), "
            "an image (POST), or photo and box (a part of one)"
        )
    return SearchQuery(
        terms=terms,
        filters=build_filters(
            after=form.after,
            before=form.before,
            folder=form.folder,
            camera=form.camera,
            min_width=form.min_width,
            min_pixels=form.min_pixels,
            formats=form.format,
            min_score=form.min_score,
        ),
        k=form.offset + form.k,  # ResultPages asks for more
        kinds=REGION_KINDS if form.kind == "any" else (form.kind,),
        include_self=form.include_self,
        verify=form.verify,
    )


def _answer(library: Library, ranking: Ranking, form: SearchForm) -> dict[str, Any]:
    results = ranking.results
    hits = list(results)
    if form.sort == "date":
        hits.sort(key=lambda hit: (-hit.taken_at, hit.path))
    page = hits[form.offset : form.offset + form.k]
    ids = [hit.image_id for hit in page if hit.image_id is not None]
    # a video's card shows the frame at its hit's time
    times = {h.image_id: h.time for h in page if h.image_id is not None and h.time is not None}
    made = library.cached_thumbnails(ids, form.inline, times) if form.inline else {}
    shown = []
    for hit in page:
        entry = hit.as_dict()
        if hit.image_id is not None:
            at = f"?time={hit.time}" if hit.time is not None else ""
            entry |= {
                "id": hit.image_id,
                "thumb": f"/api/photos/{hit.image_id}/thumb{at}",
                "size": list(hit.photo_size),
            }
            if hit.image_id in made:  # fifty requests fewer for a first screen
                data = base64.b64encode(made[hit.image_id]).decode()
                entry["thumb_data"] = "data:image/jpeg;base64," + data
        shown.append(entry)
    return {
        "mode": results.mode,
        "checked": results.checked,
        "notes": results.notes,
        "results": shown,
        "total": len(hits) if ranking.complete or form.sort == "date" else None,
        "estimate": ranking.estimate,
        "ranking": ranking.id,
    }


def _run(
    request: Request, form: SearchForm, query_image: str | None, shown_as: str, digest: str
) -> dict[str, Any]:
    """Search, or take the page from the query's kept ranking; a query image's temporary path
    in a message becomes the name the user knows."""
    library = _library(request)
    pages: ResultPages = request.app.state.result_pages
    query = _query(library, form, query_image)
    # one ranking serves every page of a query, until the library changes
    unpaged = replace(form, offset=0, k=1, sort="score")
    key = (library.catalog.vector_generation(), digest, repr(unpaged))
    need = DATE_SORTED if form.sort == "date" else form.offset + form.k

    def run(k: int) -> SearchResults:
        with SEARCHING:
            return search(library, replace(query, k=k))

    def estimate(results: SearchResults) -> int | None:
        """A search by example ranks every photo that passes the filters: the page can size its
        grid for all of them at once, and a jump far down fetches just that page."""
        if results.mode != "vector" or query.filters.min_score is not None:
            return None  # labels match some photos; a cut-off drops an unknown number
        excluded = sum(1 for term in query.terms if term.source == "like" and term.weight > 0)
        counted = pages.photo_count(
            (key[0], repr(query.filters), query.kinds),
            lambda: library.photo_count(query.filters, query.kinds),
        )
        return max(0, counted - excluded)

    try:
        ranking = pages.ranking(key, need, run, estimate)
    except QueryError as exc:
        if query_image is None:
            raise
        message = str(exc).replace(f"query image {query_image}", shown_as)
        raise QueryError(message.replace(query_image, shown_as)) from None
    return _answer(library, ranking, form)


def _search_with_bytes(
    request: Request, form: SearchForm, data: bytes | None, name: str
) -> dict[str, Any]:
    library = _library(request)
    if data is None and form.photo is not None:
        if not form.box:
            raise QueryError("photo given without box: say which part, box=x0,y0,x1,y1")
        data, name = (
            library.region_jpeg(form.photo, _box(form.box)),
            f"the box on photo {form.photo}",
        )
    if data is None:
        return _run(request, form, None, "", "")
    with tempfile.TemporaryDirectory(prefix="searchapp-query-") as folder:
        path = os.path.join(folder, "query")
        with open(path, "wb") as file:
            file.write(data)
        return _run(request, form, path, name, hashlib.blake2b(data, digest_size=16).hexdigest())


@api_router.get("/search")
def search_get(
    request: Request,
    q: str | None = None,
    like: Annotated[list[str] | None, Query()] = None,
    like_id: Annotated[list[int] | None, Query()] = None,
    minus: Annotated[list[str] | None, Query()] = None,
    minus_like: Annotated[list[str] | None, Query()] = None,
    minus_id: Annotated[list[int] | None, Query()] = None,
    weights: str | None = None,
    photo: int | None = None,
    box: str | None = None,
    k: int = 50,
    offset: int = 0,
    kind: str = "any",
    after: str | None = None,
    before: str | None = None,
    folder: str | None = None,
    camera: str | None = None,
    min_width: int | None = None,
    min_pixels: int | None = None,
    format: str | None = None,
    min_score: float | None = None,
    sort: str = "score",
    include_self: bool = False,
    verify: bool = True,
    inline: int = 0,
) -> dict[str, Any]:
    """Search by words (`q`), indexed photos (`like` paths, `like_id` ids), a part of an indexed
    photo (`photo` and `box`, x0,y0,x1,y1 in its displayed pixels), with words (`minus`) or
    photos (`minus_like` paths, `minus_id` ids) subtracted. Filters as the CLI's flags. With
    `inline=SIZE`, each result whose thumbnail of that size is made already carries it as
    `thumb_data` (a data URL)."""
    fields = dict(locals())
    del fields["request"]
    return _search_with_bytes(request, SearchForm(**fields), None, "")


@api_router.post("/search")
async def search_post(
    request: Request,
    image: Annotated[UploadFile | None, File()] = None,
    q: Annotated[str | None, Form()] = None,
    like: Annotated[list[str] | None, Form()] = None,
    like_id: Annotated[list[int] | None, Form()] = None,
    minus: Annotated[list[str] | None, Form()] = None,
    minus_like: Annotated[list[str] | None, Form()] = None,
    minus_id: Annotated[list[int] | None, Form()] = None,
    weights: Annotated[str | None, Form()] = None,
    k: Annotated[int, Form()] = 50,
    offset: Annotated[int, Form()] = 0,
    kind: Annotated[str, Form()] = "any",
    after: Annotated[str | None, Form()] = None,
    before: Annotated[str | None, Form()] = None,
    folder: Annotated[str | None, Form()] = None,
    camera: Annotated[str | None, Form()] = None,
    min_width: Annotated[int | None, Form()] = None,
    min_pixels: Annotated[int | None, Form()] = None,
    format: Annotated[str | None, Form()] = None,
    min_score: Annotated[float | None, Form()] = None,
    sort: Annotated[str, Form()] = "score",
    include_self: Annotated[bool, Form()] = False,
    verify: Annotated[bool, Form()] = True,
    inline: Annotated[int, Form()] = 0,
) -> dict[str, Any]:
    """Search with an uploaded image (multipart field `image`), plus the same fields as GET."""
    fields = dict(locals())
    del fields["request"], fields["image"]
    data, name = None, ""
    if image is not None:
        limit = request.app.state.upload_limit
        data = await image.read(limit + 1)
        name = f"the uploaded image {image.filename or ''}".rstrip()
        if len(data) > limit:
            raise QueryError(
                f"{name} is over the {limit / 2**20:.0f} MiB limit; send a smaller one"
            )
    return await run_in_threadpool(_search_with_bytes, request, SearchForm(**fields), data, name)


def _camera(make: str | None, model: str | None) -> str | None:
    """ "Canon IXUS 155", not "Canon Canon IXUS 155": many models name their make."""
    if make and model and model.lower().startswith(make.lower()):
        return model
    return " ".join(part for part in (make, model) if part) or None


def photo_json(photo: PhotoDetails) -> dict[str, Any]:
    meta = photo.meta
    return {
        "id": photo.id,
        "path": photo.path,
        "bytes": photo.size,
        "size": [meta.width, meta.height],
        "format": meta.format,
        "taken_at": meta.taken_at,
        "taken_source": meta.taken_source,
        "camera": _camera(meta.camera_make, meta.camera_model),
        "gps": [meta.gps_lat, meta.gps_lon] if meta.gps_lat is not None else None,
        "quality": {
            "blur": meta.blur,
            "brightness": meta.brightness,
            "contrast": meta.contrast,
            "flag": meta.quality_flag,
        },
        "set_aside": photo.set_aside,
        "regions_pending": meta.regions_pending,
        "labels": [{"name": name, "prob": round(prob, 4)} for name, prob in photo.labels],
        "video": (
            {"duration": meta.duration, "frame_rate": meta.frame_rate, "codec": meta.codec}
            if meta.is_video
            else None
        ),
        "regions": [
            {
                "id": r.id,
                "kind": r.kind,
                "bbox": list(r.bbox),
                "label": r.label,
                "score": r.label_score,
                "time": r.time,
            }
            for r in photo.regions
        ],
        "thumb": f"/api/photos/{photo.id}/thumb",
        "image": f"/api/photos/{photo.id}/image",
    }


@api_router.get("/photos/{photo_id}")
def photo(request: Request, photo_id: int) -> dict[str, Any]:
    """A photo's metadata, labels and regions (boxes in its displayed pixels)."""
    return photo_json(_library(request).photo(photo_id))


@api_router.get("/photos/{photo_id}/thumb", response_class=Response)
def thumb(
    request: Request, photo_id: int, size: int | None = None, time: float | None = None
) -> Response:
    """A JPEG thumbnail, EXIF-oriented, its longer side 160, 320 (default), 640 or 1280 px; a
    video's is the frame it shows at `time` seconds (default its first)."""
    library = _library(request)
    try:
        data = library.thumbnail(photo_id, size, time).read_bytes()
    except FileNotFoundError:  # the cache was emptied meanwhile: made again
        data = library.thumbnail(photo_id, size, time).read_bytes()
    return Response(data, media_type="image/jpeg", headers=CACHED)


@api_router.get("/photos/{photo_id}/image", response_class=Response)
def image(request: Request, photo_id: int) -> Response:
    """The photo's file, as indexed. A video's is served in the byte ranges a player asks for
    (HTTP Range, answered 206), so that it can seek without fetching the whole file."""
    library = _library(request)
    found = library.photo(photo_id)
    if found.meta.is_video:
        st = library.video_stat(found)
        media_type = VIDEO_TYPES.get(found.meta.format, "application/octet-stream")
        return FileResponse(found.path, media_type=media_type, headers=CACHED, stat_result=st)
    photo, data = library.photo_bytes(photo_id)
    media_type = MEDIA_TYPES.get(photo.meta.format, "application/octet-stream")
    return Response(data, media_type=media_type, headers=CACHED)


@api_router.get("/rankings/{ranking_id}/photos/{photo_id}/regions")
def region_scores(request: Request, ranking_id: int, photo_id: int) -> dict[str, Any]:
    """Every region of a photo scored against the query of a search (its answer's
    "ranking"), as the search scored regions: where in the photo the query matched. For a
    video, each sampled frame with its "time": when in the video it matched."""
    pages: ResultPages = request.app.state.result_pages
    ranking = pages.by_id(ranking_id)
    if ranking is None:
        raise PhotoNotFoundError(f"search {ranking_id} is no longer kept here; search again")
    vector = ranking.results.vector
    if vector is None:
        raise QueryError("that search matched words to labels; it scored no regions")
    library = _library(request)
    scores = library.region_scores(photo_id, vector, ranking.results.tile_vector)
    regions = library.photo(photo_id).regions
    return {
        "regions": [
            {
                "id": r.id,
                "kind": r.kind,
                "bbox": list(r.bbox),
                "label": r.label,
                "score": round(scores[r.id], 6),
                "time": r.time,  # a video's frame: its scores over time
            }
            for r in regions
            if r.id in scores
        ]
    }


# HEAD as GET, without a second entry in the schema
for _path, _route in (("/photos/{photo_id}/thumb", thumb), ("/photos/{photo_id}/image", image)):
    api_router.add_api_route(_path, _route, methods=["HEAD"], include_in_schema=False)


@api_router.get("/stats")
def stats(request: Request) -> dict[str, Any]:
    """What `searchapp stats --json` prints."""
    library = _library(request)
    return {"library": str(library.directory.absolute()), **library.stats().as_dict()}
