"""Hostile file names: every one is indexed, found again, and printed on one line."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from tests.conftest import cli_env, searchapp_here

LATIN1 = b"caf\xe9.jpg"  # what old cameras and Windows tools write
HOSTILE = [
    LATIN1,
    b"new\nline.jpg",
    b"-leading-dash.jpg",
    b"x" * 240 + b".jpg",  # near the 255-byte limit of a name
    "caf\u00e9-nfc.jpg".encode(),
    "cafe\u0301-nfc.jpg".encode(),  # the same name in NFD: a different file on Linux
    b"tab\tand\x1b[31mescape.jpg",
    b"new\\nline.jpg",  # a backslash and an n: must not print like the newline above
]


def run(*args: str | bytes) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "searchapp", *args],
        capture_output=True,
        env=cli_env(LC_ALL="C.UTF-8"),  # a UTF-8 terminal: surrogates do not print there
        timeout=300,
    )


def _here(*args: str) -> subprocess.CompletedProcess[bytes]:
    """searchapp_here's text as the bytes a UTF-8 terminal would receive."""
    done = searchapp_here(*args, env=cli_env(LC_ALL="C.UTF-8"))
    out, err = (text.encode("utf-8", "surrogateescape") for text in (done.stdout, done.stderr))
    return subprocess.CompletedProcess(done.args, done.returncode, out, err)


def test_hostile_names_are_indexed_found_and_printed_on_one_line(
    tmp_path: Path, sample_dir: Path
) -> None:
    folder = tmp_path / "names"
    folder.mkdir()
    shutil.copy(sample_dir / "chelsea.jpg", folder / "ok.jpg")
    samples = sorted(sample_dir.glob("*.jpg"))
    for name, sample in zip(HOSTILE, samples * 2, strict=False):
        shutil.copy(sample, os.path.join(os.fsencode(folder), name))
    (Path(os.fsdecode(os.path.join(os.fsencode(folder), b"broken\xff\n.jpg")))).write_bytes(b"x")
    library = str(tmp_path / "lib")

    indexed = run("index", str(folder), "--library", library, "--regions", "scene", "--json")
    assert indexed.returncode == 0, indexed.stderr.decode(errors="replace")
    summary = json.loads(indexed.stdout)
    assert (summary["new"], summary["failed"]) == (len(HOSTILE) + 1, 1)

    for number, name in enumerate(HOSTILE):
        path = os.fsdecode(os.path.join(os.fsencode(folder), name))
        query = ("search", "--like", path, "--library", library, "--json", "-k", "20")
        # the first name through a real argv; the rest in this process (no torch import each)
        found = run(*query) if number == 0 else _here(*query)
        assert found.returncode == 0, found.stderr.decode(errors="replace")
        hits = [hit["path"] for hit in json.loads(found.stdout)["results"]]
        assert path not in hits  # itself is left out of --like ...
        assert len(hits) == len(HOSTILE)  # ... and every other photo is there, exactly named
        assert set(hits) <= {os.fsdecode(p) for p in map(os.fsencode, folder.iterdir())}

    table = run("search", "--like", str(folder / "ok.jpg"), "--library", library, "-k", "20")
    lines = table.stdout.decode("utf-8").splitlines()  # a UTF-8 terminal can show all of it
    assert len(lines) == 1 + len(HOSTILE)  # the header, then one line per photo
    assert any("caf\\xe9.jpg" in line for line in lines)
    assert any("new\\nline.jpg" in line for line in lines)
    assert not any("\x1b" in line for line in lines)

    listed = run("search", "--like", str(folder / "ok.jpg"), "--library", library, "-k", "20",
                 "--paths-only")  # fmt: skip
    assert os.path.join(os.fsencode(folder), LATIN1) in listed.stdout.splitlines()  # as bytes
    assert len(set(lines)) == len(lines)  # no two files print alike

    exact = run("search", "--like", str(folder / "ok.jpg"), "--library", library, "-k", "20",
                "--null")  # fmt: skip
    names = exact.stdout.split(b"\0")[:-1]
    assert sorted(names) == sorted(os.path.join(os.fsencode(folder), name) for name in HOSTILE)

    errors = run("errors", "--library", library)
    assert errors.stdout.decode("utf-8").splitlines() == [
        f"{folder}/broken\\xff\\n.jpg\tnot an image: the content is no format Pillow reads "
        "(renamed or corrupt?)"
    ]
