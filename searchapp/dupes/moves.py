"""Moving the copies a duplicate report does not keep, and putting them back.

Nothing is ever deleted. A move keeps the file's absolute path below the target folder
(/photos/a.jpg -> DIR/photos/a.jpg), so names never clash and the way back is plain. Before the
first file moves, the whole plan is written to a journal in DIR, signed with a key the library
keeps (HMAC-SHA256), so that a damaged or edited journal is refused as a whole. `undo` reads it
and moves back every file that is at its target and whose old place is free, so a run killed
halfway is undone as completely as a finished one. The catalog follows every move, in small
transactions: a moved copy is set aside (its row follows the file, its vectors leave search and
`dupes`), and undo brings it back without re-embedding.

Undo trusts no entry on its word, signed or not: it moves only a regular file (no folder, no
link) from DIR/ORIGINAL back to ORIGINAL, and only a photo the catalog knows there, set aside or
(for a move killed before the catalog followed) still at ORIGINAL with the same content. Anything
else is refused with a line and the rest still runs. Undo is idempotent: a photo already back at
ORIGINAL with its content is returned to search, whatever a killed undo left in the catalog.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import math
import os
import secrets
import shutil
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from searchapp.errors import JournalError, SearchappError, UsageError
from searchapp.ingest.load import holds_content
from searchapp.paths import stored
from searchapp.records import CatalogBatch, FileStat, Move
from searchapp.store.catalog import Catalog

JOURNAL_VERSION = 2  # 2: signed, with its folder; 1 (unsigned) is still read
KEY_SETTING = "journal.key"  # the library's secret for signing journals
KEY_SIGNING_SINCE = "journal.signing_since"  # unix time the key was made


def _timestamp(value: object) -> float:
    """A journal's date as a float; NaN for anything else (text, a number past any float)."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        try:
            return float(value)
        except OverflowError:
            return math.nan
    return math.nan


def _signing_since(catalog: Catalog) -> float:
    """When this library began signing journals; inf if it never has."""
    raw = catalog.get_setting(KEY_SIGNING_SINCE)
    return float(raw) if raw else math.inf


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


def original_place(moved: str, size: int, digest: str) -> str | None:
    """Where a set-aside copy sits again, without its journal: target_for keeps the original
    path below the move folder, so the original is one of the moved path's tails, and the one
    holding the same content is it."""
    parts = Path(moved).parts
    for start in range(1, len(parts) - 1):
        candidate = os.path.join(os.sep, *parts[start + 1 :])
        if holds_content(candidate, size, digest):
            return candidate
    return None


def plan_moves(paths_to_move: list[str], folder: Path) -> list[PlannedMove]:
    folder = folder.expanduser()
    if os.path.normpath(folder.absolute()) == os.sep:
        raise UsageError(
            "--move-to / would move every file onto itself; pass a folder for the set-aside "
            "copies, e.g. --move-to ~/searchapp-set-aside"
        )
    if folder.exists() and not folder.is_dir():
        raise UsageError(f"--move-to {folder} is a file; pass a folder for the set-aside copies")
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
        if os.path.exists(source) and os.path.lexists(target):
            # a copy to another disk that failed (full, say) leaves a partial target; the
            # source is whole, and nothing was at the target before
            with contextlib.suppress(OSError):
                os.unlink(target)
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


def _signature(catalog: Catalog, body: dict[str, object], create: bool) -> str | None:
    key = catalog.get_setting(KEY_SETTING)
    if key is None and create:
        key = secrets.token_hex(32)
        catalog.set_setting(KEY_SIGNING_SINCE, repr(time.time()))
        catalog.set_setting(KEY_SETTING, key)
    if key is None:
        return None
    payload = json.dumps(body, sort_keys=True, separators=(",", ":"))
    return hmac.new(bytes.fromhex(key), payload.encode(), hashlib.sha256).hexdigest()


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
    _signature(catalog, {}, create=True)  # the key first: a journal is dated after signing began
    try:
        folder.mkdir(parents=True, exist_ok=True)
        journal = folder / f"searchapp-dupes-{time.strftime('%Y%m%d-%H%M%S')}.json"
        suffix = 1
        while journal.exists():
            suffix += 1
            journal = folder / f"searchapp-dupes-{time.strftime('%Y%m%d-%H%M%S')}-{suffix}.json"
        body: dict[str, object] = {
            "version": JOURNAL_VERSION,
            "created": time.time(),
            "folder": str(folder),
            "moves": [{"from": move.source, "to": move.target} for move in plan],
        }
        record = {**body, "signature": _signature(catalog, body, create=False)}
        temporary = journal.with_suffix(".tmp")
        with open(temporary, "w") as out:
            out.write(json.dumps(record, indent=1))
            out.flush()
            os.fsync(out.fileno())  # the plan is on disk before any file moves
        os.replace(temporary, journal)
    except OSError as exc:
        with contextlib.suppress(OSError, UnboundLocalError):
            os.unlink(temporary)
        raise SearchappError(
            f"cannot write the journal in {folder}: {exc.strerror or exc}; nothing was moved. "
            "Pass a writable --move-to folder"
        ) from exc
    moved, skipped = _run_moves(catalog, commit, plan, True, on_progress)
    return MoveOutcome(moved, skipped, journal)


@dataclass(frozen=True)
class Journal:
    folder: Path  # where the moves went; the journal lies in it
    moves: list[PlannedMove]
    signed: bool


def read_journal(path: Path, catalog: Catalog) -> Journal:
    """The journal's moves, once its signature holds; JournalError otherwise."""
    fix = "pass the file `dupes --apply` named"
    try:
        record = json.loads(Path(path).read_text())
        if not isinstance(record, dict):
            raise ValueError("not a JSON object")
        version = record.get("version")
        if version not in (1, JOURNAL_VERSION):
            raise ValueError(f"journal version {version!r}")
        moves = [PlannedMove(str(entry["from"]), str(entry["to"])) for entry in record["moves"]]
        folder = Path(record.get("folder") or Path(path).absolute().parent)
    except FileNotFoundError:
        raise JournalError(f"no journal at {path}; {fix}") from None
    except (OSError, ValueError, KeyError, TypeError, AttributeError, RecursionError) as exc:
        raise JournalError(f"{path} is not a searchapp dupes journal ({exc}); {fix}") from None
    created_at = _timestamp(record.get("created"))
    edited_down = version == 1 and ("folder" in record or "signature" in record)
    if edited_down or (version == 1 and not created_at < _signing_since(catalog)):
        # unsigned journals predate signing (and had no folder): a version 1 journal dated after
        # it, or with a signed one's fields, is a signed one edited down. One also back-dated
        # and stripped cannot be told from a real old one: its entries are still each checked
        raise JournalError(
            f"{path} is an unsigned journal dated after this library began signing them: it "
            "was edited. Nothing was moved"
        )
    if version == JOURNAL_VERSION:
        body = {key: value for key, value in record.items() if key != "signature"}
        expected = _signature(catalog, body, create=False)
        given = record.get("signature")
        if (
            expected is None
            or not isinstance(given, str)
            or not hmac.compare_digest(expected.encode(), given.encode("utf-8", "replace"))
        ):
            raise JournalError(
                f"{path} does not match its signature: it was damaged or edited after `dupes "
                "--apply` wrote it, or it belongs to another library (pass that library's "
                "--library). Nothing was moved; the moved files are still below "
                f"{folder}, each at the place its original path names"
            )
    return Journal(folder, moves, signed=version == JOURNAL_VERSION)


def _layout_refusal(move: PlannedMove, folder: Path) -> str | None:
    """Why an entry is no move this folder could have made (move.source: the moved place)."""
    moved, original = move.source, move.target
    if not (_plain_name(moved) and _plain_name(original)):
        return "refused: not a file name (a NUL byte, or text no file system holds)"
    if not os.path.isabs(original) or os.path.normpath(original) != original:
        return f"refused: {original} is not a plain absolute path"
    if moved != target_for(original, folder):
        return f"refused: not the place a move of {original} into {folder} makes"
    real_folder = os.path.realpath(folder)
    if not os.path.realpath(os.path.dirname(moved)).startswith(real_folder + os.sep):
        return f"refused: a linked folder leads out of {folder}"
    return None


def _plain_name(path: str) -> bool:
    try:
        os.fsencode(path)
        stored(path)
    except (UnicodeError, ValueError):
        return False
    return "\0" not in path


def _refusal(move: PlannedMove, catalog: Catalog) -> str | None:
    """Why undo must not move this file back, its layout being sound; or None."""
    moved, original = move.source, move.target
    try:
        st = os.lstat(moved)
    except OSError:
        return "neither at its moved place nor at its original one"
    if not stat.S_ISREG(st.st_mode):
        return "refused: not a regular file (a folder or a link)"
    known = catalog.image_by_path(moved, set_aside=True)
    if known is None:  # a move killed before the catalog followed it: the photo is still there
        known = catalog.image_by_path(original, set_aside=False)
        if known is None or not holds_content(moved, known.size, known.content_hash):
            return "refused: the catalog knows no photo set aside here"
    if os.path.lexists(original):
        return f"{original} already exists; move it away and run again"
    return None


def already_back(moved: str, original: str, catalog: Catalog, returned: CatalogBatch) -> bool:
    """A photo a killed undo moved back before its catalog commit (or that its owner moved
    back): the catalog still has it set aside at the moved place, and its original place holds
    the same content. Its row returns to search; or, where `index` has given the file a row of
    its own meanwhile, the set-aside row goes. Added to `returned`; whether it was."""
    known = catalog.image_by_path(moved, set_aside=True)
    if known is None or os.path.lexists(moved):
        return False
    if not holds_content(original, known.size, known.content_hash):
        return False
    if catalog.image_by_path(original) is not None:
        returned.deleted_ids.append(known.id)
        return True
    st = os.lstat(original)
    returned.restored.append(Move(known.id, FileStat(original, st.st_size, st.st_mtime_ns)))
    return True


def _remove_empty_folders(start: str, folder: Path) -> None:
    """The folders a move made below DIR, now empty; never DIR itself or above it."""
    top = os.path.normpath(folder)
    current = os.path.normpath(start)
    while current.startswith(top + os.sep):
        try:
            os.rmdir(current)
        except OSError:
            return  # not empty, or not ours to remove
        current = os.path.dirname(current)


def undo_moves(
    catalog: Catalog,
    commit: Commit,
    journal_path: Path,
    on_progress: Callable[[int, int], None] | None = None,
) -> MoveOutcome:
    """Move back every journalled file that sits at its target; newest move first."""
    journal = read_journal(journal_path, catalog)
    back = [PlannedMove(m.target, m.source) for m in reversed(journal.moves)]
    present: list[PlannedMove] = []
    refused: list[tuple[PlannedMove, str]] = []
    already: list[PlannedMove] = []
    returned = CatalogBatch()
    for move in back:
        why = _layout_refusal(move, journal.folder)
        if why is not None:
            refused.append((move, why))
            continue
        if already_back(move.source, move.target, catalog, returned):
            already.append(move)
            continue
        if not os.path.lexists(move.source) and os.path.lexists(move.target):
            continue  # never moved (a run cut short, a full disk), or back already: in place
        why = _refusal(move, catalog)
        if why is None:
            present.append(move)
        else:
            refused.append((move, why))
    if not returned.is_empty():
        commit(returned)
    moved, skipped = _run_moves(catalog, commit, present, False, on_progress)
    for move in moved:
        _remove_empty_folders(os.path.dirname(move.source), journal.folder)
    return MoveOutcome(moved + already, skipped + refused, journal_path)
