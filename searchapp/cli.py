"""Command line. The only module that prints, exits and draws progress.

Heavy modules (torch, faiss, open_clip, PIL) are imported inside the command handlers, so
`searchapp --help` answers at once.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from searchapp.errors import SearchappError
    from searchapp.library import Library

from searchapp.cli_args import (
    DB_ENV,
    CommandParser,
    Parser,
    common_flags,
    encoder_flags,
    engine_flags,
    index_flags,
    library_flags,
)
from searchapp.cli_dupes import add_dupes_parser, cmd_dupes
from searchapp.cli_explore import add_explore_parsers, cmd_clusters, cmd_map, cmd_outliers
from searchapp.cli_library import cmd_check, cmd_errors, cmd_stats
from searchapp.cli_search import add_search_parser, cmd_search
from searchapp.cli_serve import add_serve_parser, cmd_serve
from searchapp.console import Console
from searchapp.paths import is_address, shown, shown_address

EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, what a shell reports for `cat big | head`


# ---- argument parsing ----------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    common = common_flags()
    parser = Parser(
        prog="searchapp",
        description="Local-first search for photo collections: index a folder, then search it "
        "by words or example images, and find the copies of a photo.",
    )
    parser.add_argument("--version", action="version", version=f"searchapp {_version()}")
    library_flags(parser, None)
    sub: Any = parser.add_subparsers(
        dest="command", metavar="COMMAND", required=True, parser_class=CommandParser
    )

    index = sub.add_parser(
        "index", parents=[common], help="index photos (only what changed since last time)"
    )
    index.add_argument("paths", nargs="*", metavar="PATH", help="folders or files")
    index.add_argument(
        "--files",
        type=Path,
        metavar="LIST",
        help="index the files a list names: a text file of one path a line, or a parquet "
        "table with a `path` column; relative paths are the list's folder's",
    )
    encoder_flags(index, default=None)
    index_flags(index)
    engine_flags(index)
    index.add_argument(
        "--tags",
        type=Path,
        metavar="FILE",
        help="a CLIP library's zero-shot tags, one per line (default: ImageNet's classes); "
        "a new list re-tags every photo from its stored vector",
    )

    add_search_parser(sub, common)
    add_dupes_parser(sub, common)
    add_serve_parser(sub, common)
    add_explore_parsers(sub, common)

    stats = sub.add_parser("stats", parents=[common], help="what the library holds")
    stats.add_argument("--json", action="store_true", help="JSON output")

    errors = sub.add_parser("errors", parents=[common], help="files that could not be indexed")
    errors.add_argument("--json", action="store_true", help="JSON output")

    check = sub.add_parser(
        "check",
        parents=[common],
        help="verify the library: catalog, index files and photos on disk agree",
        description="Verify a library: SQLite's integrity check, the index files against the "
        "catalog, the photos on disk. Exit 0 when clean, 10 when something is wrong (8: the "
        "catalog is damaged).",
    )
    check.add_argument(
        "--repair",
        action="store_true",
        help="mend what needs no re-embedding (index files, orphan rows, photos back from "
        "a move), then check again",
    )
    check.add_argument(
        "--forget-deleted-copies",
        action="store_true",
        help="with --repair: forget the set-aside copies no longer on disk (after you deleted "
        "them; an unplugged drive looks the same)",
    )
    check.add_argument("--json", action="store_true", help="JSON output")

    sub.add_parser(
        "rebuild-index",
        parents=[common],
        help="rebuild the FAISS index files from the catalog (no re-embedding)",
    )

    reindex = sub.add_parser(
        "reindex", parents=[common], help="re-embed every photo with another encoder"
    )
    encoder_flags(reindex, default=None)
    index_flags(reindex)
    return parser


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("searchapp")
    except Exception:
        return "unknown"


# ---- commands ------------------------------------------------------------------------------


def _open(args: argparse.Namespace, *, create: bool = False) -> Library:
    """The library of --library/--db; only `index` may create one."""
    from searchapp.library import Library

    return Library(args.library, args.db, create=create)


def _index_setup(args: argparse.Namespace) -> tuple[Any, Any]:
    from searchapp.detect.registry import check_name
    from searchapp.encoders.base import EncoderOptions
    from searchapp.encoders.devices import index_batch, index_device
    from searchapp.ingest.load import LoadLimits
    from searchapp.ingest.pipeline import IndexOptions
    from searchapp.ingest.regions import RegionOptions, parse_kinds

    device = index_device(args.device, args.runtime, getattr(args, "engine", "local") == "ray")
    workers = args.workers or max(1, os.cpu_count() or 1)
    # unset flags keep the defaults of RegionOptions and TileOptions, which say why they are
    defaults = RegionOptions()
    given = {"scales": args.tile_scales, "overlap": args.tile_overlap, "max_tiles": args.max_tiles}
    detector = check_name(args.detector or defaults.detector)
    regions = replace(
        defaults,
        kinds=parse_kinds(args.regions) if args.regions else defaults.kinds,
        tiles=replace(defaults.tiles, **{k: v for k, v in given.items() if v is not None}),
        detector=detector,
        vectors=args.region_vectors or defaults.vectors,
        detector_options=replace(
            defaults.detector_options,
            weights=args.detector_weights,
            allow_download=detector != defaults.detector,  # an explicit choice may download
            device=device,
        ),
    )
    options = IndexOptions(
        regions=regions,
        skip_low_quality=args.skip_low_quality,
        regions_later=args.regions_later,
        workers=workers,
        batch_size=args.batch_size or index_batch(device),
        commit_every=args.commit_every,
        limits=LoadLimits(max_pixels=args.max_pixels, max_file_bytes=args.max_file_mb << 20),
    )
    explicit = bool(args.encoder and args.encoder != "auto")
    encoder_options = EncoderOptions(
        clip_weights=args.clip_weights,
        runtime=args.runtime,
        allow_download=explicit,
        threads=args.threads or max(1, os.cpu_count() or 1),
        device=device,  # "auto" is settled when a model loads: torch knows
    )
    return options, encoder_options


def _progress_callbacks(console: Console) -> tuple[Any, Callable[[], None]]:
    from tqdm import tqdm

    from searchapp.ingest.pipeline import IndexCallbacks

    bar: dict[str, Any] = {}

    def start(stage: str, total: int, unit: str = "img") -> None:
        """A progress bar (rate, ETA) per stage: reading and scenes, then regions."""
        if "bar" in bar:
            bar["bar"].close()
        bar["stage"] = stage
        bar["bar"] = tqdm(
            total=total,
            unit=unit,
            desc=stage,
            file=sys.stderr,
            disable=console.quiet or total == 0,
            dynamic_ncols=True,
        )

    def on_plan(found: int, to_read: int) -> None:
        console.detail(f"found {found} image files; {to_read} to read")
        start("indexing", to_read)

    def on_regions(to_make: int) -> None:
        console.detail(f"every new photo is searchable by its scene; {to_make} wait for regions")
        start("regions", to_make)

    def on_tag_prompts(done: int, total: int) -> None:
        if bar.get("stage") != "tags":  # a CLIP library's first run: its vocabulary, once
            start("tags", total, unit="prompt")
        bar["bar"].update(done - bar["bar"].n)

    def on_advance(n: int) -> None:
        if "bar" in bar:
            bar["bar"].update(n)

    def on_failure(path: str, reason: str) -> None:
        if "bar" in bar:
            bar["bar"].clear()
        console.problem(path, reason)

    def on_note(path: str, what: str) -> None:
        if "bar" in bar:
            bar["bar"].clear()
        console.note(f"searchapp: note: {path}: {what}")

    def close() -> None:
        if "bar" in bar:
            bar["bar"].close()

    callbacks = IndexCallbacks(
        on_plan=on_plan,
        on_regions=on_regions,
        on_advance=on_advance,
        on_failure=on_failure,
        on_note=on_note,
        on_tag_prompts=on_tag_prompts,
    )
    return callbacks, close


def _print_summary(args: argparse.Namespace, console: Console, summary: Any, lib: Any) -> int:
    data = summary.as_dict()
    identity = lib.encoder_identity
    data["library"] = str(lib.directory.absolute())
    data["encoder"] = identity.name if identity else None
    if args.json:
        print(json.dumps(data))
    elif not console.quiet:
        loading = summary.model_seconds
        took = f"{summary.seconds:.1f} s" + (f", {loading:.1f} s of it loading" if loading else "")
        kept_out = (
            f", {summary.low_quality} low quality, listed only" if summary.low_quality else ""
        )
        print(
            f"{summary.new} new, {summary.changed} changed, {summary.moved} moved, "
            f"{summary.deleted} deleted, {summary.unchanged} unchanged, {summary.failed} failed "
            f"in {took} ({summary.embedded} embedded{kept_out}, "
            f"{summary.images_per_second:.1f} images/s)"
        )
        if summary.with_regions or summary.regions_pending:
            scenes = (
                f"searchable by scene after {summary.scene_seconds:.1f} s "
                f"({summary.scene_images_per_second:.1f} images/s); "
                if summary.embedded
                else ""
            )
            waiting = (
                f"; {summary.regions_pending} still wait: run `searchapp index` on the same "
                "folders to make them"
                if summary.regions_pending
                else ""
            )
            print(f"{scenes}regions made for {summary.with_regions}{waiting}")
        if summary.frames:
            print(f"{summary.frames} video frames embedded, each searchable at its time")
        if summary.tagged:
            print(f"tagged {summary.tagged} photos with their zero-shot tags (`search --tag`)")
        if summary.failed:
            print("failed files: `searchapp errors` lists them with their reasons")
    if summary.interrupted:
        print(
            "searchapp: interrupted; everything committed so far is kept. Run the same command "
            "again to resume.",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED
    return 0


def cmd_index(args: argparse.Namespace, console: Console) -> int:
    from searchapp.errors import UsageError
    from searchapp.ingest.file_list import read_file_list
    from searchapp.library import require_existing_paths

    options, encoder_options = _index_setup(args)
    if not args.paths and not args.files:
        raise UsageError("name the folders or files to index, or a list of them with --files LIST")
    roots = list(dict.fromkeys(args.paths + (read_file_list(args.files) if args.files else [])))
    require_existing_paths(roots)  # before the library: a typo must not create one
    engine = _engine(args)  # and a missing Ray, or a flag without it
    with _open(args, create=True) as lib:
        name, why = lib.resolve_encoder_name(args.encoder, encoder_options)
        console.note(f"encoder: {name} - {why}")
        callbacks, close = _progress_callbacks(console)
        try:
            summary = lib.index(
                roots,
                encoder=args.encoder,
                encoder_options=encoder_options,
                options=options,
                callbacks=callbacks,
                tags=args.tags,
                engine=engine,
            )
        finally:
            close()
        if engine is None:  # on Ray the note of the cluster's GPUs says where the models ran
            _say_device(lib, console)
        return _print_summary(args, console, summary, lib)


def _engine(args: argparse.Namespace) -> Any:
    """The Ray engine's options where asked for; None runs the local threads."""
    import importlib.util

    from searchapp.errors import UsageError

    if args.engine == "local":
        if args.address or args.shards:
            raise UsageError("--address and --shards go with --engine ray")
        return None
    from searchapp.ingest.engines.ray_engine import RAY_MISSING, RayOptions

    if importlib.util.find_spec("ray") is None:  # said before any model loads
        raise UsageError(RAY_MISSING)
    return RayOptions(address=args.address, shards=args.shards)


