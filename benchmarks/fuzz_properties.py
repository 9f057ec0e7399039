"""The fuzz properties of issue 16, and the inputs they are tried on: one home for both the
short CI run (tests/unit/test_fuzz.py) and the long one (benchmarks/fuzz.py).

The contracts: `decode` turns any bytes into a LoadedImage or an ImageLoadError, and
`read_journal` turns any file into a Journal or a JournalError; the per-file handler
(ingest.pipeline._read) and `dupes --undo` catch only those, so anything else is a crash. Inputs
are mutations of real photos (scikit-image's samples, a few dozen pixels a side so an example
costs milliseconds) in each format we read, EXIF blocks built with odd types, counts and values,
and journals written by `apply_moves`, edited.
"""

from __future__ import annotations

import copy
import io
import json
import math
import struct
import time
import traceback
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from functools import cache
from pathlib import Path

import numpy as np
from hypothesis import strategies as st
from PIL import Image

from searchapp.dupes.moves import apply_moves, plan_moves, read_journal
from searchapp.errors import ImageLoadError, JournalError
from searchapp.ingest import load
from searchapp.ingest.hashes import photo_hashes
from searchapp.ingest.quality import measure
from searchapp.library import Library
from searchapp.records import FileStat
from searchapp.store.catalog import Catalog

STAT = FileStat("fuzz-input", 0, 1_700_000_000 * 10**9)
LIMITS = load.LoadLimits(max_pixels=4_000_000)  # a header may claim any size: keep decodes cheap
MIN_SIDES = st.sampled_from([None, 1, 7, 16, 24, 64])  # a min_side takes JPEG's draft path
SLOW_SECONDS = 5.0  # inputs are a few kB: a decode this slow is a hang in the making
ORIENTATION, MAKE, MODEL, DATETIME = 0x0112, 0x010F, 0x0110, 0x0132
EXIF_IFD, GPS_IFD, TAKEN, TAKEN_OFFSET = 0x8769, 0x8825, 0x9003, 0x9011


# Bugs the fuzzer found in searchapp that are still open, each with a strict xfail test in
# tests/unit/test_fuzz.py: when a fix lands that test passes, and its entry here goes. Those
# found before are fixed, and tests there keep them so.
@dataclass(frozen=True)
class Known:
    name: str
    kind: type[BaseException]
    where: str  # the searchapp function the exception escapes from
    words: str  # in its message


KNOWN_BUGS: tuple[Known, ...] = ()  # none open: each found so far is fixed, with a test
# A signed journal stripped of its signature and folder, back-dated and marked version 1, is
# what an old unsigned journal looks like: moves.py reads it, unsigned, by design, and undo
# checks each of its entries. Counted apart from what is read as it was written.
LOOKALIKE = "read-as-version-1"


def _known_or_raise(exc: Exception) -> str:
    frames = [f for f, _ in traceback.walk_tb(exc.__traceback__)]
    ours = [
        f.f_code.co_name for f in frames if f.f_globals.get("__name__", "").startswith("searchapp.")
    ]
    for bug in KNOWN_BUGS:
        if isinstance(exc, bug.kind) and ours and ours[-1] == bug.where and bug.words in str(exc):
            return f"known:{bug.name}"
    raise exc


# ---- properties: each returns what happened ("decoded", "refused", "read", "known:...")


