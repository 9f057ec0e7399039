"""`searchapp dupes`: duplicate groups with their evidence, and moving the extra copies away.

searchapp dupes                              groups of exact, near and crop copies
searchapp dupes --tier exact,near,similar    also bursts and retakes
searchapp dupes --move-to DIR                what would move (a dry run)
searchapp dupes --move-to DIR --apply        move them; prints the journal to undo with
searchapp dupes --undo DIR/searchapp-dupes-....json
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path
from typing import Any

from searchapp.console import Console
from searchapp.paths import shown


def _tiers(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


# `--threshold NAME=VALUE` names: the option each sets and how its value is read.
THRESHOLDS: dict[str, tuple[str, type]] = {
    "hash": ("hash_radius", int),
    "near": ("near_cosine", float),
    "crop": ("crop_cosine", float),
    "similar": ("similar_cosine", float),
}


def _threshold(text: str) -> tuple[str, float]:
    name, _, value = text.partition("=")
    if name not in THRESHOLDS or not value:
        raise argparse.ArgumentTypeError(
            f"{text!r}: give NAME=VALUE with NAME one of {', '.join(THRESHOLDS)}"
        )
    field, kind = THRESHOLDS[name]
    try:
        return field, kind(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: {value!r} is not a {kind.__name__}") from None


def add_dupes_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    dupes = sub.add_parser(
        "dupes",
        parents=[common],
        help="find copies of the same photo; move the extra copies away",
        description="Find duplicate groups in the library. Tiers: exact (same bytes or pixels), "
        "near (resized, recompressed, relit, turned, flipped, slightly cropped), crop (one is a "
        "crop of another), similar (bursts and retakes; only when asked). Each pair shows its "
        "evidence; each group suggests the photo to keep (highest resolution, then sharpest, "
        "then oldest). Nothing is deleted, ever.",
    )
    dupes.add_argument(
        "--tier",
        type=_tiers,
        default=None,
        metavar="LIST",
        help="tiers to report, comma-separated (default exact,near,crop)",
    )
    dupes.add_argument(
        "--hash-radius",
        type=int,
        default=None,
        metavar="BITS",
        help="perceptual-hash distance that proposes a near pair, 0-7 (default 7)",
    )
    dupes.add_argument(
        "--near-cosine",
        type=float,
        default=None,
        metavar="X",
        help="scene-embedding similarity that proposes a near pair (default 0.85)",
    )
    dupes.add_argument(
        "--crop-cosine",
        type=float,
        default=None,
        metavar="X",
        help="region-to-scene similarity that proposes a crop (default 0.75)",
    )
    dupes.add_argument(
        "--similar-cosine",
        type=float,
        default=None,
        metavar="X",
        help="scene similarity for the similar tier (default 0.92)",
    )
    dupes.add_argument(
        "--threshold",
        type=_threshold,
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="the same thresholds in one flag: hash=BITS, near=X, crop=X, similar=X "
        "(repeatable; e.g. --threshold near=0.9)",
    )
    dupes.add_argument(
        "--keep",
        action="append",
        default=[],
        metavar="PATH",
        help="keep this photo in its group, whatever the rule says (repeatable)",
    )
    dupes.add_argument(
        "--move-to",
        type=Path,
        metavar="DIR",
        help="move every copy not kept below DIR (a dry run without --apply)",
    )
    dupes.add_argument("--apply", action="store_true", help="really move (with --move-to)")
    dupes.add_argument(
        "--undo",
        type=Path,
        metavar="JOURNAL",
        help="put back what a `--move-to ... --apply` run moved",
    )
    dupes.add_argument("--json", action="store_true", help="JSON output")


def _options(args: argparse.Namespace) -> Any:
    from dataclasses import replace

    from searchapp.dupes.find import DupeOptions

    chosen = {
        "tiers": args.tier,
        "hash_radius": args.hash_radius,
        "near_cosine": args.near_cosine,
        "crop_cosine": args.crop_cosine,
        "similar_cosine": args.similar_cosine,
    }
    chosen = {k: v for k, v in chosen.items() if v is not None}
    chosen.update(dict(args.threshold))
    return replace(DupeOptions(), **chosen)


def _bar(console: Console, desc: str, unit: str) -> tuple[Any, Any]:
    from tqdm import tqdm

    state: dict[str, Any] = {}

    def update(done: int, total: int) -> None:
        if "bar" not in state:
            state["bar"] = tqdm(
                total=total,
                desc=desc,
                unit=unit,
                file=sys.stderr,
                disable=console.quiet,
                dynamic_ncols=True,
            )
        state["bar"].update(done - state["bar"].n)

    def close() -> None:
        if "bar" in state:
            state["bar"].close()

    return update, close


def _count(number: int, one: str, many: str | None = None) -> str:
    return f"{number} {one if number == 1 else many or one + 's'}"


def _print_groups(data: dict[str, Any]) -> None:
    from searchapp.records import clock

    for number, group in enumerate(data["groups"], 1):
        print(f"group {number}: {len(group['paths'])} files; keep {shown(group['keep'])}")
        print(f"  why: {shown(group['why'])}")
        for pair in group["pairs"]:
            print(f"  {shown(pair['a'])}\n    ~ {shown(pair['b'])}\n    {shown(pair['reason'])}")
    for still in data["stills"]:
        at = clock(still["time"])
        print(f"still: {shown(still['photo'])}\n  is the frame at {at} of {shown(still['video'])}")
    summary = data["summary"]
    print(
        f"{_count(summary['groups'], 'group')}, {_count(summary['copies'], 'copy', 'copies')} "
        "beyond the kept files, "
        f"among {summary['photos']} files"
    )


def _print_moves(outcome: Any, console: Console, verb: str) -> None:
    for move, why in outcome.skipped:
        console.problem(move.source, why)
    console.note(f"{verb} {_count(len(outcome.moved), 'file')}; {len(outcome.skipped)} skipped")


def cmd_dupes(args: argparse.Namespace, console: Console) -> int:
    from searchapp.errors import UsageError
    from searchapp.library import Library

    if args.apply and not args.move_to:
        raise UsageError("--apply needs --move-to DIR: it applies a move")
    if args.undo and (args.move_to or args.apply):
        raise UsageError("--undo puts back an earlier move; give it alone")
    from searchapp.dupes.report import report_dict

    options = _options(args)
    with Library(args.library, args.db, create=False) as lib:
        if args.undo:
            update, close = _bar(console, "moving back", "file")
            try:
                outcome = lib.undo_moves(args.undo, update)
            finally:
                close()
            _print_moves(outcome, console, "moved back")
            return 0 if not outcome.skipped else 1
        update, close = _bar(console, "hashing older photos", "img")
        try:
            lib.backfill_hashes(update)
        finally:
            close()
        update, close = _bar(console, "checking pixels", "pair")
        try:
            report = lib.dupes(options, keep=set(args.keep), on_check=update)
        finally:
            close()
        data = report_dict(report)
        to_move = [p for g in data["groups"] for p in g["paths"] if p != g["keep"]]
        if args.move_to and args.apply:
            update, close = _bar(console, "moving", "file")
            try:
                outcome = lib.move_duplicates(to_move, args.move_to, update)
            finally:
                close()
            data["moved"] = [{"from": m.source, "to": m.target} for m in outcome.moved]
            data["not_moved"] = [
                {"from": m.source, "to": m.target, "why": why} for m, why in outcome.skipped
            ]
            data["journal"] = str(outcome.journal) if outcome.journal else None
            for move, why in outcome.skipped:  # a full disk, a file gone: said, and exit 1
                console.problem(move.source, why)
        elif args.move_to:
            from searchapp.dupes.moves import plan_moves

            data["would_move"] = [
                {"from": m.source, "to": m.target} for m in plan_moves(to_move, args.move_to)
            ]
    if args.json:
        print(json.dumps(data, indent=2))
    else:
        _print_groups(data)
        for move in data.get("would_move", []):
            print(shown(f"would move {move['from']} -> {move['to']}"))
        if "would_move" in data:
            console.note("dry run: nothing moved. Add --apply to move them")
        if "moved" in data and not data["moved"]:
            console.note("nothing to move")
        elif "journal" in data:
            print(
                f"moved {_count(len(data['moved']), 'file')}; undo with: searchapp dupes --undo "
                f"{shlex.quote(data['journal'])}"
            )
        if data.get("not_moved"):
            console.note(f"{len(data['not_moved'])} files could not be moved; they stay in place")
    return 1 if data.get("not_moved") else 0
