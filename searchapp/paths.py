"""File names as the system gives them: kept losslessly in the catalog, shown safely.

On POSIX a file name is bytes. Python decodes bytes that are not UTF-8 to lone surrogates
(U+DC80-U+DCFF, PEP 383), so `open()` finds the file again, but SQLite's text, PostgreSQL and a
UTF-8 terminal all refuse them: cameras and Windows tools write such names (Latin-1 "café").
A name may also hold a newline or another control character, which splits a one-line report.

- `stored` / `from_stored`: the catalog's form. Each surrogate byte becomes `\\xNN` and each
  backslash `\\\\`, character by character, so it is valid UTF-8, reversible, and keeps the
  order and prefixes that folder queries rely on (store.tables.under).
- `shown`: for people. Control characters, backslashes and undecodable bytes are written as
  escapes, so a report stays one line per file and two names never print alike; the JSON
  output carries the exact name.
- `listed`: for `--paths-only`, read by other programs: undecodable bytes are written as the
  bytes they are (stdout uses surrogateescape), so the next program opens the file; control
  characters and backslashes are still escaped, so each line is one file (`--null` writes
  every name exactly).
"""

from __future__ import annotations

import re
import urllib.parse

_SURROGATE_BYTES = (0xDC80, 0xDCFF)
_NEEDS_STORING = re.compile(r"[\\\ud800-\udfff]")
_STORED_ESCAPE = re.compile(r"\\(\\|x[0-9a-f]{2})")
# a backslash is escaped too, so that "new\\nline.jpg" and a name holding a newline differ
_UNSHOWABLE = re.compile(r"[\\\x00-\x1f\x7f-\x9f\ud800-\udfff]")
_CONTROL = re.compile(r"[\\\x00-\x1f\x7f-\x9f]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t", "\\": "\\\\"}


def _store_char(match: re.Match[str]) -> str:
    char = match.group()
    if char == "\\":
        return "\\\\"
    code = ord(char)
    if _SURROGATE_BYTES[0] <= code <= _SURROGATE_BYTES[1]:
        return f"\\x{code - 0xDC00:02x}"
    raise ValueError(f"not a file name Python decoded: {char!r} in {shown(match.string)}")


def stored(path: str) -> str:
    """The catalog's text for a path (valid UTF-8, one-to-one)."""
    return _NEEDS_STORING.sub(_store_char, path) if _NEEDS_STORING.search(path) else path


def _unstore(match: re.Match[str]) -> str:
    escape = match.group(1)
    return "\\" if escape == "\\" else chr(0xDC00 + int(escape[1:], 16))


def from_stored(text: str) -> str:
    """The path `stored` was given."""
    return _STORED_ESCAPE.sub(_unstore, text) if "\\" in text else text


def _show_char(match: re.Match[str]) -> str:
    char = match.group()
    code = ord(char)
    if char in _NAMED:
        return _NAMED[char]
    if _SURROGATE_BYTES[0] <= code <= _SURROGATE_BYTES[1]:
        return f"\\x{code - 0xDC00:02x}"  # the byte the name holds
    # \xNN is an undecodable byte; a C1 control character (U+0080-U+009F) shows as \uNNNN
    return f"\\x{code:02x}" if code < 0x80 else f"\\u{code:04x}"


def shown(text: str) -> str:
    """Text safe to print on one line: control characters and undecodable bytes escaped."""
    return _UNSHOWABLE.sub(_show_char, text)


def listed(path: str) -> str:
    """A path for a list other programs read: one line, its bytes otherwise as they are."""
    return _CONTROL.sub(_show_char, path)


def is_address(library: str) -> bool:
    """Whether a --library names a library `searchapp serve` serves (query/remote.py)."""
    return library.startswith(("http://", "https://"))


def shown_address(address: str) -> str:
    """An address as messages show it: without its ?token= or a user's password."""
    parts = urllib.parse.urlsplit(address)
    host = parts.netloc.rsplit("@", 1)[-1]
    return urllib.parse.urlunsplit((parts.scheme, host, parts.path, "", ""))
