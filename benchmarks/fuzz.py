"""The fuzz harness's long run (issue 16): the properties CI tries briefly, for minutes.

    python benchmarks/fuzz.py [--minutes 10] [--seed 0] [--photos FOLDER | --no-photos]

Four targets take turns, a round of --round examples each, until the time is spent:
- decode: any bytes to `searchapp.ingest.load.decode`, at every min_side: mutated photos of each
  format, noise behind each format's magic number, noise;
- exif: photos carrying EXIF blocks built with odd types, counts, values and offsets (or real
  ones), maybe mutated: the photo must still decode, at its size or turned by a quarter;
- journal: any file to `read_journal`: noise, edited version 1 journals;
- signed-journal: edits of a journal `apply_moves` wrote: refused unless the JSON value is the
  same.
The properties and inputs are benchmarks/fuzz_properties.py's, as in tests/unit/test_fuzz.py.
Seeds are scikit-image's samples as in CI, plus, from FOLDER (default ../shared/data/photos),
every file under 200 kB as it is, and the EXIF block of every JPEG, put into the small photos.
Each round is a fresh Hypothesis run seeded --seed + round, with no example database. A failure
is shrunk by Hypothesis; its smallest input and traceback are kept in a folder under the system's
temporary folder (never the repository), which the run prints and the JSON names. Bugs already
known (fuzz_properties.KNOWN_BUGS) are counted apart, and one input of each is kept.

Writes benchmarks/results/fuzz.json.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import hypothesis
import PIL
from bench_results import RESULTS, scratch_folder, write_result
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks import fuzz_properties as fuzz  # noqa: E402

PHOTOS = ROOT.parent / "shared" / "data" / "photos"
SEED_BYTES = 200_000  # bigger files decode for milliseconds each: fewer inputs for the time


def jpeg_exif(data: bytes) -> bytes | None:
    """The TIFF block of a JPEG's APP1 Exif segment, or None."""
    at = 2
    while at + 4 <= len(data) and data[at] == 0xFF and data[at + 1] not in (0xD9, 0xDA):
        length = int.from_bytes(data[at + 2 : at + 4], "big")
        segment = data[at + 4 : at + 2 + length]
        if data[at + 1] == 0xE1 and segment.startswith(b"Exif\0\0"):
            return segment[6:]
        at += 2 + length
    return None


def folder_seeds(folder: Path) -> tuple[list[bytes], list[bytes]]:
    """(small files as they are, EXIF blocks of the JPEGs) found below `folder`."""
    files, blocks = [], []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        data = path.read_bytes()
        if len(data) <= SEED_BYTES and path.suffix.lower() not in (".md", ".txt", ".svg"):
            files.append(data)
        block = jpeg_exif(data) if data[:2] == b"\xff\xd8" else None
        if block and block not in blocks:
            blocks.append(block)
    return files, blocks


class Target:
    """One property under a counter: what each input did, the slowest, and what failed."""

    def __init__(self, name: str, strategy: st.SearchStrategy[Any], check: Callable[..., str]):
        self.name, self.strategy, self.check = name, strategy, check
        self.outcomes: Counter[str] = Counter()
        self.slowest = 0.0
        self.last_failure: tuple[Any, str] | None = None
        self.kept: dict[str, Any] = {}  # one input per known bug

    def run(self, case: Any) -> None:
        started = time.perf_counter()
        try:
            outcome = self.check(case)
        except BaseException as exc:
            self.outcomes["failed"] += 1
            self.last_failure = (case, "".join(traceback.format_exception(exc)))
            raise
        finally:
            self.slowest = max(self.slowest, time.perf_counter() - started)
        self.outcomes[outcome] += 1
        if outcome.startswith("known:"):
            self.kept.setdefault(outcome, case)

    def round(self, seed: int, examples: int) -> str | None:
        """One Hypothesis run; the traceback of its shrunk failure, if any."""
        self.last_failure = None
        test = given(self.strategy)(self.run)
        test = settings(
            max_examples=examples,
            deadline=None,
            database=None,
            report_multiple_bugs=False,
            suppress_health_check=list(HealthCheck),
        )(hypothesis.seed(seed)(test))
        try:
            test()
        except Exception as exc:
            if self.last_failure is None:
                raise  # the harness itself broke, not the code under test
            return self.last_failure[1] or repr(exc)
        return None


def input_bytes(case: Any) -> bytes:
    """The file of a case: cases are (bytes, min_side) or ((bytes, size), min_side) or bytes."""
    while not isinstance(case, bytes):
        case = case[0]
    return case


def git(*command: str) -> str:
    return subprocess.run(["git", *command], capture_output=True, text=True, cwd=ROOT).stdout


def uncommitted() -> list[str]:
    """searchapp's files that differ from the commit: the run measured them as they were."""
    return [line[3:] for line in git("status", "--porcelain", "--", "searchapp").splitlines()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--round", type=int, default=500, help="examples per target per turn")
    parser.add_argument("--photos", type=Path, default=PHOTOS)
    parser.add_argument("--no-photos", action="store_true", help="scikit-image's samples only")
    parser.add_argument("--out", type=Path, default=RESULTS / "fuzz.json")
    args = parser.parse_args()
    # what is measured is the code as it is now: the modules are imported once
    commit, changed = git("rev-parse", "--short", "HEAD").strip() or "unknown", uncommitted()
    # the strategies' repr holds the seed files, megabytes of them: Hypothesis warns, harmlessly
    warnings.filterwarnings("ignore", "Generating overly large repr")

    files, blocks = [], []
    if not args.no_photos and args.photos.is_dir():
        files, blocks = folder_seeds(args.photos)
    seeds = list(fuzz.image_seeds().values()) + files
    print(f"seeds: {len(seeds)} files, {len(files)} of them and {len(blocks)} EXIF blocks real")
    library, bench = fuzz.journal_bench(scratch_folder("searchapp-fuzz-journal-"))
    targets = [
        Target(
            "decode",
            st.tuples(fuzz.image_inputs(seeds), fuzz.MIN_SIDES),
            lambda c: fuzz.check_decode(*c),
        ),
        Target(
            "exif",
            st.tuples(fuzz.exif_inputs(fuzz.exif_carriers(), blocks), fuzz.MIN_SIDES),
            lambda c: fuzz.check_decode(c[0][0], c[1], exif_only=c[0][1]),
        ),
        Target(
            "journal", fuzz.any_journal_files(bench), lambda data: fuzz.check_journal(data, bench)
        ),
        Target(
            "signed-journal",
            fuzz.signed_edits(bench),
            lambda data: fuzz.check_journal(data, bench, edit_of=bench.signed),
        ),
    ]
    kept = Path(tempfile.mkdtemp(prefix=f"searchapp-fuzz-{time.strftime('%Y%m%d-%H%M%S')}-"))
    failures: dict[tuple[str, str], dict[str, Any]] = {}  # by target and error's start
    started = time.monotonic()
    deadline = started + args.minutes * 60
    rounds = 0
    while time.monotonic() < deadline:
        for target in targets:
            if time.monotonic() >= deadline:
                break
            failure = target.round(args.seed + rounds, args.round)
            if failure is None or target.last_failure is None:
                continue
            last = failure.strip().splitlines()[-1][:300]
            if (target.name, last[:60]) in failures:
                failures[target.name, last[:60]]["found"] += 1  # the same bug, found again
                continue
            where = kept / f"failure-{len(failures) + 1}-{target.name}"
            where.with_suffix(".bin").write_bytes(input_bytes(target.last_failure[0]))
            where.with_suffix(".txt").write_text(f"{target.last_failure[0]!r}\n\n{failure}")
            failures[target.name, last[:60]] = {
                "target": target.name,
                "error": last,
                "input": f"{where}.bin",
                "found": 1,
            }
            print(f"FAILURE in {target.name}: {last} (input kept in {where}.bin)")
        rounds += 1
        tried = ", ".join(f"{t.name} {sum(t.outcomes.values())}" for t in targets)
        print(f"{(time.monotonic() - started) / 60:5.1f} min, round {rounds}: {tried}", flush=True)
    minutes = (time.monotonic() - started) / 60
    library.close()

    known: dict[str, dict[str, Any]] = {}
    for target in targets:
        for name, case in target.kept.items():
            bug = name.removeprefix("known:")
            path = kept / f"{bug}.bin"
            if bug not in known:
                path.write_bytes(input_bytes(case))
                known[bug] = {"hits": 0, "input": str(path)}
            known[bug]["hits"] += target.outcomes[name]
    write_result(
        args.out,
        {
            "commit": commit,
            "uncommitted_searchapp_files": changed,
            "command": " ".join(["python benchmarks/fuzz.py", *sys.argv[1:]]),
            "minutes": round(minutes, 2),
            "seed": args.seed,
            "rounds": rounds,
            "examples_per_round": args.round,
            "hypothesis": hypothesis.__version__,
            "pillow": PIL.__version__,
            "seed_files": {"samples": len(seeds) - len(files), "from_photos": len(files)},
            "real_exif_blocks": len(blocks),
            "inputs_tried": {t.name: sum(t.outcomes.values()) for t in targets},
            "inputs_tried_total": sum(sum(t.outcomes.values()) for t in targets),
            "outcomes": {t.name: dict(sorted(t.outcomes.items())) for t in targets},
            "slowest_input_s": {t.name: round(t.slowest, 3) for t in targets},
            "failures": list(failures.values()),
            "known_bugs": known,
            "inputs_kept_in": str(kept),
        },
    )
    print(f"inputs kept in {kept}")


if __name__ == "__main__":
    main()