def check_decode(
    data: bytes, min_side: int | None, exif_only: tuple[int, int] | None = None
) -> str:
    """decode's contract for any bytes. With `exif_only` (the photo's stored size), only the EXIF
    was garbled: the photo must still decode, at that size or turned by a quarter."""
    started = time.perf_counter()
    try:
        loaded = load.decode(data, replace(STAT, size=len(data)), min_side=min_side, limits=LIMITS)
    except ImageLoadError as exc:
        assert exc.reason and exc.path == STAT.path
        assert exif_only is None, f"malformed EXIF cost the photo: {exc.reason}"
        return "refused"
    except Exception as exc:
        return _known_or_raise(exc)
    finally:
        elapsed = time.perf_counter() - started
        assert elapsed < SLOW_SECONDS, f"{len(data)} bytes took {elapsed:.1f} s to decode"
    meta, image = loaded.meta, loaded.image
    full = (meta.width, meta.height)
    assert image.mode == "RGB" and image.width > 0 and image.height > 0
    assert meta.width > 0 and meta.height > 0 and meta.width * meta.height <= LIMITS.max_pixels
    if min_side is None or meta.format != "JPEG":
        assert image.size == full
    else:  # draft: reduced, but the shorter side keeps min_side when the photo has it
        assert image.width <= meta.width and image.height <= meta.height
        assert min(image.size) >= min(min_side, *full)
    if exif_only is not None:
        assert full in (exif_only, exif_only[::-1])
    assert isinstance(meta.format, str) and meta.format
    assert isinstance(meta.taken_at, float) and math.isfinite(meta.taken_at)
    assert meta.taken_source == "exif" or meta.taken_at == STAT.mtime_ns / 1e9
    for text in (meta.camera_make, meta.camera_model):
        assert text is None or (0 < len(text) <= 128 and text == text.strip().replace("\0", ""))
    assert (meta.gps_lat is None) == (meta.gps_lon is None)
    if meta.gps_lat is not None and meta.gps_lon is not None:
        assert -90 <= meta.gps_lat <= 90 and -180 <= meta.gps_lon <= 180
    assert loaded.content_hash == load.content_hash(data)
    measure(image)  # the handler's next steps must take whatever decode returns
    photo_hashes(loaded)
    return "decoded"


@dataclass
class JournalBench:
    """A library with its signing key, and journals of it as searchapp writes them."""

    catalog: Catalog
    path: Path  # each input is written here
    signed: bytes  # what apply_moves wrote
    unsigned: bytes  # version 1, as written before journals were signed


def journal_bench(folder: Path) -> tuple[Library, JournalBench]:
    library = Library(folder / "lib")
    names = ["a.jpg", "sub dir/ünï.jpg", 'quote".jpg']
    for name in names:
        (folder / "photos" / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / "photos" / name).write_bytes(name.encode())
    plan = plan_moves([str(folder / "photos" / n) for n in names], folder / "aside")
    outcome = apply_moves(library.catalog, lambda batch: None, plan, folder / "aside")
    assert outcome.journal is not None and len(outcome.moved) == len(names)
    signed = outcome.journal.read_bytes()
    record = json.loads(signed)
    # version 1 had no folder, and was written before this library's key: dated a day earlier
    early = {"version": 1, "created": record["created"] - 86400, "moves": record["moves"]}
    unsigned = json.dumps(early, indent=1).encode()
    return library, JournalBench(library.catalog, folder / "input.json", signed, unsigned)


def _canonical(data: bytes) -> str | None:
    """What the signature covers: the JSON value, whatever its spacing or escapes."""
    try:
        return json.dumps(json.loads(data.decode()), sort_keys=True, separators=(",", ":"))
    except Exception:
        return None


def check_journal(data: bytes, bench: JournalBench, edit_of: bytes | None = None) -> str:
    """read_journal's contract for any file. With `edit_of` (a signed journal), the edit must be
    refused unless it left the same JSON value."""
    bench.path.write_bytes(data)
    try:
        journal = read_journal(bench.path, bench.catalog)
    except JournalError as exc:
        assert str(bench.path) in str(exc)
        return "refused"
    except Exception as exc:
        return _known_or_raise(exc)
    assert isinstance(journal.folder, Path)
    assert all(isinstance(m.source, str) and isinstance(m.target, str) for m in journal.moves)
    if edit_of is None or _canonical(data) == _canonical(edit_of):
        assert journal.signed or edit_of is None
        return "read"
    record = json.loads(data.decode())
    if (
        not journal.signed
        and record.get("version") == 1
        and not {"folder", "signature"} & set(record)
    ):
        return LOOKALIKE
    raise AssertionError(f"an edited signed journal was read: {data[:400]!r}")


# ---- EXIF: blocks built from entries with odd types, counts and values

# (tag, type, count, value): numbers are packed in the block's byte order, bytes go as they are
Entry = tuple[int, int, int, "tuple[float, ...] | bytes"]
PACK = {1: "B", 3: "H", 4: "I", 5: "I", 6: "b", 8: "h", 9: "i", 10: "i", 11: "f", 12: "d"}
PAIRS = {5, 10}  # rationals: numerator, denominator
IFD0_TAGS = (ORIENTATION, MAKE, MODEL, DATETIME)
SUB_TAGS = (TAKEN, TAKEN_OFFSET, DATETIME)
GPS_TAGS = (1, 2, 3, 4)  # latitude's reference and value, longitude's


