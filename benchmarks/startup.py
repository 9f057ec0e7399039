"""Cold start: `searchapp search` on a 100k-photo library, as a fresh process each time.

    python benchmarks/startup.py [--vectors 100000] [--runs 5] [--clip-weights FILE]
                                 [--photos FOLDER]

Two real libraries (catalog + FAISS index), filled with synthetic vectors of the structure
benchmarks/ann_scale.py describes: one for the default encoder, cnn:efficientnet-lite0, queried
with a photo, and one for clip:ViT-B-32/laion2b_s34b_b79k, queried with words and with a photo.
Without --clip-weights a randomly initialised ViT-B-32 is written locally (timing does not
depend on the weight values). Each encoder is loaded once in full while its library is filled, as
`searchapp index` would, which leaves what query processes start from: the CNN's ONNX export and
CLIP's text tower. Then, per library:
- end to end: the real command, `python -m searchapp search ... --library LIB --json`, timed
  from outside, `--runs` times;
- where the time goes: a fresh process that does the same steps one by one and times each
  (imports, opening the library, loading the encoder, loading the index, the query itself).

The synthetic photos have no files, so an image query's pixel check finds nothing to decode
there. `--photos FOLDER` (12 MP JPEGs from benchmarks/phone_photos.py) adds that cost: the
folder is indexed scene-only with the default encoder, and a crop of one of its photos is the
query, timed cold with the check and with `--no-verify`.

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

from bench_results import scratch_folder, write_result

ROOT = Path(__file__).resolve().parents[1]
CNN = "cnn:efficientnet-lite0"
CLIP = "clip:ViT-B-32/laion2b_s34b_b79k"
PHRASE = "a red bicycle by a canal"

STAGES = """
import time, json, sys
marks = [("interpreter", time.perf_counter())]
from pathlib import Path
from searchapp.library import Library
marks.append(("import searchapp", time.perf_counter()))
library = Library(Path(sys.argv[1]))
marks.append(("open catalog", time.perf_counter()))
encoder = library.encoder()
marks.append(("load encoder (" + encoder.runtime + ")", time.perf_counter()))
library.indexes().get("scene", persist=False)
marks.append(("load index", time.perf_counter()))
if sys.argv[3] == "image":
    library.search(image=sys.argv[2], k=10)
else:
    library.search(sys.argv[2], k=10)
