"""Cold start: `searchapp search --image` on a 100k-photo library, as a fresh process each time.

    python benchmarks/startup.py [--vectors 100000] [--runs 5]

The library is real (catalog + FAISS index) for the default encoder, cnn:efficientnet-lite0,
filled with synthetic 1280-d vectors of the structure benchmarks/ann_scale.py describes; the
encoder is loaded once while filling it, as `searchapp index` would, which leaves its ONNX export
beside the weights. Then:
- end to end: the real command, `python -m searchapp search --image PHOTO --library LIB --json`,
  timed from outside, `--runs` times;
- where the time goes: a fresh process that does the same steps one by one and times each
  (interpreter, imports, opening the library, loading the encoder, loading the index, the
  query itself).

Writes benchmarks/results/startup.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ENCODER = "cnn:efficientnet-lite0"

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
library.search(image=sys.argv[2], k=10)
marks.append(("first query", time.perf_counter()))
steps = {name: round((t - marks[i][1]) * 1000, 1) for i, (name, t) in enumerate(marks[1:])}
print(json.dumps(steps))
"""


def build_library(folder: Path, count: int) -> Path:
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from ann_scale import realistic_vectors
    from query_latency import fill

    from searchapp.encoders.base import EncoderOptions
    from searchapp.library import Library

    library = Library(folder / "lib")
    with library.writing():
        encoder = library.encoder(ENCODER, EncoderOptions())
        fill(library, realistic_vectors(count, dim=encoder.identity.dim))
    library.close()
    return folder / "lib"


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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--vectors", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/startup.json")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="searchapp-startup-"))
    started = time.perf_counter()
    library = build_library(work, args.vectors)
    print(f"library of {args.vectors:,} photos built in {time.perf_counter() - started:.0f} s")
    photo = query_photo(work)
    command = [sys.executable, "-m", "searchapp", "search", "--image", str(photo)]
    command += ["--library", str(library), "--json"]
    walls = []
    for _ in range(args.runs):
        started = time.perf_counter()
        result = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
        walls.append(time.perf_counter() - started)
        if result.returncode != 0:
            raise SystemExit(f"search failed:\n{result.stderr[-2000:]}")
    hits = json.loads(result.stdout)
    stage_runs = [
        json.loads(
            subprocess.run(
                [sys.executable, "-c", STAGES, str(library), str(photo)],
                capture_output=True,
                text=True,
                check=True,
                cwd=ROOT,
            ).stdout
        )
        for _ in range(3)
    ]
    stages = {"python start": round(statistics.median(interpreter_ms() for _ in range(3)), 1)}
    stages |= {name: statistics.median(run[name] for run in stage_runs) for name in stage_runs[0]}
    print(f"searchapp search --image, cold: median {statistics.median(walls):.2f} s, "
          f"runs {', '.join(f'{w:.2f}' for w in walls)} s")  # fmt: skip
    for name, value in stages.items():
        print(f"  {name:<28} {value:8.1f} ms")
    result_json = {
        "date": datetime.now().strftime("%Y-%m-%dT%H:%M:%S"),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores",
        "encoder": ENCODER,
        "vectors": args.vectors,
        "hits": len(hits.get("results", hits)) if isinstance(hits, dict) else len(hits),
        "cold_search_s": [round(w, 3) for w in walls],
        "cold_search_median_s": round(statistics.median(walls), 3),
        "stages_ms": stages,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result_json, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