def _payload(typ: int, value: tuple[float, ...] | bytes, endian: str) -> bytes:
    if isinstance(value, bytes):
        return value
    return struct.pack(endian + PACK[typ] * len(value), *value)


def _ifd(entries: Sequence[Entry], at: int, endian: str, next_ifd: int = 0) -> bytes:
    """One IFD placed at offset `at` of the TIFF block, values over 4 bytes after it."""
    data_at = at + 2 + 12 * len(entries) + 4
    table, extra = struct.pack(endian + "H", len(entries)), b""
    for tag, typ, count, value in entries:
        payload = _payload(typ, value, endian)
        if len(payload) <= 4:
            table += struct.pack(endian + "HHI", tag, typ, count) + payload.ljust(4, b"\0")
        else:
            table += struct.pack(endian + "HHII", tag, typ, count, data_at + len(extra))
            extra += payload + b"\0" * (len(payload) % 2)
    return table + struct.pack(endian + "I", next_ifd) + extra


Ifds = tuple[list[Entry], list[Entry], list[Entry]]  # IFD0, the Exif sub-IFD, the GPS IFD


def tiff_block(
    ifds: Ifds, endian: str, pointers: Sequence[int | None] = (None, None), next_ifd: int = 0
) -> bytes:
    """IFD0 with the Exif and GPS IFDs after it. A pointer given is written as is (a loop, past
    the end); None points at its IFD, which is left out when it has no entries."""
    main, sub, gps = ifds
    links = [
        (tag, block, fixed)
        for tag, block, fixed in ((EXIF_IFD, sub, pointers[0]), (GPS_IFD, gps, pointers[1]))
        if block or fixed
    ]
    place = 8 + len(_ifd(main + [(tag, 4, 1, (0,)) for tag, _, _ in links], 8, endian))
    pointed: list[Entry] = []
    tail = b""
    for tag, block, fixed in links:
        pointed.append((tag, 4, 1, (place if fixed is None else fixed,)))
        part = _ifd(block, place, endian) if block else b""
        tail, place = tail + part, place + len(part)
    head = (b"II*\0" if endian == "<" else b"MM\0*") + struct.pack(endian + "I", 8)
    return head + _ifd(main + pointed, 8, endian, next_ifd) + tail


def exif_into_jpeg(jpeg: bytes, tiff: bytes) -> bytes:
    """An APP1 Exif segment right after the start marker, its length field true."""
    payload = b"Exif\0\0" + tiff[:65000]
    return jpeg[:2] + b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload + jpeg[2:]


def exif_into_png(png: bytes, tiff: bytes) -> bytes:
    """An eXIf chunk right after IHDR, its CRC true."""
    chunk = b"eXIf" + tiff
    packed = struct.pack(">I", len(tiff)) + chunk + struct.pack(">I", zlib.crc32(chunk))
    return png[:33] + packed + png[33:]  # 33: the signature, then IHDR's chunk


def _text(tag: int, text: str) -> Entry:
    raw = text.encode() + b"\0"
    return (tag, 2, len(raw), raw)


def well_formed_exif() -> Ifds:
    """Orientation 6, a camera, a time with its offset, and a place in Amsterdam."""
    main = [
        (ORIENTATION, 3, 1, (6,)),
        _text(MAKE, "Canon"),
        _text(MODEL, "EOS 5D"),
        _text(DATETIME, "2020:01:01 00:00:00"),
    ]
    sub = [_text(TAKEN, "2021:06:05 04:03:02"), _text(TAKEN_OFFSET, "+02:00")]
    gps = [
        _text(1, "N"),
        (2, 5, 3, (52, 1, 22, 1, 0, 1)),
        _text(3, "E"),
        (4, 5, 3, (4, 1, 53, 1, 0, 1)),
    ]
    return main, sub, gps


# ---- seeds: real photos, a few dozen pixels a side, in every format we read


def _encode(image: Image.Image, fmt: str, **options: object) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, **options)
    return out.getvalue()


