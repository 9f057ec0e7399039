"""`dupes --undo` trusts no journal entry on its word, detects an edited journal, and is
idempotent after a killed run."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from searchapp.dupes.moves import KEY_SETTING, _signature
from searchapp.errors import JournalError, UsageError
from searchapp.library import Library
from tests.conftest import cli_env
from tests.integration.helpers import index


@pytest.fixture
def moved(tmp_path: Path, sample_dir: Path) -> tuple[Library, Path, Path, dict[str, str]]:
    """Two photos with a byte-identical copy each, the copies moved to DIR by `dupes`."""
    photos = tmp_path / "photos"
    (photos / "a").mkdir(parents=True)
    for name in ("chelsea", "coffee"):
        shutil.copy(sample_dir / f"{name}.jpg", photos / f"{name}.jpg")
        shutil.copy(sample_dir / f"{name}.jpg", photos / "a" / f"{name}_copy.jpg")
    library = Library(tmp_path / "lib")
    index(library, photos)
    report = library.dupes()
    paths = report.table.paths
    to_move = [paths[r] for g in report.groups for r in g.rows if r != g.keep]
    assert len(to_move) == 2
    outcome = library.move_duplicates(to_move, tmp_path / "trash")
    assert outcome.journal is not None
    return library, photos, outcome.journal, {m.source: m.target for m in outcome.moved}


def _rewrite(journal: Path, library: Library, moves: list[dict[str, str]]) -> None:
    """The journal with these moves, signed with the library's own key: a damaged or hostile
    entry must still be refused by undo's own checks."""
    record = json.loads(journal.read_text())
    body = {key: value for key, value in record.items() if key != "signature"}
    body["moves"] = moves
    journal.write_text(json.dumps({**body, "signature": _signature(library.catalog, body, False)}))


def test_an_edited_journal_is_refused_whole(moved) -> None:  # type: ignore[no-untyped-def]
    library, _, journal, moves = moved
    record = json.loads(journal.read_text())
    record["moves"][0]["from"] = "/etc/passwd"
    journal.write_text(json.dumps(record))
    with pytest.raises(JournalError, match="does not match its signature"):
        library.undo_moves(journal)
    assert all(os.path.exists(target) for target in moves.values())  # nothing moved
    result = subprocess.run(
        [sys.executable, "-m", "searchapp", "dupes", "--undo", str(journal), "--library",
         str(library.directory)],
        capture_output=True, text=True, env=cli_env(), timeout=120,
    )  # fmt: skip
    assert result.returncode == JournalError.exit_code
    assert str(journal) in result.stderr and "signature" in result.stderr


def test_a_journal_of_another_library_is_refused(moved, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    library, _, journal, _ = moved
    other = Library(tmp_path / "other")
    other.catalog.set_setting(KEY_SETTING, "00" * 32)
    with pytest.raises(JournalError, match="another library"):
        other.undo_moves(journal)
    other.close()
    library.close()


def test_undo_moves_only_set_aside_photos_from_inside_the_move_folder(  # type: ignore[no-untyped-def]
    moved, tmp_path: Path
) -> None:
    library, _, journal, moves = moved
    trash = journal.parent
    outsider = tmp_path / "outside" / "notes.txt"  # a non-photo outside DIR
    outsider.parent.mkdir()
    outsider.write_text("keep me")
    stray = trash / "elsewhere" / "stray.jpg"  # inside DIR, but no photo the catalog set aside
    stray.parent.mkdir(parents=True)
    shutil.copy(next(iter(moves.values())), stray)
    folder = trash / "tmp" / "some-folder"  # a whole folder
    folder.mkdir(parents=True)
    link = trash / "link.jpg"  # a symlink to a photo
    link.symlink_to(next(iter(moves.values())))
    entries = [{"from": source, "to": target} for source, target in moves.items()]
    elsewhere = tmp_path / "elsewhere"  # a folder inside DIR that links out of it
    (elsewhere / "p").mkdir(parents=True)
    (elsewhere / "p" / "x.jpg").write_bytes(b"not to be moved")
    (trash / "linked").symlink_to(elsewhere)
    hostile = [
        {"from": "/linked/p/x.jpg", "to": str(trash / "linked" / "p" / "x.jpg")},
        {"from": "/nul\u0000.jpg", "to": str(trash) + "/nul\u0000.jpg"},
        {"from": "/half\ud800.jpg", "to": str(trash) + "/half\ud800.jpg"},
        {"from": str(tmp_path / "stolen.txt"), "to": str(outsider)},
        {"from": "/elsewhere/stray.jpg", "to": str(stray)},
        {"from": "/tmp/some-folder", "to": str(folder)},
        {"from": "/link.jpg", "to": str(link)},
        {"from": "/x/../../etc/passwd", "to": str(trash) + "/x/../../etc/passwd"},
    ]
    _rewrite(journal, library, hostile + entries)

    outcome = library.undo_moves(journal)

    assert sorted(m.target for m in outcome.moved) == sorted(moves)  # the real moves, only
    assert all(os.path.exists(source) for source in moves)
    assert outsider.read_text() == "keep me" and not (tmp_path / "stolen.txt").exists()
    assert stray.exists() and folder.is_dir() and link.is_symlink()
    assert (elsewhere / "p" / "x.jpg").exists() and not Path("/linked").exists()
    reasons = [why for _, why in outcome.skipped]
    assert len(reasons) == len(hostile) and all("refused" in why for why in reasons)
    assert trash.is_dir() and (trash / "tmp").is_dir()  # no folder at or above DIR removed
    assert library.stats().set_aside == 0


def test_undo_after_a_killed_undo_returns_the_photos_to_search(moved) -> None:  # type: ignore[no-untyped-def]
    """kill -9 between moving a file back and the catalog's commit: the file is home, the
    catalog still has it set aside at the moved place."""
    library, _, journal, moves = moved
    for source, target in moves.items():
        os.replace(target, source)
    assert library.stats().set_aside == 2

    outcome = library.undo_moves(journal)

    assert sorted(m.target for m in outcome.moved) == sorted(moves) and not outcome.skipped
    assert library.stats().set_aside == 0
    for source in moves:
        known = library.catalog.image_by_path(source, set_aside=False)
        assert known is not None
        # back in search: found by its own vector, as first as its byte-identical twin
        hits = library.search(like=source, include_self=True).hits
        assert source in [hit.path for hit in hits if hit.score == hits[0].score]
    again = library.undo_moves(journal)  # and once more: nothing left to do, nothing wrong
    assert not again.moved and library.stats().set_aside == 0
    summary = index(library, *sorted({os.path.dirname(s) for s in moves}))
    assert summary.new == 0  # no second row beside a stale one


def test_move_to_the_root_is_refused(moved) -> None:  # type: ignore[no-untyped-def]
    library, photos, _, _ = moved
    with pytest.raises(UsageError, match="onto itself"):
        library.move_duplicates([str(photos / "chelsea.jpg")], Path("/"))
