"""Terminal output helpers shared by the CLI modules."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from searchapp.paths import shown


class Console:
    def __init__(self, quiet: bool, verbose: bool):
        self.quiet = quiet
        self.verbose = verbose

    def note(self, message: str) -> None:
        if not self.quiet:
            print(shown(message), file=sys.stderr)

    def detail(self, message: str) -> None:
        if self.verbose and not self.quiet:
            print(shown(message), file=sys.stderr)

    def problem(self, path: str, reason: str) -> None:
        print(shown(f"searchapp: skipped {path}: {reason}"), file=sys.stderr)


def table(header: tuple[str, ...], rows: Sequence[tuple[str, ...]]) -> None:
    rows = [tuple(shown(cell) for cell in row) for row in rows]  # a name may hold a newline
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )
