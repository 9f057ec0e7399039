"""Fuzzing the decoder, its EXIF parsing and the journal reader, on a short budget (issue 16).

The properties and the inputs live in benchmarks/fuzz_properties.py, shared with the long run
(`python benchmarks/fuzz.py --minutes 10`). Here each runs a fixed, derandomized set of examples,
so CI tries the same inputs every time and a failure reproduces.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from benchmarks import fuzz_properties as fuzz
from searchapp.dupes.moves import Journal, read_journal
from searchapp.errors import JournalError
from searchapp.ingest import load

CI = settings(
    max_examples=500,
    deadline=None,
    derandomize=True,
    database=None,  # nothing written into the work tree
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
SEEDS = st.deferred(lambda: fuzz.image_inputs(list(fuzz.image_seeds().values())))
EXIF = st.deferred(lambda: fuzz.exif_inputs(fuzz.exif_carriers()))


@pytest.fixture(scope="module")
def bench(tmp_path_factory: pytest.TempPathFactory) -> Iterator[fuzz.JournalBench]:
    library, bench = fuzz.journal_bench(tmp_path_factory.mktemp("journal"))
    yield bench
    library.close()


@CI
@given(data=SEEDS, min_side=fuzz.MIN_SIDES)
def test_any_bytes_decode_to_an_image_or_an_image_load_error(
    data: bytes, min_side: int | None
) -> None:
    fuzz.check_decode(data, min_side)


@CI
@given(case=EXIF, min_side=fuzz.MIN_SIDES)
def test_garbled_exif_never_costs_the_photo(
    case: tuple[bytes, tuple[int, int]], min_side: int | None
) -> None:
    data, size = case
    fuzz.check_decode(data, min_side, exif_only=size)


@CI
@given(data=st.data())
def test_any_file_is_a_journal_or_a_journal_error(
    bench: fuzz.JournalBench, data: st.DataObject
) -> None:
    fuzz.check_journal(data.draw(fuzz.any_journal_files(bench)), bench)


@CI
@given(data=st.data())
def test_an_edited_signed_journal_is_refused(bench: fuzz.JournalBench, data: st.DataObject) -> None:
    fuzz.check_journal(data.draw(fuzz.signed_edits(bench)), bench, edit_of=bench.signed)


# ---- the harness itself: its seeds reach the code, and its properties can fail


def test_every_seed_decodes_in_full_and_reduced() -> None:
    for name, data in fuzz.image_seeds().items():
        for min_side in (None, 16):
            assert fuzz.check_decode(data, min_side) == "decoded", name


@pytest.mark.parametrize("endian", "<>")
@pytest.mark.parametrize("put", [fuzz.exif_into_jpeg, fuzz.exif_into_png])
def test_the_built_exif_is_what_searchapp_reads(
    endian: str, put: Callable[[bytes, bytes], bytes]
) -> None:
    carrier = next(c for c in fuzz.exif_carriers() if c.put is put)
    data = put(carrier.data, fuzz.tiff_block(fuzz.well_formed_exif(), endian))
    meta = load.decode(data, fuzz.STAT, min_side=None, limits=fuzz.LIMITS).meta
    assert (meta.width, meta.height) == carrier.size[::-1]  # orientation 6
    taken = datetime(2021, 6, 5, 4, 3, 2, tzinfo=timezone(timedelta(hours=2)))
    assert (meta.taken_at, meta.taken_source) == (taken.timestamp(), "exif")
    assert (meta.camera_make, meta.camera_model) == ("Canon", "EOS 5D")
    assert (meta.gps_lat, meta.gps_lon) == (52.3666667, 4.8833333)


def test_the_journals_searchapp_writes_are_read(bench: fuzz.JournalBench) -> None:
    assert fuzz.check_journal(bench.signed, bench, edit_of=bench.signed) == "read"
    assert fuzz.check_journal(bench.unsigned, bench) == "read"
    assert read_journal(bench.path, bench.catalog).signed is False
    assert fuzz.check_journal(bench.signed.replace(b"\n", b" \r\n"), bench, bench.signed) == "read"


def test_the_properties_fail_on_a_leak_or_a_forgery(
    bench: fuzz.JournalBench, monkeypatch: pytest.MonkeyPatch
) -> None:
    def leaky(*args: object, **kwargs: object) -> load.LoadedImage:
        raise ValueError("a Pillow error nobody caught")

    monkeypatch.setattr(load, "decode", leaky)
    with pytest.raises(ValueError, match="nobody caught"):
        fuzz.check_decode(fuzz.image_seeds()["jpeg"], None)
    monkeypatch.setattr(fuzz, "read_journal", lambda path, catalog: Journal(path, [], True))
    forged = bench.signed.replace(b'"version": 2', b'"version": 2, "extra": 1')
    with pytest.raises(AssertionError, match="edited signed journal was read"):
        fuzz.check_journal(forged, bench, edit_of=bench.signed)


# ---- bugs the fuzzer found: each escaped its handler; these keep them fixed


def test_an_orientation_stored_as_an_infinite_double_is_ignored() -> None:
    block = fuzz.tiff_block(([(fuzz.ORIENTATION, 12, 1, (float("inf"),))], [], []), "<")
    data = fuzz.exif_into_jpeg(fuzz.image_seeds()["jpeg"], block)
    loaded = load.decode(data, fuzz.STAT, min_side=None, limits=fuzz.LIMITS)
    assert loaded.image.size == (48, 32)  # OverflowError from int(inf), once


def test_a_deeply_nested_journal_is_refused(bench: fuzz.JournalBench) -> None:
    bench.path.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(JournalError):  # RecursionError from json.loads, once
        read_journal(bench.path, bench.catalog)


def test_a_signature_that_is_not_ascii_is_refused(bench: fuzz.JournalBench) -> None:
    record = json.loads(bench.signed)
    bench.path.write_text(json.dumps({**record, "signature": "é"}))
    with pytest.raises(JournalError):  # TypeError from hmac.compare_digest, once
        read_journal(bench.path, bench.catalog)


def test_a_signed_journal_edited_down_to_version_1_is_refused(bench: fuzz.JournalBench) -> None:
    record = json.loads(bench.signed)
    del record["signature"]
    record.update(version=True)  # == 1: read as an unsigned journal, once
    bench.path.write_text(json.dumps(record))
    with pytest.raises(JournalError, match="edited"):
        read_journal(bench.path, bench.catalog)


# ---- found by the fuzzer, fixed: kept as regressions


def test_a_journal_dated_past_any_float_is_refused(bench: fuzz.JournalBench) -> None:
    record = json.loads(bench.signed)
    record["created"] = 10**400
    bench.path.write_text(json.dumps(record))
    with pytest.raises(JournalError):
        read_journal(bench.path, bench.catalog)
