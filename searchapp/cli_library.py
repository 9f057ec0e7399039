"""`searchapp stats`, `errors` and `check`: what a library holds, what it could not index, and
whether its catalog, index files and photos agree."""

from __future__ import annotations

import argparse
import json

from searchapp.cli_explore import health_dict, health_rows
from searchapp.console import Console, table
from searchapp.paths import shown


def _human_bytes(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.1f} {unit}" if unit != "B" else f"{n} B"
        size /= 1024
    return f"{n} B"


def cmd_stats(args: argparse.Namespace, console: Console) -> int:
    from searchapp.library import Library

    with Library(args.library, args.db, create=False) as lib:
        stats = lib.stats()
        health = lib.health()
        directory = str(lib.directory.absolute())
    encoder = stats.encoder
    bytes_per_photo, per_photo = stats.bytes_per_photo, stats.regions_per_photo
    data = {"library": directory, **stats.as_dict(), "health": health_dict(health)}
    if args.json:
        print(json.dumps(data))
        return 0
    regions = ", ".join(f"{k} {v}" for k, v in sorted(stats.regions_by_kind.items())) or "none"
    per_photo_text = ", ".join(f"{k} {v}" for k, v in sorted(per_photo.items())) or "none"
    quality = "; ".join(
        f"{name} p10 {q['p10']} / p50 {q['p50']} / p90 {q['p90']}"
        for name, q in stats.quality.items()
    )
    table(
        ("", ""),
        [
            ("library", directory),
            (
                "images",
                f"{stats.images} ({stats.images - stats.videos} photos, {stats.videos} "
                f"video{'s' if stats.videos != 1 else ''})"
                if stats.videos
                else str(stats.images),
            ),
            ("regions", regions),
            (
                "per photo",
                f"{per_photo_text}{' (frames per video)' if stats.videos else ''}; "
                f"{_human_bytes(bytes_per_photo)} on disk",
            ),
            ("vectors", str(stats.vectors)),
            ("quality", quality or "not measured"),
            ("low quality", f"{stats.low_quality} kept out of the vectors"),
            ("set aside", f"{stats.set_aside} copies moved away by `dupes --move-to`"),
            (
                "waiting",
                f"{stats.regions_pending} photos searchable by scene, waiting for objects and "
                "tiles (`searchapp index` makes them)",
            ),
            ("failures", str(stats.failures)),
            ("encoder", encoder.describe() if encoder else "none yet"),
            *(
                [("tiles by", f"{stats.tile_encoder.describe()}: image queries reach them")]
                if stats.tile_encoder
                else []
            ),
            (
                "on disk",
                f"{_human_bytes(stats.bytes_on_disk)} (catalog "
                f"{_human_bytes(stats.catalog_bytes)}, indexes {_human_bytes(stats.index_bytes)})",
            ),
            *health_rows(health),
        ],
    )
    return 0


def cmd_errors(args: argparse.Namespace, console: Console) -> int:
    from searchapp.library import Library

    with Library(args.library, args.db, create=False) as lib:
        failures = lib.failures()
    if args.json:
        print(json.dumps({"errors": [{"path": f.path, "reason": f.reason} for f in failures]}))
        return 0
    if not failures:
        console.note("no failed files")
    for failure in failures:
        print(f"{shown(failure.path)}\t{shown(failure.reason)}")
    return 0


def cmd_check(args: argparse.Namespace, console: Console) -> int:
    from searchapp.errors import LibraryProblemsError, UsageError
    from searchapp.library import Library

    with Library(args.library, args.db, create=False) as lib:
        if args.forget_deleted_copies and not args.repair:
            raise UsageError("--forget-deleted-copies is a kind of --repair; give both")
        result = lib.check(repair=args.repair, forget_deleted_copies=args.forget_deleted_copies)
        # a server keeps its own integrity; SQLite's full check is the one run here
        sqlite = lib.catalog.database_path() is not None
    if args.json:
        print(json.dumps(result.as_dict()))
    else:
        for line in result.mended:
            console.note(f"mended: {line}")
        checked = ", ".join(f"{count} {what}" for what, count in result.checked.items())
        done = ["SQLite integrity ok"] if sqlite else []
        console.note(f"checked: {', '.join([*done, checked] if checked else done)}")
        for line in result.not_checked:
            console.note(f"not checked: {line}")
        if result.findings:
            rows = [(f.what, f.detail, f.fix) for f in result.findings]
            table(("problem", "detail", "fix"), rows)
        elif result.not_checked:
            console.note("clean: the catalog and the photos on disk agree")
        else:
            console.note("clean: the catalog, the index files and the photos on disk agree")
    return 0 if result.clean else LibraryProblemsError.exit_code
