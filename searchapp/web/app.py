"""The web app: FastAPI routes over one open Library, behind the checks every request passes.

- A token, when the server listens beyond the loopback: `Authorization: Bearer TOKEN`, or the
  cookie the page gets from opening `/?token=TOKEN` once.
- A request that changes state is a POST, and a browser's POST must come from this very origin
  (its Origin header), so that another site open in the same browser cannot move photos.
- Every answer carries a Content-Security-Policy that allows this origin's scripts and nothing
  else; the page needs no CDN.
- Errors are JSON, `{"error": message}`, with the message the CLI would print.
"""

from __future__ import annotations

import hmac
from pathlib import Path
from typing import TYPE_CHECKING

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError, StarletteHTTPException
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles

from searchapp.errors import (
    JournalError,
    LibraryBusyError,
    PhotoChangedError,
    PhotoNotFoundError,
    SearchappError,
    UsageError,
)
from searchapp.web.dupes_routes import dupes_router
from searchapp.web.index_runs import IndexRuns
from searchapp.web.library_routes import library_router
from searchapp.web.map_routes import map_router
from searchapp.web.result_pages import ResultPages
from searchapp.web.routes import UPLOAD_LIMIT, api_router
from searchapp.web.shard_routes import shard_router

if TYPE_CHECKING:
    from collections.abc import Sequence

    from starlette.types import ASGIApp, Message, Receive, Scope, Send

    from searchapp.library import Library

STATIC = Path(__file__).parent / "static"
TOKEN_COOKIE = "searchapp_token"
CSP = (
    "default-src 'self'; img-src 'self' data: blob:; style-src 'self'; script-src 'self'; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; "
    "form-action 'self'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
STATUS = (  # most specific first
    (PhotoNotFoundError, 404),
    (PhotoChangedError, 410),
    (LibraryBusyError, 409),
    (JournalError, 400),
    (UsageError, 400),
    (SearchappError, 500),
)


def error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=SECURITY_HEADERS)


def _status_of(exc: SearchappError) -> int:
    return next(status for kind, status in STATUS if isinstance(exc, kind))


def _token_of(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip()
    return request.query_params.get("token") or request.cookies.get(TOKEN_COOKIE)


def _same_origin(request: Request) -> bool:
    """A browser names the page a POST comes from; scripts (curl, Python) send no Origin."""
    origin = request.headers.get("origin")
    if origin is None:
        return True
    host = request.headers.get("host", "")
    return origin in (f"http://{host}", f"https://{host}")


class Guard:
    """The checks of every request, as plain ASGI: Starlette's @middleware("http") wrapper cost
    each thumbnail of a first screen a few milliseconds more on 2 cores."""

    def __init__(self, app: ASGIApp, token: str | None):
        self.app = app
        self.token = token

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        given = _token_of(request)
        refused = None
        if self.token is not None and not (given and hmac.compare_digest(given, self.token)):
            refused = error(
                401,
                "this server needs its token: open the address `searchapp serve` printed "
                "(it ends in ?token=...), or send `Authorization: Bearer TOKEN`",
            )
        elif request.method not in ("GET", "HEAD") and not _same_origin(request):
            refused = error(403, "a page from another site may not change this library")
        if refused is not None:
            await refused(scope, receive, send)
            return
        # the page's own requests (thumbnails, API calls) then carry the token as a cookie
        set_cookie = self.token is not None and request.query_params.get("token") == self.token

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers += [(k.lower().encode(), v.encode()) for k, v in SECURITY_HEADERS.items()]
                if set_cookie:
                    cookie = f"{TOKEN_COOKIE}={self.token}; HttpOnly; SameSite=strict; Path=/"
                    headers.append((b"set-cookie", cookie.encode()))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


def create_app(
    library: Library,
    *,
    token: str | None = None,
    upload_limit: int = UPLOAD_LIMIT,
    folders: Sequence[str] = (),
) -> FastAPI:
    """The app for one open library. With `token`, every request must carry it; `folders`
    may be indexed from the page, besides those the library holds."""
    app = FastAPI(
        title="searchapp",
        summary="Search, look at and clean up a photo library.",
        docs_url=None,  # Swagger's page loads from a CDN; the schema is at /openapi.json
        redoc_url=None,
    )
    app.state.library = library
    app.state.upload_limit = upload_limit
    app.state.folders = list(folders)
    app.state.index_runs = IndexRuns(library)
    app.state.result_pages = ResultPages()

    app.add_middleware(Guard, token=token)

    @app.exception_handler(SearchappError)
    async def searchapp_error(_request: Request, exc: SearchappError) -> JSONResponse:
        return error(_status_of(exc), str(exc))

    @app.exception_handler(RequestValidationError)
    async def bad_request(_request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = []
        for problem in exc.errors():
            where = ".".join(str(part) for part in problem.get("loc", ())[1:]) or "request"
            problems.append(f"{where}: {problem.get('msg', 'invalid')}")
        return error(400, "; ".join(problems))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 404:
            return error(404, f"no such page or route: {request.url.path}")
        return error(exc.status_code, str(exc.detail))

    app.include_router(api_router)
    app.include_router(dupes_router)
    app.include_router(library_router)
    app.include_router(map_router)
    app.include_router(shard_router)

    @app.api_route("/", methods=["GET", "HEAD"], include_in_schema=False)
    @app.api_route("/dupes", methods=["GET", "HEAD"], include_in_schema=False)
    @app.api_route("/library", methods=["GET", "HEAD"], include_in_schema=False)
    @app.api_route("/map", methods=["GET", "HEAD"], include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")  # files only, no listing
    return app
