"""The fault suite's kill -9 tests, run again under many seeds: more kills, at other points.

    python benchmarks/torture.py [--seeds 10] [--first 100]

Each seed reruns the kill tests of tests/integration/test_faults.py with SEARCHAPP_FAULTS_SEED
set, so that every kill lands at another seeded point. Per seed that is 10 kill -9s: 4 during a
scene-only `index` and 2 during an all-regions one (each followed by `searchapp check` and a
resume), 1 during `dupes --apply` and 2 during `dupes --undo` (files byte-identical afterwards,
`check` clean), and 1 between an index file's temporary copy and its rename. A seed counts as
survived when every one of its assertions held: the library consistent after each kill (check
finds at most an index file behind the catalog, which the next open rebuilds), and clean once
resumed. CI runs one seed (16).

Writes benchmarks/results/torture.json.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

from bench_results import RESULTS, write_result

ROOT = Path(__file__).resolve().parents[1]
KILL_TESTS = "killed"  # the -k expression: the tests that kill -9 a command
KILLS_PER_SEED = 10


def run_seed(seed: int) -> tuple[bool, float, str]:
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         "tests/integration/test_faults.py", "-k", KILL_TESTS],
        cwd=ROOT,
        env={**os.environ, "SEARCHAPP_FAULTS_SEED": str(seed)},
        capture_output=True,
        text=True,
    )  # fmt: skip
    return result.returncode == 0, time.monotonic() - started, result.stdout[-3000:]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--first", type=int, default=100, help="the first seed")
    args = parser.parse_args()
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    seeds = []
    for seed in range(args.first, args.first + args.seeds):
        survived, seconds, tail = run_seed(seed)
        print(f"seed {seed}: {'survived' if survived else 'FAILED'} in {seconds:.0f} s")
        if not survived:
            print(tail)
        seeds.append({"seed": seed, "survived": survived, "seconds": round(seconds, 1)})
    survived = sum(seed["survived"] for seed in seeds)
    write_result(
        RESULTS / "torture.json",
        {
            "commit": commit,
            "what": "kill -9 at seeded points of index, dupes --apply, dupes --undo and an "
            "index save, each followed by `searchapp check`; tests/integration/test_faults.py",
            "kills_per_seed": KILLS_PER_SEED,
            "seeds": seeds,
            "kills": KILLS_PER_SEED * len(seeds),
            "kills_in_seeds_survived": KILLS_PER_SEED * survived,
            "seeds_failed": [seed["seed"] for seed in seeds if not seed["survived"]],
        },
    )
    return 0 if survived == len(seeds) else 1


if __name__ == "__main__":
    sys.exit(main())
