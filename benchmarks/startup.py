"""Cold start: `searchapp search` on a 100k-photo library, as a fresh process each time.

    python benchmarks/startup.py [--vectors 100000] [--runs 5] [--clip-weights FILE]
                                 [--photos FOLDER | --no-photos]

Two libraries (catalog + the FAISS index searchapp builds for their size), filled with synthetic
vectors of the structure benchmarks/ann_scale.py describes: one for the default encoder,
cnn:efficientnet-lite0, queried with a photo, and one for clip:ViT-B-32/laion2b_s34b_b79k,
queried with words and with a photo. Every row's file is a symlink to one of the real 12 MP phone
photos of FOLDER, so an image query's pixel check decodes and matches real files. Without
--clip-weights a randomly initialised ViT-B-32 is written locally (timing does not depend on the
weight values). Each encoder is loaded once in full while its library is filled, as `searchapp
index` would, which leaves what query processes start from: the CNN's ONNX export and CLIP's
text tower. A third library is FOLDER itself (default ../shared/data/phone12mp: 43 real
4032x3024 phone JPEGs), indexed with `searchapp index`'s defaults; its query is a crop of one of
its photos, so the check finds the crop's source.

The image query is that crop in every library, timed with the pixel check (the default) and with
`--no-verify`. Per case:
- end to end: the real command, `python -m searchapp search ... --library LIB --json`, timed
  from outside as a fresh process, `--runs` times (median and range);
- where the time goes: the same command, `searchapp.cli.main` in a fresh process, with timers
  around its steps, `--runs` times. The steps cover the whole wall time of that process, from
  before it is started to after it has exited: Python's start, imports, parsing the command
  line, opening the catalog, `Library.check_indexes()` (every kind's index), the search itself
  split into its parts (benchmarks/query_latency.py's SearchParts: loading the encoder, decoding
  and encoding the query, FAISS, SQL, the pixel check, other), printing, and the interpreter's
  exit. The timers' own imports are a named row; the steps are means, so they add up to the mean
  wall time of the timed runs, shown beside the untimed median.

Writes benchmarks/results/startup.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench_results import scratch_folder, write_result

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = ROOT / "benchmarks"
PHONE12MP = ROOT.parent / "shared" / "data" / "phone12mp"
CNN = "cnn:efficientnet-lite0"
CLIP = "clip:ViT-B-32/laion2b_s34b_b79k"
PHRASE = "a red bicycle by a canal"

# `searchapp search` in a fresh process, with marks around its steps. The mark labels name the
# time since the previous mark; "~" marks the command's own code between two timed steps.
TIMED_COMMAND = """
import time
STARTED = time.perf_counter()
import json, sys
marks = [("python start (spawn, interpreter, site)", STARTED)]
def mark(label):
    marks.append((label, time.perf_counter()))
import searchapp.cli
mark("import searchapp.cli (argparse, the command's modules)")
import searchapp.library, searchapp.query.search
mark("import searchapp.library and .query.search (SQLAlchemy, NumPy, FAISS, PIL)")
sys.path.insert(0, sys.argv[2])
from query_latency import SearchParts
parts = SearchParts()
parts.install()
parts.recording = True
def around(owner, name, before, after):
    original = getattr(owner, name)
    def timed(*args, **kwargs):
        mark(before)
        try:
            return original(*args, **kwargs)
        finally:
            mark(after)
    setattr(owner, name, timed)
around(searchapp.library.Library, "__init__", "parse the command line", "open the library")
around(searchapp.library.Library, "check_indexes", "~", "check_indexes(): every kind's index")
around(searchapp.query.search, "search", "~", "search()")
mark("benchmark: its timers' imports and set-up (not in the command)")
code = searchapp.cli.main(sys.argv[3:])
mark("print the results")
with open(sys.argv[1], "w") as out:
    json.dump({"marks": marks, "search_parts": parts.searches, "code": code}, out)