def sample_photo(name: str) -> Image.Image:
    from skimage import data  # test data, only where seeds are made

    return Image.fromarray(np.asarray(getattr(data, name)())).convert("RGB")


@cache
def image_seeds() -> dict[str, bytes]:
    cat = sample_photo("chelsea").resize((48, 32))
    coffee = sample_photo("coffee").resize((40, 27))
    grey = sample_photo("camera").convert("L").resize((30, 30))
    alpha = sample_photo("astronaut").resize((30, 30))
    alpha.putalpha(grey)
    deep = Image.fromarray(np.asarray(grey, dtype=np.uint16) * 257)  # 16-bit grey
    palette = coffee.convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    animated = io.BytesIO()
    palette.save(animated, "GIF", save_all=True, append_images=[cat.convert("P")], duration=50)
    return {
        "jpeg": _encode(cat, "JPEG", quality=85),
        "jpeg-progressive": _encode(coffee, "JPEG", progressive=True, subsampling=0),
        "jpeg-grey": _encode(grey, "JPEG"),
        "jpeg-cmyk": _encode(alpha.convert("CMYK"), "JPEG"),
        "jpeg-exif": exif_into_jpeg(_encode(cat, "JPEG"), tiff_block(well_formed_exif(), "<")),
        "png": _encode(cat, "PNG"),
        "png-rgba": _encode(alpha, "PNG"),
        "png-16bit": _encode(deep, "PNG"),
        "png-palette-transparent": _encode(palette, "PNG", transparency=3),
        "png-exif": exif_into_png(_encode(cat, "PNG"), tiff_block(well_formed_exif(), ">")),
        "webp": _encode(cat, "WEBP", quality=70),
        "webp-lossless": _encode(alpha, "WEBP", lossless=True),
        "gif": _encode(palette, "GIF"),
        "gif-animated": animated.getvalue(),
        "tiff": _encode(coffee, "TIFF"),
        "tiff-lzw": _encode(grey, "TIFF", compression="tiff_lzw"),
        "bmp": _encode(cat, "BMP"),
    }


@dataclass(frozen=True)
class Carrier:
    """A photo without EXIF to put EXIF into, and its stored size."""

    data: bytes
    size: tuple[int, int]
    put: Callable[[bytes, bytes], bytes]


def exif_carriers() -> list[Carrier]:
    seeds = image_seeds()
    return [
        Carrier(seeds[name], Image.open(io.BytesIO(seeds[name])).size, put)
        for name, put in (
            ("jpeg", exif_into_jpeg),
            ("jpeg-grey", exif_into_jpeg),
            ("jpeg-progressive", exif_into_jpeg),
            ("png", exif_into_png),
        )
    ]


# ---- strategies

INTERESTING = (0, 1, 0x7F, 0x80, 0xFF, 0x7FFF, 0x8000, 0xFFFF, 2**31 - 1, 2**31, 2**32 - 1)
# format magic numbers, then markers, chunk and box names that parsers look for
MAGIC = tuple(
    b"\xff\xd8\xff\xe0|\x89PNG\r\n\x1a\n|GIF89a|RIFF\0\0\0\0WEBPVP8 |II*\0|MM\0*|BM|\0\0\1\0|8BPS"
    b"|DDS |qoif|P6\n|\x0a\x05\x01\x08|\0\0\0\x0cjP  \r\n\x87\n|\0\0\0\x1cftypheic"
    b"|\0\0\0\x1cftypavif|icns".split(b"|")
)
IMAGE_TOKENS = MAGIC + tuple(
    b"\xff\xd9|\xff\xc0\0\x11\x08|\xff\xc2|\xff\xc4|\xff\xda|\xff\xdb|\xff\xe1|Exif\0\0|IHDR|IDAT"
    b"|IEND|eXIf|PLTE|tRNS|acTL|fcTL|NETSCAPE2.0|!\xf9\x04|VP8X|VP8L|ANMF|\0\0\0\0"
    b"|\xff\xff\xff\xff|\x7f\xff\xff\xff".split(b"|")
)
# JSON that parsers choke on (nesting past the recursion limit, integers past any float or past
# Python's 4300 digits, lone surrogates, invalid UTF-8, byte order marks), and the journal's keys
JOURNAL_TOKENS = (
    b"[" * 5000,
    b"9" * 5000,
    b"9" * 400,
    *b'{{{|1e400|-1e400|NaN|Infinity|null|true|[]|{}|""|"\\ud800"|"\\u0000"|\xff\xfe|\xef\xbb\xbf'
    b'|\xc3\xa9|\xc3|"version":1,|"version":2,|"signature":|"moves":|"from":|"to":|"folder":'
    b'|"/"|,|:|"|\\'.split(b"|"),
)
OPS = ("flip", "word", "insert", "token", "delete", "truncate", "splice", "repeat")