marks.append(("first query", time.perf_counter()))
steps = {name: round((t - marks[i][1]) * 1000, 1) for i, (name, t) in enumerate(marks[1:])}
print(json.dumps(steps))
"""


def build_library(folder: Path, count: int, name: str, weights: Path | None) -> Path:
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from ann_scale import realistic_vectors
    from query_latency import fill

    from searchapp.encoders.base import EncoderOptions
    from searchapp.library import Library

    library = Library(folder / name.replace(":", "-").replace("/", "-"))
    with library.writing():
        encoder = library.encoder(name, EncoderOptions(clip_weights=weights))
        fill(library, realistic_vectors(count, dim=encoder.identity.dim))
    library.close()
    return library.directory


def query_photo(folder: Path) -> Path:
    import numpy as np
    from PIL import Image
    from skimage import data

    path = folder / "chelsea.jpg"
    Image.fromarray(np.asarray(data.chelsea())).save(path, quality=90)
    return path


def interpreter_ms() -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", "pass"], check=True)
    return (time.perf_counter() - started) * 1000


def cold_walls(command: list[str], runs: int) -> list[float]:
    walls = []
    for _ in range(runs):
        started = time.perf_counter()
        result = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
        walls.append(time.perf_counter() - started)
        if result.returncode != 0:
            raise SystemExit(f"search failed:\n{result.stderr[-2000:]}")
    return walls


def measure_photos(folder: Path, work: Path, runs: int) -> dict[str, object]:
    """Cold image queries whose candidates are real 12 MP files, checked and unchecked."""
    from PIL import Image

    from searchapp.encoders.base import EncoderOptions
    from searchapp.ingest.pipeline import IndexOptions
    from searchapp.ingest.regions import RegionOptions
    from searchapp.library import Library

    library = Library(work / "photos-lib")
    scene_only = IndexOptions(regions=RegionOptions(kinds=("scene",)))
    summary = library.index([str(folder)], encoder=CNN, options=scene_only,
                            encoder_options=EncoderOptions(allow_download=False))  # fmt: skip
    photos = sorted(folder.glob("*.jpg"))
    source = photos[len(photos) // 2]
    crop = work / "crop.jpg"
    with Image.open(source) as image:
        width, height = image.size
        image.crop((width // 4, height // 4, width * 3 // 4, height * 3 // 4)).save(crop)
    library.close()
    command = [sys.executable, "-m", "searchapp", "search", "--image", str(crop)]
    command += ["--library", str(library.directory), "--json"]
    checked, unchecked = cold_walls(command, runs), cold_walls([*command, "--no-verify"], runs)
    return {
        "photos": summary.new,
        "cold_search_median_s": round(statistics.median(checked), 3),
        "cold_search_no_verify_median_s": round(statistics.median(unchecked), 3),
        "cold_search_s": [round(w, 3) for w in checked],
    }


def measure(library: Path, query: str, mode: str, runs: int) -> dict[str, object]:
    command = [sys.executable, "-m", "searchapp", "search"]
    command += ["--image", query] if mode == "image" else [query]
    command += ["--library", str(library), "--json"]
    walls = cold_walls(command, runs)
    stage_runs = [
        json.loads(
            subprocess.run(
                [sys.executable, "-c", STAGES, str(library), query, mode],
                capture_output=True,
                text=True,
                check=True,
                cwd=ROOT,
            ).stdout
        )
        for _ in range(3)
    ]
    stages = {name: statistics.median(run[name] for run in stage_runs) for name in stage_runs[0]}
    return {
        "cold_search_s": [round(w, 3) for w in walls],
        "cold_search_median_s": round(statistics.median(walls), 3),
        "stages_ms": stages,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--vectors", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--clip-weights", type=Path)
    parser.add_argument("--photos", type=Path, help="a folder of 12 MP JPEGs (phone_photos.py)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/startup.json")
    args = parser.parse_args()
    work = scratch_folder("searchapp-startup-")
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from query_latency import random_checkpoint

    weights = args.clip_weights or random_checkpoint(work)
    photo = str(query_photo(work))
    cases = [
        (CNN, None, [(photo, "image")]),
        (CLIP, weights, [(PHRASE, "text"), (photo, "image")]),
    ]
    python_start = statistics.median(interpreter_ms() for _ in range(3))
    results = {}
    for name, clip_weights, queries in cases:
        started = time.perf_counter()
        library = build_library(work, args.vectors, name, clip_weights)
        built = time.perf_counter() - started
        for query, mode in queries:
            measured = measure(library, query, mode, args.runs)
            results[f"{name} {mode} query"] = measured
            runs = measured["cold_search_s"]
            walls = ", ".join(f"{w:.2f}" for w in runs)  # type: ignore[attr-defined]
            median = measured["cold_search_median_s"]
            print(f"{name}, {mode} query, {args.vectors:,} photos (built in {built:.0f} s): "
                  f"cold median {median:.2f} s (runs {walls})")  # fmt: skip
            print(f"  {'python start':<28} {python_start:8.1f} ms")
            for stage, value in measured["stages_ms"].items():  # type: ignore[attr-defined]
                print(f"  {stage:<28} {value:8.1f} ms")
    if args.photos:
        measured = measure_photos(args.photos.resolve(), work, args.runs)
        results[f"{CNN} image query, 12 MP photos"] = measured
        print(f"{CNN}, image query (a crop), {measured['photos']} photos of 12 MP: cold median "
              f"{measured['cold_search_median_s']:.2f} s with the pixel check, "
              f"{measured['cold_search_no_verify_median_s']:.2f} s with --no-verify")  # fmt: skip
    result_json = {
        "vectors": args.vectors,
        "python_start_ms": round(python_start, 1),
        "cases": results,
    }
    write_result(args.out, result_json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
