"""The command line's shared argument parsing: parser classes, the library flags every command
takes on either side of its name, and the encoder and indexing flags of index and reindex."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from searchapp.encoders.devices import DEVICE_CHOICES  # light: no torch


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def tile_scales(text: str) -> tuple[float, ...]:
    try:
        scales = tuple(float(part) for part in text.split(",") if part.strip())
    except ValueError:
        message = f"expected fractions like 0.5,0.333, got {text!r}"
        raise argparse.ArgumentTypeError(message) from None
    if not scales or not all(0 < scale < 1 for scale in scales):
        raise argparse.ArgumentTypeError(f"each scale must be between 0 and 1, got {text!r}")
    return scales


def tile_overlap(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a fraction like 0.2, got {text!r}") from None
    if not 0 <= value <= 0.75:
        raise argparse.ArgumentTypeError(f"must be between 0 and 0.75, got {value}")
    return value


class Parser(argparse.ArgumentParser):
    """No abbreviated flags: `--k 3` was silently taken as `--kind`."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)


class CommandParser(Parser):
    """A command's parser: a mistyped flag is answered with the usage of the command it was
    given to, not the top-level one (argparse hands a command's leftovers up to the top)."""

    def parse_known_args(  # type: ignore[override]
        self, args: Any = None, namespace: Any = None
    ) -> tuple[argparse.Namespace, list[str]]:
        parsed, extras = super().parse_known_args(args, namespace)
        if extras:
            self.error(f"unrecognized arguments: {' '.join(extras)}")
        return parsed, extras


DB_ENV = "SEARCHAPP_DB"  # --db's default: a server's catalog, typed once


def library_flags(parser: argparse.ArgumentParser, default: Any) -> None:
    """--library, --db, --quiet, --verbose: before the command or after it, as git and docker
    users type them. Commands default to SUPPRESS so that they keep a value given before."""
    group = parser.add_argument_group("library")
    group.add_argument(
        "--library",
        metavar="DIR",
        action="append",  # `search` takes several; cli._parse keeps the others to one
        # given after the command, a list of its own, which cli._parse prefers to the one
        # given before it
        dest="library" if default is None else "library_after",
        default=default,
        help="library folder (default: $SEARCHAPP_LIBRARY or indexes/default); `search` "
        "takes several, and merges their answers, and the address of one that `searchapp "
        "serve` serves on another machine",
    )
    group.add_argument(
        "--db",
        metavar="URL",
        default=default,
        help="SQLAlchemy URL of the catalog, such as postgresql+psycopg://USER@HOST/DB "
        "(default: $SEARCHAPP_DB, else SQLite in the library folder; every --library then "
        "keeps its index files over that one catalog)",
    )
    verbosity = parser.add_argument_group("output")
    flag = False if default is None else default  # store_true: False unless given
    verbosity.add_argument(
        "-q", "--quiet", action="store_true", default=flag, help="only errors and results"
    )
    verbosity.add_argument("-v", "--verbose", action="store_true", default=flag, help="say more")


def common_flags() -> argparse.ArgumentParser:
    """The parent parser of every command: the library flags."""
    common = Parser(add_help=False)
    library_flags(common, argparse.SUPPRESS)
    return common


def encoder_flags(parser: argparse.ArgumentParser, *, default: str | None) -> None:
    parser.add_argument(
        "--encoder",
        default=default,
        metavar="NAME",
        help="auto (default: CLIP if its weights are cached, else the offline CNN), "
        "cnn:efficientnet-lite0, or clip:ARCH/TAG such as clip:ViT-B-32/laion2b_s34b_b79k",
    )
    parser.add_argument(
        "--clip-weights", metavar="FILE", type=Path, help="local open_clip checkpoint to load"
    )
    parser.add_argument(
        "--runtime",
        choices=("auto", "torch", "onnx"),
        default="auto",
        help="image encoder runtime: auto (ONNX Runtime where it measured faster, if "
        "installed), torch, or onnx (default auto)",
    )