sys.exit(code)
"""


def build_library(
    folder: Path, count: int, name: str, weights: Path | None, files: list[Path]
) -> Path:
    sys.path.insert(0, str(BENCHMARKS))
    from ann_scale import realistic_vectors
    from query_latency import fill

    from searchapp.encoders.base import EncoderOptions
    from searchapp.library import Library

    slug = name.replace(":", "-").replace("/", "-")
    library = Library(folder / slug)
    with library.writing():
        encoder = library.encoder(name, EncoderOptions(clip_weights=weights))
        fill(
            library,
            realistic_vectors(count, dim=encoder.identity.dim),
            files,
            folder / f"{slug}-rows",
        )
    library.close()
    return library.directory


def index_folder(folder: Path, work: Path) -> tuple[Path, int]:
    """FOLDER indexed as `searchapp index FOLDER` does by default (the default encoder, scene,
    object and tile regions)."""
    from searchapp.encoders.base import EncoderOptions
    from searchapp.library import Library

    library = Library(work / "photos-lib")
    summary = library.index([str(folder)], encoder_options=EncoderOptions(allow_download=False))
    library.close()
    return library.directory, summary.new


def crop_query(photos: list[Path], work: Path) -> Path:
    """A crop of a quarter of the area of the middle photo, as displayed."""
    from PIL import Image, ImageOps

    source = photos[len(photos) // 2]
    with Image.open(source) as opened:
        image = ImageOps.exif_transpose(opened).convert("RGB")
    width, height = image.size
    crop = work / f"crop-of-{source.stem}.jpg"
    image.crop((width // 4, height // 4, width * 3 // 4, height * 3 // 4)).save(crop, quality=90)
    return crop


def cold_walls(command: list[str], runs: int) -> list[float]:
    walls = []
    for _ in range(runs):
        started = time.perf_counter()
        result = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
        walls.append(time.perf_counter() - started)
        if result.returncode != 0:
            raise SystemExit(f"search failed:\n{result.stderr[-2000:]}")
    return walls


def timed_steps(argv: list[str], work: Path) -> tuple[dict[str, float], dict[str, Any]]:
    """One cold run of the command with its steps timed: (ms per step, covering the process's
    whole wall time; the search's own output)."""
    from query_latency import PARTS

    marks_file = work / "marks.json"
    command = [sys.executable, "-c", TIMED_COMMAND, str(marks_file), str(BENCHMARKS), *argv]
    started = time.perf_counter()  # CLOCK_MONOTONIC: the child's marks are on the same clock
    result = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    ended = time.perf_counter()
    if result.returncode != 0:
        raise SystemExit(f"search failed:\n{result.stderr[-2000:]}")
    recorded = json.loads(marks_file.read_text())
    steps: dict[str, float] = {}

    def add(label: str, seconds: float) -> None:
        steps[label] = steps.get(label, 0.0) + seconds * 1000

    previous = started
    for label, at in recorded["marks"]:
        if label == "search()":
            (parts,) = recorded["search_parts"]
            inside = at - previous
            for part, part_label in PARTS.items():
                if part != "other":
                    add(f"search: {part_label}", parts[part])
            add(f"search: {PARTS['other']}", inside - sum(parts[p] for p in PARTS if p != "other"))
        else:
            add(
                "the command's own code between these steps" if label == "~" else label,
                at - previous,
            )
        previous = at
    add("interpreter exit (teardown)", ended - previous)
    return steps, json.loads(result.stdout)


def measure(
    library: Path, query: str, mode: str, runs: int, work: Path, verify: bool = True
) -> dict[str, Any]:
    argv = ["search", *(["--image", query] if mode == "image" else [query])]
    argv += ["--library", str(library), "--json"]
    if not verify:
        argv.append("--no-verify")
    walls = cold_walls([sys.executable, "-m", "searchapp", *argv], runs)
    timed_runs = [timed_steps(argv, work) for _ in range(runs)]
    labels = list(timed_runs[0][0])
    steps = {
        label: round(statistics.fmean(run[0].get(label, 0.0) for run in timed_runs), 1)
        for label in labels
    }
    output = timed_runs[-1][1]
    return {
        "cold_search_s": [round(w, 3) for w in walls],
        "cold_search_median_s": round(statistics.median(walls), 3),
        "timed_runs_mean_s": round(sum(steps.values()) / 1000, 3),
        "steps_mean_ms": steps,
        "checked": output.get("checked", 0),
        "verdicts": [hit.get("verified") for hit in output.get("results", [])],
    }


def report(title: str, measured: dict[str, Any]) -> None:
    walls = ", ".join(f"{w:.2f}" for w in measured["cold_search_s"])
    print(f"{title}: cold median {measured['cold_search_median_s']:.2f} s (runs {walls}); "
          f"pixel check of {measured['checked']} candidates")  # fmt: skip
    for step, value in measured["steps_mean_ms"].items():
        print(f"  {step:<72} {value:8.1f} ms")
    print(f"  {'sum of the steps = mean wall time of the timed runs':<72} "
          f"{measured['timed_runs_mean_s'] * 1000:8.1f} ms")  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--vectors", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--clip-weights", type=Path)
    parser.add_argument(
        "--photos", type=Path, default=PHONE12MP, help="real 12 MP JPEGs (default: phone12mp)"
    )
    parser.add_argument("--no-photos", action="store_true", help="skip the real-photo library")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/startup.json")
    args = parser.parse_args()
    clock = time.get_clock_info("perf_counter").implementation
    if "CLOCK_MONOTONIC" not in clock:
        raise SystemExit(
            f"the steps need a clock shared between processes; perf_counter is {clock}"
        )
    work = scratch_folder("searchapp-startup-")
    sys.path.insert(0, str(BENCHMARKS))
    from query_latency import random_checkpoint, real_photos

    photos_folder = args.photos.resolve()
    files = real_photos(photos_folder)
    weights = args.clip_weights or random_checkpoint(work)
    crop = str(crop_query(files, work))
    cases = [
        (CNN, None, [(crop, "image")]),
        (CLIP, weights, [(PHRASE, "text"), (crop, "image")]),
    ]
    results = {}
    for name, clip_weights, queries in cases:
        started = time.perf_counter()
        library = build_library(work, args.vectors, name, clip_weights, files)
        built = time.perf_counter() - started
        for query, mode in queries:
            for verify in (True, False) if mode == "image" else (True,):
                measured = measure(library, query, mode, args.runs, work, verify)
                key = f"{name} {mode} query" + ("" if verify else ", --no-verify")
                results[key] = {
                    "library": f"{args.vectors} synthetic vectors, files linked to {photos_folder}",
                    **measured,
                }
                report(f"{key}, {args.vectors:,} photos (built in {built:.0f} s)", measured)
    if not args.no_photos:
        library, count = index_folder(photos_folder, work)
        for verify in (True, False):
            measured = measure(library, crop, "image", args.runs, work, verify)
            key = f"{CNN} image query, {count} real photos" + ("" if verify else ", --no-verify")
            results[key] = {"library": f"{photos_folder}, indexed with the defaults", **measured}
            report(f"{key} ({photos_folder})", measured)
    result_json = {
        "vectors": args.vectors,
        "runs": args.runs,
        "photos": str(photos_folder),
        "query_image": f"a crop of a quarter of {Path(crop).name.removeprefix('crop-of-')}",
        "cases": results,
    }
    write_result(args.out, result_json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