def _say_device(lib: Library, console: Console) -> None:
    """Where the model ran, once one loaded: `auto` without a GPU says why it took the CPU."""
    device = lib.encoder_device()
    if device is not None:
        console.note(f"device: {device.name} ({device.why})")


def cmd_reindex(args: argparse.Namespace, console: Console) -> int:
    options, encoder_options = _index_setup(args)
    with _open(args) as lib:
        callbacks, close = _progress_callbacks(console)
        try:
            summary = lib.reindex(
                args.encoder,
                encoder_options=encoder_options,
                options=options,
                callbacks=callbacks,
            )
        finally:
            close()
        _say_device(lib, console)
        return _print_summary(args, console, summary, lib)


def cmd_rebuild_index(args: argparse.Namespace, console: Console) -> int:
    with _open(args) as lib:
        count = lib.rebuild_index()
    console.note(f"rebuilt the index from the catalog: {count} vectors, nothing re-embedded")
    return 0


COMMANDS: dict[str, Callable[[argparse.Namespace, Console], int]] = {
    "index": cmd_index,
    "search": cmd_search,
    "dupes": cmd_dupes,
    "stats": cmd_stats,
    "errors": cmd_errors,
    "check": cmd_check,
    "rebuild-index": cmd_rebuild_index,
    "reindex": cmd_reindex,
    "serve": cmd_serve,
    "map": cmd_map,
    "clusters": cmd_clusters,
    "outliers": cmd_outliers,
}


