"""Moving the copies a duplicate report does not keep, and putting them back.

Nothing is ever deleted. A move keeps the file's absolute path below the target folder
(/photos/a.jpg -> DIR/photos/a.jpg), so names never clash and the way back is plain. Before the
first file moves, the whole plan is written to a journal in DIR; `undo` reads it and moves back
every file that is at its target and whose old place is free, so a run killed halfway is undone
as completely as a finished one. The catalog follows every move, in small transactions: a moved
copy is set aside (its row follows the file, its vectors leave search and `dupes`), and undo
brings it back without re-embedding.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from searchapp.errors import SearchappError
from searchapp.records import CatalogBatch, FileStat, Move
from searchapp.store.catalog import Catalog

JOURNAL_VERSION = 1
CATALOG_EVERY = 50  # moves per catalog transaction

Commit = Callable[[CatalogBatch], None]  # writes a batch; the library's indexes follow it


@dataclass(frozen=True)
class PlannedMove:
    source: str
    target: str


@dataclass
class MoveOutcome:
    moved: list[PlannedMove]
    skipped: list[tuple[PlannedMove, str]]  # with why
    journal: Path | None


def target_for(path: str, folder: Path) -> str:
    return str(folder.absolute() / path.lstrip(os.sep))


def plan_moves(paths_to_move: list[str], folder: Path) -> list[PlannedMove]:
    folder = folder.expanduser()
    return [PlannedMove(path, target_for(path, folder)) for path in sorted(set(paths_to_move))]


def _catalog_moves(catalog: Catalog, commit: Commit, moves: list[PlannedMove], aside: bool) -> None:
    batch = CatalogBatch()
    placed = batch.set_aside if aside else batch.restored
    for move in moves:
        known = catalog.image_by_path(move.source)
        if known is None:
            continue
        st = os.stat(move.target)
        placed.append(Move(known.id, FileStat(move.target, st.st_size, st.st_mtime_ns)))
    if not batch.is_empty():
        commit(batch)


def _move_file(source: str, target: str) -> str | None:
    """Move one file; None when done, else why not. Never overwrites, never deletes."""
    if not os.path.exists(source):
        return "no longer there"
    if os.path.lexists(target):
        return f"{target} already exists; move it away and run again"
    try:
        os.makedirs(os.path.dirname(target), exist_ok=True)
        shutil.move(source, target)
    except OSError as exc:
        return f"cannot move: {exc.strerror or exc}"
    return None


def _run_moves(
    catalog: Catalog,
    commit: Commit,
    plan: list[PlannedMove],
    aside: bool,
    on_progress: Callable[[int, int], None] | None,
) -> tuple[list[PlannedMove], list[tuple[PlannedMove, str]]]:
    moved: list[PlannedMove] = []
    skipped: list[tuple[PlannedMove, str]] = []
    pending: list[PlannedMove] = []
    try:
        for done, move in enumerate(plan, 1):
            problem = _move_file(move.source, move.target)
            if problem is None:
                moved.append(move)
                pending.append(move)
            else:
                skipped.append((move, problem))
            if len(pending) >= CATALOG_EVERY:
                _catalog_moves(catalog, commit, pending, aside)
                pending = []
            if on_progress:
                on_progress(done, len(plan))
    finally:
        _catalog_moves(
            catalog, commit, pending, aside
        )  # an interrupted run still records what moved
    return moved, skipped


def apply_moves(
    catalog: Catalog,
    commit: Commit,
    plan: list[PlannedMove],
    folder: Path,
    on_progress: Callable[[int, int], None] | None = None,
) -> MoveOutcome:
    if not plan:
        return MoveOutcome([], [], None)  # no journal for a move of nothing
    folder = folder.expanduser().absolute()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        journal = folder / f"searchapp-dupes-{time.strftime('%Y%m%d-%H%M%S')}.json"
        suffix = 1
        while journal.exists():
            suffix += 1
            journal = folder / f"searchapp-dupes-{time.strftime('%Y%m%d-%H%M%S')}-{suffix}.json"
        record = {
            "version": JOURNAL_VERSION,
            "created": time.time(),
            "moves": [{"from": move.source, "to": move.target} for move in plan],
        }
        temporary = journal.with_suffix(".tmp")
        temporary.write_text(json.dumps(record, indent=1))
        os.replace(temporary, journal)  # the plan is on disk before any file moves
    except OSError as exc:
        raise SearchappError(
            f"cannot write the journal in {folder}: {exc.strerror or exc}; nothing was moved. "
            "Pass a writable --move-to folder"
        ) from exc
    moved, skipped = _run_moves(catalog, commit, plan, True, on_progress)
    return MoveOutcome(moved, skipped, journal)


def read_journal(path: Path) -> list[PlannedMove]:
    try:
        record = json.loads(Path(path).read_text())
        if record.get("version") != JOURNAL_VERSION:
            raise ValueError(f"journal version {record.get('version')!r}")
        return [PlannedMove(entry["from"], entry["to"]) for entry in record["moves"]]
    except FileNotFoundError:
        raise SearchappError(f"no journal at {path}; pass the file `dupes --apply` named") from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise SearchappError(
            f"{path} is not a searchapp dupes journal ({exc}); pass the file `dupes --apply` named"
        ) from None


def undo_moves(
    catalog: Catalog,
    commit: Commit,
    journal: Path,
    on_progress: Callable[[int, int], None] | None = None,
) -> MoveOutcome:
    """Move back every journalled file that sits at its target; newest move first."""
    back = [PlannedMove(m.target, m.source) for m in reversed(read_journal(journal))]
    present = [move for move in back if os.path.lexists(move.source)]
    absent = [
        (move, "not at its moved place (already back?)") for move in back if move not in present
    ]
    moved, skipped = _run_moves(catalog, commit, present, False, on_progress)
    for move in moved:  # the folders the move made below DIR, now empty; the journal stays
        with contextlib.suppress(OSError):
            os.removedirs(os.path.dirname(move.source))
    return MoveOutcome(moved, skipped + absent, journal)