@st.composite
def mutated(
    draw: st.DrawFn, seeds: Sequence[bytes], tokens: Sequence[bytes], most: int = 6
) -> bytes:
    """A seed after a few byte-level edits; positions favour the first bytes, where headers keep
    their lengths, counts and offsets."""
    data = bytearray(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(1, most))):
        n = len(data)
        at = draw(st.integers(0, min(n, 300)) | st.integers(0, n))
        op = draw(st.sampled_from(OPS))
        if op == "flip" and at < n:
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif op == "word":
            width = draw(st.sampled_from((1, 2, 4)))
            value = draw(st.sampled_from(INTERESTING) | st.integers(0, 2**32 - 1))
            order = draw(st.sampled_from(("little", "big")))
            data[at : at + width] = (value % (1 << 8 * width)).to_bytes(width, order)
        elif op == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=16))
        elif op == "token":
            token = draw(st.sampled_from(tokens))
            data[at : at + len(token) * draw(st.integers(0, 1))] = token  # insert or overwrite
        elif op == "delete":
            del data[at : at + draw(st.integers(1, 64))]
        elif op == "truncate":
            del data[at:]
        elif op == "splice":
            other = draw(st.sampled_from(seeds))
            start = draw(st.integers(0, len(other)))
            data[at:at] = other[start : start + draw(st.integers(1, 256))]
        elif op == "repeat":
            data[at:at] = bytes(data[at : at + draw(st.integers(1, 32))]) * draw(st.integers(1, 8))
    return bytes(data)


def image_inputs(seeds: Sequence[bytes]) -> st.SearchStrategy[bytes]:
    """Mutated photos; and noise behind each format's magic number, so every header parser
    Pillow has meets garbage, formats we keep no seed of included."""
    behind_magic = st.builds(bytes.__add__, st.sampled_from(MAGIC), st.binary(max_size=96))
    return st.one_of(mutated(seeds, IMAGE_TOKENS), behind_magic, st.binary(max_size=64))


def _numbers(typ: int) -> st.SearchStrategy[float]:
    if typ in (11, 12):
        return st.floats(width=32 if typ == 11 else 64)  # NaN and infinities included
    bits = 8 * struct.calcsize(PACK[typ])
    signed = PACK[typ].islower()
    low, high = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2**bits - 1)
    return st.sampled_from((low, 0, 1, 6, 8, 9, high)) | st.integers(low, high)


TEXTS = st.one_of(
    st.builds(
        "{:04d}:{:02d}:{:02d} {:02d}:{:02d}:{:02d}".format,
        st.integers(0, 10000),
        *(st.sampled_from((0, 1, 12, 13, 24, 31, 32, 60, 99)) for _ in range(5)),
    ),
    st.builds(
        "{}{:02d}:{:02d}".format, st.sampled_from("+-x"), st.integers(0, 99), st.integers(0, 99)
    ),
    st.sampled_from(("N", "S", "E", "W", "", " ", "\x00", "Canon\x00junk", "+02:00")),
    st.text(max_size=24),
)