def _raise_keyboard_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    return _dispatch(_parse(argv))


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.quiet and args.verbose:
        parser.error("--quiet and --verbose are opposites; give one")
    args.db = args.db or os.environ.get(DB_ENV) or None
    # after the command, --library overrides those before it, as every flag does (an alias
    # that names a library stays overridable); several on one side are `search`'s fan-out
    given = getattr(args, "library_after", None) or args.library or []
    # the same folder twice is one library; an address (`searchapp serve`'s) is kept as given
    given = [p if is_address(p) else os.path.abspath(os.path.expanduser(p)) for p in given]
    given = list(dict.fromkeys(given)) or [None]
    far = next((p for p in given if p and is_address(p)), None)
    if far and args.command != "search":
        parser.error(
            f"--library {shown_address(far)} is a library on another machine, which `search` "
            "asks; run "
            f"`searchapp {args.command}` on the machine that holds it"
        )
    if len(given) > 1 and args.command != "search":
        parser.error(f"several --library go with `search` only; `{args.command}` takes one")
    if (len(given) > 1 or far) and args.db:
        parser.error(
            "several --library, or one on another machine, each search their own catalog; drop "
            "--db (or unset $SEARCHAPP_DB)"
        )
    args.library, args.libraries = given[0], given
    return args


def _dispatch(args: argparse.Namespace) -> int:
    console = Console(args.quiet, args.verbose)
    # a name that is not UTF-8 is written as its own bytes (paths.listed), not as a crash
    reconfigure = getattr(sys.stdout, "reconfigure", None)  # absent where a caller redirected
    if reconfigure is not None:
        reconfigure(errors="surrogateescape")
    signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)  # kill: stop as cleanly as Ctrl-C
    from searchapp.errors import SearchappError

    try:
        return COMMANDS[args.command](args, console)
    except SearchappError as exc:
        print(shown(f"searchapp: error: {exc}"), file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("searchapp: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader went away (`| head`): stop quietly. Point stdout at /dev/null so that
        # the interpreter's last flush does not raise again on the way out.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    except Exception as exc:
        translated = _database_error(exc, args)
        if translated is None:
            raise
        print(shown(f"searchapp: error: {translated}"), file=sys.stderr)
        return translated.exit_code


def _database_error(exc: Exception, args: argparse.Namespace) -> SearchappError | None:
    """A catalog error raised past the catalog (a damaged page met by a read, say), as the
    user should read it; None for anything else, which stays a traceback to report."""
    if "sqlalchemy" not in sys.modules:
        return None
    from sqlalchemy.exc import DatabaseError

    if not isinstance(exc, DatabaseError):
        return None
    from searchapp.library import catalog_url
    from searchapp.store.catalog import translate_error

    return translate_error(exc, catalog_url(args.library, args.db))


READ_ONLY = frozenset({"search", "stats", "errors", "clusters", "outliers"})


def run() -> None:
    """The `searchapp` command. A read-only command ends without the interpreter's teardown:
    freeing the FAISS index, the ONNX sessions and the modules took 240-260 ms of every cold
    search (benchmarks/startup.py), and such a command has closed all it opened by then."""
    args = _parse(sys.argv[1:])
    code = _dispatch(args)
    if args.command not in READ_ONLY:
        sys.exit(code)
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except BrokenPipeError:
        code = EXIT_BROKEN_PIPE
    os._exit(code)


if __name__ == "__main__":
    run()
