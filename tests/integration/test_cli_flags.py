"""Flags as people type them: no abbreviation taken for another flag, the usage of the command
that was mistyped, library flags on either side of the command, no library made by a typo."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from searchapp.cli import main
from searchapp.library import Library
from tests.conftest import cli_env


def _exit(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    try:
        code = main(argv)
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize(
    ("argv", "command"),
    [
        (["search", "cat", "--k", "3"], "search"),  # was silently taken as --kind
        (["search", "cat", "--kin", "scene"], "search"),
        (["dupes", "--tiers", "near"], "dupes"),
        (["index", "photos", "--worker", "2"], "index"),
    ],
)
def test_a_mistyped_flag_gets_the_usage_of_its_command(
    argv: list[str], command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = _exit(argv, capsys)
    assert code == 2
    assert err.startswith(f"usage: searchapp {command} ")
    assert f"searchapp {command}: error: unrecognized arguments: {argv[-2]}" in err


def test_library_flags_work_before_and_after_the_command(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    Library(first).close()
    Library(second).close()
    for argv, library in (
        (["--library", str(first), "stats", "--json"], first),
        (["stats", "--library", str(first), "--json"], first),
        (["--library", str(first), "stats", "--library", str(second), "--json"], second),
        (["-q", "--library", str(second), "stats", "--json"], second),
        (
            [
                "--db",
                f"sqlite:///{first / 'catalog.db'}",
                "stats",
                "--library",
                str(first),
                "--json",
            ],
            first,
        ),
    ):
        code, out, _ = _exit(argv, capsys)
        assert code == 0, argv
        assert json.loads(out)["library"] == str(library.absolute()), argv


def test_quiet_and_verbose_on_either_side_are_refused_together(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = _exit(["-q", "stats", "-v", "--library", str(tmp_path)], capsys)
    assert code == 2 and "--quiet and --verbose" in err


def test_index_of_only_missing_paths_creates_no_library(tmp_path: Path) -> None:
    library = tmp_path / "typo-lib"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "searchapp",
            "index",
            str(tmp_path / "nope"),
            "--library",
            str(library),
        ],
        capture_output=True,
        text=True,
        env=cli_env(),
        timeout=60,
    )
    assert done.returncode == 2
    assert "nothing to index" in done.stderr and str(tmp_path / "nope") in done.stderr
    assert not library.exists()


def test_main_runs_with_a_redirected_stdout(tmp_path: Path) -> None:
    """A caller (a benchmark, a notebook) may swap sys.stdout for a StringIO, which has no
    reconfigure(): the command must still run and print there."""
    import contextlib
    import io

    Library(tmp_path / "lib").close()
    captured = io.StringIO()
    with contextlib.redirect_stdout(captured):
        code = main(["check", "--library", str(tmp_path / "lib"), "--json"])
    assert code == 0 and json.loads(captured.getvalue())["clean"]