@st.composite
def entries(draw: st.DrawFn, tags: Sequence[int]) -> Entry:
    """One IFD entry for a tag searchapp reads (or any tag), of any type, with a value that
    fits that type or does not, and sometimes a count that lies."""
    tag = draw(st.sampled_from(tags) | st.integers(0, 0xFFFF))
    typ = draw(st.sampled_from((2, 3, 4, 5, 10, 11, 12, 1, 6, 7, 8, 9)) | st.integers(0, 20))
    value: tuple[float, ...] | bytes
    if typ in (2, 7):
        value = draw(TEXTS).encode("utf-8", "surrogatepass") + draw(st.sampled_from((b"\0", b"")))
        count = len(value)
    elif typ in PACK:
        width = 2 if typ in PAIRS else 1
        value = tuple(draw(st.lists(_numbers(typ), min_size=width, max_size=4 * width)))
        value, count = value[: len(value) // width * width], len(value) // width
    else:
        value = draw(st.binary(max_size=24))
        count = len(value)
    if draw(st.integers(0, 9)) == 0:
        count = draw(st.sampled_from((0, 2**16, 2**31, 2**32 - 1)) | st.integers(0, 2**32 - 1))
    return (tag, typ, count, value)


@st.composite
def exif_inputs(
    draw: st.DrawFn, carriers: Sequence[Carrier], blocks: Sequence[bytes] = ()
) -> tuple[bytes, tuple[int, int]]:
    """A photo carrying a built EXIF block (or one of `blocks`, real ones), maybe mutated; with
    the photo's stored size."""
    carrier = draw(st.sampled_from(carriers))
    if blocks and draw(st.booleans()):
        tiff = draw(st.sampled_from(blocks))
    else:
        ifds = (
            draw(st.lists(entries(IFD0_TAGS), max_size=6)),
            draw(st.lists(entries(SUB_TAGS), max_size=4)),
            draw(st.lists(entries(GPS_TAGS), max_size=6)),
        )
        garbled = st.sampled_from((0, 8, 2**31)) | st.integers(0, 600)  # a loop, past the end
        pointers = [draw(garbled) if draw(st.integers(0, 4)) == 0 else None for _ in range(2)]
        tiff = tiff_block(
            ifds, draw(st.sampled_from("<>")), pointers, draw(st.sampled_from((0, 0, 8)))
        )
    if draw(st.integers(0, 2)) == 0:
        tiff = draw(mutated([tiff], IMAGE_TOKENS, most=3))
    return carrier.put(carrier.data, tiff), carrier.size


JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=8)
    | st.sampled_from((1, 2, 2.0, "2", 10**30, 10**400, -1, "", "/", "é", "\x00", [], {})),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=8,
)
KEYS = st.sampled_from(("version", "created", "folder", "moves", "signature", "extra"))


@st.composite
def edited(draw: st.DrawFn, journal: bytes) -> bytes:
    """A journal after a few edits of its JSON: values of wrong types, keys gone or added, entries
    not objects, the signature changed, the whole nested as deep as a hostile file likes."""
    record = json.loads(journal)
    for _ in range(draw(st.integers(1, 3))):
        op = draw(st.sampled_from(("set", "drop", "entry", "entry-key", "append", "signature")))
        moves = record.get("moves")
        if op == "set":
            record[draw(KEYS)] = draw(JSON)
        elif op == "drop":
            record.pop(draw(KEYS), None)
        elif op == "signature":
            sign = str(record.get("signature"))
            record["signature"] = draw(
                st.sampled_from((sign[:-1], sign + "0", sign.upper(), "é" + sign[1:], sign[::-1]))
                | JSON
            )
        elif isinstance(moves, list) and moves:
            at = draw(st.integers(0, len(moves) - 1))
            if op == "entry":
                moves[at] = draw(JSON)
            elif op == "append":
                moves.append(copy.deepcopy(moves[at]))
            elif isinstance(moves[at], dict):
                key = draw(st.sampled_from(("from", "to", "other")))
                if draw(st.booleans()):
                    moves[at][key] = draw(JSON)
                else:
                    moves[at].pop(key, None)
    text = json.dumps(
        record, indent=draw(st.sampled_from((None, 1))), ensure_ascii=draw(st.booleans())
    )
    depth = draw(st.sampled_from((0, 0, 0, 1, 50, 5000)))
    return ("[" * depth + text + "]" * depth).encode("utf-8", "surrogatepass")


def signed_edits(bench: JournalBench) -> st.SearchStrategy[bytes]:
    return mutated([bench.signed], JOURNAL_TOKENS) | edited(bench.signed)


def any_journal_files(bench: JournalBench) -> st.SearchStrategy[bytes]:
    """Noise, and edits of a version 1 journal (unsigned, so only the contract holds)."""
    unsigned = bench.unsigned
    return st.binary(max_size=200) | mutated([unsigned], JOURNAL_TOKENS) | edited(unsigned)
