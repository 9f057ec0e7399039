"""`searchapp serve`: the web app over one library (searchapp.web), in this process."""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import os
import secrets
import socket
import urllib.parse
from typing import Any

from searchapp.console import Console
from searchapp.errors import UsageError

DEFAULT_PORT = 8765


def add_serve_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    serve = sub.add_parser(
        "serve",
        parents=[common],
        help="search and look at the library in a web browser",
        description="Serve a web page and a JSON API (schema at /openapi.json) over the "
        "library. It listens on 127.0.0.1 only, unless --host says otherwise; then every "
        "request needs a token (--token, or one generated and printed). The address it "
        "prints is also what `searchapp search --library ADDRESS` takes on another machine, "
        "to search this library beside its own.",
    )
    serve.add_argument(
        "folders",
        nargs="*",
        metavar="FOLDER",
        help="folders the page may index, besides those the library holds",
    )
    serve.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default %(default)s)"
    )
    serve.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help="port to listen on (default %(default)s)"
    )
    serve.add_argument("--token", help="the token requests must carry (default: none on loopback)")
    serve.add_argument("--open", action="store_true", help="open the page in the web browser")


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP by name: asyncio sets TCP_NODELAY only on such sockets, and without it every
    # answer on a kept-alive connection waited 40 ms for the client's delayed ACK
    listening = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    listening.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listening.bind((host, port))
    except OSError as exc:
        listening.close()
        raise UsageError(
            f"cannot listen on {host}:{port}: {exc.strerror}; pick another --port, or a --host "
            "this machine has"
        ) from None
    listening.listen(128)
    return listening


def cmd_serve(args: argparse.Namespace, console: Console) -> int:
    import uvicorn

    from searchapp.library import Library
    from searchapp.web.app import create_app

    if not 0 <= args.port < 65536:
        raise UsageError(f"--port {args.port}: give a port between 1 and 65535 (0: any free one)")
    for folder in args.folders:
        if not os.path.isdir(folder):
            raise UsageError(f"{folder} is no folder: give folders of photos the page may index")
    token = args.token
    if token is None and not _loopback(args.host):
        token = secrets.token_urlsafe(24)  # anyone on the network could read the library
    with Library(args.library, args.db, create=False) as library:
        for repair in library.check_indexes():
            console.note(f"searchapp: {repair}")
        listening = _listen(args.host, args.port)  # a taken port fails here, in words
        port = listening.getsockname()[1]
        shown_host = f"[{args.host}]" if ":" in args.host else args.host  # an IPv6 address
        if args.host in ("0.0.0.0", "::"):  # every address: others reach it by this machine's
            shown_host = socket.gethostname()  # name, which is what a fan-out's --library takes
        address = f"http://{shown_host}:{port}/"
        if token:  # quoted: a --token of the user's may hold + or &
            address += f"?token={urllib.parse.quote(token, safe='')}"
        print(f"searchapp: serving {library.directory} at {address} (Ctrl-C stops)", flush=True)
        if args.open:
            import webbrowser

            webbrowser.open(address)
        app = create_app(library, token=token, folders=args.folders)
        # uvicorn stops on Ctrl-C, then raises it again: that is a clean end here
        with contextlib.suppress(KeyboardInterrupt):
            uvicorn.Server(uvicorn.Config(app, log_level="warning")).run(sockets=[listening])
        console.note("searchapp: stopped")
    return 0