def device_flag(parser: argparse.ArgumentParser, default: str, why: str) -> None:
    parser.add_argument(
        "--device",
        choices=DEVICE_CHOICES,
        default=default,
        help=f"where the models run: auto (a CUDA or Apple GPU if there is one, else the CPU), "
        f"cpu, cuda or mps (default {default}{why})",
    )


def engine_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--engine",
        choices=("local", "ray"),
        default="local",
        help="local (default): this process's threads read and embed; ray: Ray Data's tasks "
        "and actors do, on this machine's cores or a cluster (pip install 'searchapp[ray]')",
    )
    parser.add_argument(
        "--address",
        metavar="ADDRESS",
        help="with --engine ray: a running cluster, from one of its nodes: `auto` or its "
        "HOST:PORT (from off the cluster, submit the command with `ray job submit`; Ray Data "
        "does not run over ray://); default: start Ray here",
    )
    parser.add_argument(
        "--shards",
        type=Path,
        metavar="DIR",
        help="with --engine ray: where the results' parquet shards wait until committed "
        "(default LIBRARY/shards); a killed run resumes from them",
    )


def index_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--workers", type=positive_int, help="decode threads (default: CPUs)")
    parser.add_argument(
        "--threads", type=positive_int, help="encoder intra-op threads (default: CPUs)"
    )
    device_flag(parser, "auto", "")
    parser.add_argument(
        "--batch-size",
        type=positive_int,
        help="images the encoder takes at once (default 32; 256 where a GPU is found)",
    )
    parser.add_argument(
        "--max-pixels",
        type=positive_int,
        default=250_000_000,
        help="refuse images with more pixels than this (decompression bombs); default 250e6",
    )
    parser.add_argument(
        "--max-file-mb", type=positive_int, default=1024, help="refuse larger files (MiB)"
    )
    parser.add_argument(
        "--regions",
        metavar="KINDS",
        help="region kinds to embed: scene (whole photo), object (boxes from --detector) and tile "
        "(grid at 1/2 and 1/3 of the shorter side, for photos large enough); default all three",
    )
    parser.add_argument(
        "--tile-scales",
        type=tile_scales,
        metavar="F,F",
        help="tile sides as fractions of the shorter side (default 0.5,0.333)",
    )
    parser.add_argument(
        "--tile-overlap",
        type=tile_overlap,
        metavar="F",
        help="overlap of neighbouring tiles (default 0.2; 0.5 finds 3-10%% crops more often "
        "for 1.7x the tiles, see benchmarks/README.md)",
    )
    parser.add_argument(
        "--max-tiles", type=positive_int, help="tiles per photo at most (default 32)"
    )
    parser.add_argument(
        "--detector",
        metavar="NAME",
        help="object detector: cam (offline default: attention maps of the bundled CNN), "
        "torchvision:NAME with COCO weights (e.g. torchvision:fasterrcnn_mobilenet_v3_large_fpn), "
        "or none",
    )
    parser.add_argument(
        "--detector-weights",
        metavar="FILE",
        type=Path,
        help="local checkpoint for a torchvision detector instead of the torch hub cache",
    )
    parser.add_argument(
        "--region-vectors",
        choices=("pooled", "crops"),
        help="crops (default): each object and tile cut out and encoded on its own; pooled: "
        "all pooled from one pass over each photo where the encoder allows (the CNN), the "
        "whole run 2.1-2.7x faster on 12 MP photos, but small crops are found less often",
    )
    parser.add_argument(
        "--regions-later",
        action="store_true",
        help="embed only the scenes now (scene-only speed); objects and tiles are made by the "
        "next run without this flag, and `searchapp stats` counts the photos waiting",
    )
    parser.add_argument(
        "--skip-low-quality",
        action="store_true",
        help="keep blurry, dark, washed-out or flat photos out of the vectors (still listed)",
    )
    parser.add_argument(
        "--commit-every",
        type=positive_int,
        default=256,
        help="images per catalog transaction; a killed run loses at most this many (default 256)",
    )
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
