"""`searchapp search`: words, example images, indexed photos, weighted mixes, filters.

Terms keep the order they are given on the command line (the positional text first), and
--weights applies to them in that order:

    searchapp search "beach" --image ref.jpg --minus people --weights 1,0.5,0.7
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from typing import Any

from searchapp.cli_args import device_flag
from searchapp.console import Console, table
from searchapp.errors import UsageError
from searchapp.paths import is_address, listed


class _TermAction(argparse.Action):
    """Collect --text/--image/--like/--minus in command-line order."""

    def __call__(self, parser: Any, namespace: Any, values: Any, option_string: Any = None) -> None:
        ordered = list(getattr(namespace, "terms", None) or [])
        ordered.append((self.const, values))
        namespace.terms = ordered


def add_search_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    search = sub.add_parser(
        "search",
        parents=[common],
        help="find photos by words, example images or indexed photos",
        description="Find photos by words, example images or indexed photos, or a weighted mix: "
        'searchapp search "beach" --image ref.jpg --minus people --weights 1,0.5,0.7. '
        "Terms keep their command-line order (the positional TEXT first); --weights follows it.",
    )
    search.add_argument("query", nargs="?", metavar="TEXT", help="what to look for, in words")
    terms = search.add_argument_group("query terms (combine freely; weights follow their order)")
    for flag, source, helptext in (
        ("--text", "text", "words (same as the positional TEXT)"),
        ("--image", "image", "an image file on disk"),
        ("--like", "like", "a photo already in the library: its stored vector is used"),
        ("--minus", "minus", "subtract this: an image file if one exists at that path, else words"),
    ):
        terms.add_argument(
            flag, action=_TermAction, const=source, dest="terms", metavar="X", help=helptext
        )
    terms.add_argument("--weights", metavar="W,W,...", help="one positive weight per term")
    device_flag(
        terms, "cpu", ": a query encodes one image or a few words, done before a GPU has started"
    )
    terms.add_argument(
        "--include-self", action="store_true", help="keep the query photos in the results"
    )
    filters = search.add_argument_group("filters (never cost results)")
    filters.add_argument("--after", metavar="DATE", help="taken on or after (YYYY-MM-DD)")
    filters.add_argument("--before", metavar="DATE", help="taken before (YYYY-MM-DD)")
    filters.add_argument("--folder", metavar="DIR", help="only photos under this folder")
    filters.add_argument("--camera", metavar="NAME", help="camera make or model contains this")
    filters.add_argument("--min-width", type=int, metavar="PX", help="at least this wide")
    filters.add_argument("--min-pixels", type=int, metavar="N", help="at least this many pixels")
    filters.add_argument("--format", metavar="FMT,...", help="e.g. jpeg,png,heif")
    filters.add_argument("--min-score", type=float, metavar="S", help="drop hits scoring below S")
    filters.add_argument(
        "--tag",
        action="append",
        metavar="TAG",
        help="only photos tagged so (their labels; a CLIP library's zero-shot tags); repeat to "
        "require several",
    )
    terms.add_argument(
        "--kind",
        default="any",
        choices=("any", "scene", "object", "tile", "frame"),
        help="match only this region kind (default any: the best region of each photo or video "
        "wins); scene: photos only; frame: videos only",
    )
    terms.add_argument(
        "--no-verify",
        action="store_true",
        help="skip the geometric re-ranking of an image query's top 10 (ORB + RANSAC)",
    )
    output = search.add_argument_group("output")
    output.add_argument("-k", type=int, default=10, help="how many photos (default 10)")
    output.add_argument(
        "--sort",
        choices=("score", "uniqueness", "representativeness", "outlier"),
        default="score",
        help="order: by the query's score (default), or by the photo's uniqueness or "
        "representativeness (`searchapp outliers`); without a query, every photo that passes "
        "the filters",
    )
    shape = output.add_mutually_exclusive_group()
    shape.add_argument("--json", action="store_true", help="JSON output")
    shape.add_argument(
        "--paths-only",
        action="store_true",
        help="one path per line, for pipes (a control character or backslash escaped)",
    )
    shape.add_argument(
        "--null",
        "-0",
        action="store_true",
        help="the paths exactly, each ended by a NUL byte, for xargs -0",
    )
    output.add_argument(
        "--regions", action="store_true", help="list the best region hits, not aggregated"
    )


def _query_from_args(args: argparse.Namespace) -> Any:
    from searchapp.ingest.regions import REGION_KINDS
    from searchapp.query.filters import build_filters
    from searchapp.query.search import Query, Term
    from searchapp.query.terms import apply_weights, minus_term, parse_weights

    terms = [Term("text", args.query)] if args.query is not None else []
    for source, value in args.terms or []:
        terms.append(minus_term(value) if source == "minus" else Term(source, value))
    weights = parse_weights(args.weights) if args.weights else None
    return Query(
        terms=apply_weights(terms, weights),
        filters=build_filters(
            after=args.after,
            before=args.before,
            folder=args.folder,
            camera=args.camera,
            min_width=args.min_width,
            min_pixels=args.min_pixels,
            formats=args.format,
            min_score=args.min_score,
            tags=args.tag,
        ),
        k=args.k,
        include_self=args.include_self,
        kinds=REGION_KINDS if args.kind == "any" else (args.kind,),
        verify=not args.no_verify,
    )


def _print_paths(args: argparse.Namespace, paths: list[str]) -> None:
    if args.null:  # every name byte for byte, whatever it holds
        sys.stdout.flush()
        sys.stdout.buffer.write(b"".join(os.fsencode(path) + b"\0" for path in paths))
        sys.stdout.buffer.flush()
        return
    for path in paths:
        print(listed(path))


def _region_text(hit: Any) -> str:
    from searchapp.records import clock

    label = f" {hit.label}" if hit.label else ""
    if hit.time is None:
        return f"{hit.kind} {list(hit.bbox)}{label}"
    others = [clock(time) for time, _ in getattr(hit, "moments", ())[1:]]
    also = f"; also {', '.join(others)}" if others else ""
    return f"frame {clock(hit.time)} {list(hit.bbox)}{label}{also}"


def _print_regions(args: argparse.Namespace, results: Any) -> int:
    regions = [
        {
            "path": h.path,
            "score": round(h.score, 6),
            "region": {"kind": h.kind, "bbox": list(h.bbox), "label": h.label},
            **({"time": h.time} if h.time is not None else {}),
        }
        for h in results.region_hits
    ]
    if args.json:
        print(json.dumps({"mode": results.mode, "regions": regions}))
    elif args.paths_only or args.null:
        _print_paths(args, [region["path"] for region in regions])
    else:
        rows = [
            (str(rank), f"{r['score']:.3f}", str(r["path"]), _region_text(hit))
            for rank, (r, hit) in enumerate(zip(regions, results.region_hits, strict=True), 1)
        ]
        table(("rank", "score", "path", "region"), rows)
    return 0


def cmd_search(args: argparse.Namespace, console: Console) -> int:
    from searchapp.library import Library
    from searchapp.query.fanout import search_libraries
    from searchapp.query.remote import RemoteLibrary

    query = _query_from_args(args)  # bad flags fail before the library opens
    far = [path for path in args.libraries if path and is_address(path)]
    if (len(args.libraries) > 1 or far) and (args.sort != "score" or not query.terms):
        raise UsageError(
            "several --library, or one on another machine, answer a query's words or images, "
            "by score; --sort, and --tag without a query, go with one library here"
        )
    if args.sort != "score" and not query.terms:
        return _print_sorted(args, query)
    if args.tag and not query.terms:
        return _print_tagged(args, query, console)
    with contextlib.ExitStack() as opened:
        libraries = [
            RemoteLibrary(path)
            if path in far
            else opened.enter_context(Library(path, args.db, create=False))
            for path in args.libraries
        ]
        here = [lib for lib in libraries if isinstance(lib, Library)]
        for lib in here:
            lib.query_device = args.device
            for repair in lib.check_indexes():
                console.note(f"searchapp: {repair}")
        results = search_libraries(libraries, query)
        if args.sort != "score":
            results = _resorted(here[0], results, args.sort)
    for note in results.notes:
        console.note(f"searchapp: {note}")
    hits = results.region_hits if args.regions else results.hits
    # a photo on another machine is shown as HOST:PORT:/path, which is not a path here
    gone = sorted({h.path for h in hits if os.path.isabs(h.path) and not os.path.exists(h.path)})
    if len(gone) == 1:  # the library keeps them until the next index run of their folder
        console.note(
            f"searchapp: {gone[0]} is no longer on disk; run `searchapp index` on its folder "
            "to drop it from the library"
        )
    elif gone:
        console.note(
            f"searchapp: {len(gone)} of these photos are no longer on disk, e.g. {gone[0]}; "
            "run `searchapp index` on their folders to drop them from the library"
        )
    if args.regions:
        return _print_regions(args, results)
    if args.json:
        payload = {
            "mode": results.mode,
            "checked": results.checked,
            "results": [hit.as_dict() for hit in results],
        }
        print(json.dumps(payload))
        return 0
    if args.paths_only or args.null:
        _print_paths(args, [hit.path for hit in results])
        return 0
    if not results.hits:
        console.note("no results: nothing matched (check the filters, or index more photos)")
        return 0
    score_name = "prob" if results.mode == "labels" else "score"
    header: tuple[str, ...] = ("rank", score_name, "date", "path", "region")
    rows: list[tuple[str, ...]] = [
        (str(rank), f"{hit.score:.3f}", hit.date[:10], hit.path, _region_text(hit))
        for rank, hit in enumerate(results, 1)
    ]
    if results.checked:  # the pixel check ran: say what it found, since it sets the order
        header = (*header[:2], "check", *header[2:])
        rows = [
            (*row[:2], hit.verified or "-", *row[2:])
            for row, hit in zip(rows, results, strict=True)
        ]
    table(header, rows)
    if results.checked and not console.quiet:
        console.note(
            f"searchapp: the top {results.checked} were checked against the query's pixels; "
            "those confirmed (pixels, then geometry) come first, the rest by score"
        )
    return 0


def _resorted(lib: Any, results: Any, by: str) -> Any:
    """The query's hits in the order of a per-photo score (uniqueness, representativeness)."""
    from dataclasses import replace

    order = {s.image_id: getattr(s, by) for s in lib.photo_scores(by=by)}
    hits = sorted(results.hits, key=lambda h: (-order.get(h.image_id, 0.0), -h.score, h.path))
    return replace(results, hits=hits)


