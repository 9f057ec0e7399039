"""File names kept losslessly in the catalog and shown on one line."""

from __future__ import annotations

import os
import random

import pytest

from searchapp.paths import from_stored, listed, shown, stored

NAMES = [
    "/photos/plain.jpg",
    "/photos/" + os.fsdecode(b"caf\xe9.jpg"),  # Latin-1 from an old camera
    "/photos/" + os.fsdecode(b"\xff\xfe\x80.jpg"),
    "/photos/back\\slash.jpg",
    "/photos/back\\xe9.jpg",  # looks like an escape, is not one
    "/photos/new\nline.jpg",
    "/photos/caf\u00e9.jpg",  # NFC
    "/photos/cafe\u0301.jpg",  # NFD: another file on Linux
]


@pytest.mark.parametrize("name", NAMES)
def test_stored_round_trips_and_is_valid_utf8(name: str) -> None:
    text = stored(name)
    text.encode("utf-8")  # raises on a lone surrogate, as SQLite's insert did
    assert from_stored(text) == name


def test_stored_is_one_to_one_on_random_byte_names() -> None:
    rng = random.Random(7)
    names = {
        os.fsdecode(bytes(rng.choice(b"ab\\x\xe9\xff/") for _ in range(rng.randint(1, 8))))
        for _ in range(3000)
    }
    forms = {stored(name) for name in names}
    assert len(forms) == len(names)
    assert all(from_stored(stored(name)) == name for name in names)


def test_stored_keeps_the_order_folder_queries_rely_on() -> None:
    """store.tables.under selects a folder as the range [root/, root0): escaping must keep
    every path below root inside it, and every other path outside."""
    root = "/p/" + os.fsdecode(b"d\xe9")
    inside = [root + "/a.jpg", root + "/" + os.fsdecode(b"\xff.jpg"), root + "/\\.jpg"]
    outside = [root + "0.jpg", root + ".jpg", "/p/d.jpg", root[:-1] + "\\x.jpg"]
    low, high = stored(root + "/"), stored(root + "0")
    assert all(low <= stored(path) < high for path in inside)
    assert not any(low <= stored(path) < high for path in outside)


def test_shown_is_one_line_and_names_the_bytes() -> None:
    assert shown("/p/new\nline.jpg") == "/p/new\\nline.jpg"
    assert shown("/p/" + os.fsdecode(b"caf\xe9.jpg")) == "/p/caf\\xe9.jpg"
    assert shown("a\tb\x1b[31mred") == "a\\tb\\x1b[31mred"  # no terminal escapes either
    assert shown("/p/caf\u00e9.jpg") == "/p/caf\u00e9.jpg"  # real Unicode is left alone
    assert shown("/p/new\\nline.jpg") != shown("/p/new\nline.jpg")  # two files, two lines
    assert shown("/p/\x85.jpg") != shown("/p/" + os.fsdecode(b"\x85.jpg"))  # C1 against a byte


def test_listed_keeps_bytes_for_the_next_program_but_not_newlines() -> None:
    latin = "/p/" + os.fsdecode(b"caf\xe9.jpg")
    assert listed(latin) == latin
    assert listed("/p/a\nb.jpg") == "/p/a\\nb.jpg"
    assert listed("/p/a\\nb.jpg") == "/p/a\\\\nb.jpg"