def _print_sorted(args: argparse.Namespace, query: Any) -> int:
    """Every photo that passes the filters, by uniqueness, representativeness or outlier."""
    from searchapp.cli_explore import _score_dict
    from searchapp.library import Library

    with Library(args.library, args.db, create=False) as lib:
        ranked = lib.photo_scores(query.filters, by=args.sort)[: args.k]
    if args.json:
        print(json.dumps({"mode": args.sort, "results": [_score_dict(s) for s in ranked]}))
    elif args.paths_only or args.null:
        _print_paths(args, [s.path for s in ranked])
    else:
        rows = [
            (
                str(rank),
                f"{s.outlier:.3f}",
                f"{s.uniqueness:.3f}",
                f"{s.representativeness:.3f}",
                s.path,
            )
            for rank, s in enumerate(ranked, 1)
        ]
        table(("rank", "outlier", "unique", "typical", "path"), rows)
    return 0


def _print_tagged(args: argparse.Namespace, query: Any, console: Console) -> int:
    """The photos tagged so (and passing the other filters), the most probable first."""
    from searchapp.library import Library
    from searchapp.query.labels import short_name

    with Library(args.library, args.db, create=False) as lib:
        # the tags are photos' scene labels and videos' frame labels; --kind picks one of them
        kinds = (args.kind,) if args.kind in ("scene", "frame") else ("scene", "frame")
        found = lib.tagged_photos(query.filters, args.k, kinds)
    if args.json:
        print(
            json.dumps(
                {
                    "mode": "tags",
                    "results": [
                        {"path": path, "prob": round(prob, 4), "tag": short_name(name)}
                        for path, prob, name in found
                    ],
                }
            )
        )
    elif args.paths_only or args.null:
        _print_paths(args, [path for path, _, _ in found])
    elif not found:
        console.note(
            f"no photo or video tagged {' and '.join(args.tag)} (tags are the photos' and the "
            "video frames' labels from probability 0.1; `search --json` shows each hit's)"
        )
    else:
        rows = [
            (str(rank), f"{prob:.3f}", short_name(name), path)
            for rank, (path, prob, name) in enumerate(found, 1)
        ]
        table(("rank", "prob", "tag", "path"), rows)
    return 0
