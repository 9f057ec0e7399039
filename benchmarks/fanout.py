"""One query over several libraries against the same photos in one library, side by side.

    python benchmarks/fanout.py [--vectors 100000] [--libraries 4] [--queries 40]

--vectors synthetic scene vectors of CLIP ViT-B-32's dimension, clustered and anisotropic as
query_latency.py makes them, fill one library; the same vectors, dealt out in turn, fill
--libraries libraries of a block each (the fan-out of docs/scale.md: a library per disk or per
shard). Each query goes through searchapp.query.fanout.search_libraries, as `searchapp search
--library ...` calls it, over the one library and over the several, alternately, in libraries
opened as a query process opens them (the quick-start encoder from a randomly initialised
ViT-B-32: latency does not depend on the weights). Word queries and image queries (a crop of a
real phone photo, unchecked: the rows' files are made up) are timed; p50 and p95 of the whole
call, and how many of the one library's top 10 the several return (each library's index is the
one searchapp builds for its own size, so the two may differ where an IVF is approximate).

The several libraries are then each served by `searchapp serve` in a process of its own and
searched through their addresses (`--library http://...`), as libraries on other machines are:
here all four servers share this machine's cores, so the figure bounds the wire's cost and not
the parallel speed of four machines. One library searched here and through its server, side by
side, gives the cost of the wire alone.

Writes benchmarks/results/fanout.json.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from bench_results import random_vit_b32, scratch_folder, write_result
from query_latency import (
    ENCODER,
    PHONE12MP,
    PHRASES,
    ROOT,
    clustered_vectors,
    fill,
    real_photos,
    write_query_photos,
)

from searchapp.encoders.base import EncoderOptions  # importable: query_latency put ROOT on the path
from searchapp.library import Library


def percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "p50_ms": round(1000 * statistics.median(ordered), 2),
        "p95_ms": round(1000 * ordered[int(0.95 * (len(ordered) - 1))], 2),
    }


def build(work: Path, vectors: np.ndarray, parts: int) -> tuple[Path, list[Path]]:
    """The one library and the several, their encoder recorded as a first run records it."""
    checkpoint = Path(random_vit_b32(work))
    options = EncoderOptions(clip_weights=checkpoint, allow_download=False)
    whole = work / "whole"
    with Library(whole) as writer, writer.writing():
        encoder = writer.encoder(ENCODER, options)  # in full: leaves what queries start from
        fill(writer, vectors)
    shares = [work / f"part{i}" for i in range(parts)]
    block = -(-len(vectors) // parts)
    for i, place in enumerate(shares):
        with Library(place) as writer, writer.writing():
            writer._adopt(encoder, options)  # recorded as a first run records it, not reloaded
            fill(writer, vectors[i * block : (i + 1) * block], first_row=i * block)
    return whole, shares


@contextlib.contextmanager
def served(places: list[Path]) -> Iterator[list[str]]:
    """`searchapp serve` of each library, a process each on a free port: their addresses."""
    logs = [place.with_suffix(".serve.txt") for place in places]
    servers = []
    for place, log in zip(places, logs, strict=True):
        with open(log, "w") as out:  # a file, never a pipe nobody reads once it has started
            command = ["serve", "--library", str(place), "--port", "0"]
            servers.append(
                subprocess.Popen(
                    [sys.executable, "-m", "searchapp", *command],
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    env={**os.environ, "PYTHONPATH": str(ROOT)},
                )
            )
    try:
        addresses = []
        for server, log in zip(servers, logs, strict=True):
            deadline = time.monotonic() + 120
            while not (found := re.search(r"http://\S+/", log.read_text())):
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"searchapp serve did not start: {log.read_text()}")
                time.sleep(0.2)
            addresses.append(found.group(0))
        yield addresses
    finally:
        for server in servers:
            server.send_signal(signal.SIGINT)
        for server in servers:
            server.wait(timeout=30)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--vectors", type=int, default=100_000)
    parser.add_argument("--libraries", type=int, default=4)
    parser.add_argument("--queries", type=int, default=40)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/fanout.json")
    args = parser.parse_args()

    from searchapp.ingest.regions import REGION_KINDS
    from searchapp.query.fanout import search_libraries
    from searchapp.query.remote import RemoteLibrary
    from searchapp.query.search import Query, Term

    work = scratch_folder("searchapp-fanout-")
    vectors = clustered_vectors(args.vectors, 512)
    started = time.perf_counter()
    whole_place, share_places = build(work, vectors, args.libraries)
    built = time.perf_counter() - started
    crops = write_query_photos(work, real_photos(PHONE12MP))
    one = [Library(whole_place, create=False)]
    several = [Library(place, create=False) for place in share_places]

    def query(i: int, words: bool) -> Query:
        term = (
            Term("text", PHRASES[i % len(PHRASES)]) if words else Term("image", str(crops[i % 5]))
        )
        return Query((term,), k=10, kinds=REGION_KINDS, verify=False)

    cases: dict[str, Any] = {}
    with served(share_places) as addresses:
        far: list[Any] = [RemoteLibrary(address) for address in addresses]
        ways = {  # each way of asking, in turn for every query
            "one": one,
            "several": several,
            "several_served": far,
            "part_here": several[:1],
            "part_served": far[:1],
        }
        for name, words in (("words", True), ("image", False)):
            times: dict[str, list[float]] = {label: [] for label in ways}
            overlap, served_same = [], []
            for libraries in ways.values():  # warm: models, sessions, index files
                search_libraries(libraries, query(0, words))
            for i in range(args.queries):
                answers = {}
                for label, libraries in ways.items():
                    start = time.perf_counter()
                    answers[label] = search_libraries(libraries, query(i, words))
                    times[label].append(time.perf_counter() - start)
                mine = {hit.path for hit in answers["several"]}
                overlap.append(len(mine & {hit.path for hit in answers["one"]}) / 10)
                through = [hit.path.split(":", 2)[2] for hit in answers["several_served"]]
                served_same.append(through == [hit.path for hit in answers["several"]])
            cases[name] = {
                "one_library": percentiles(times["one"]),
                f"{args.libraries}_libraries": percentiles(times["several"]),
                f"{args.libraries}_libraries_served": percentiles(times["several_served"]),
                "one_part_here": percentiles(times["part_here"]),
                "one_part_served": percentiles(times["part_served"]),
                "top10_overlap": round(statistics.fmean(overlap), 3),
                "served_answers_same": all(served_same),
            }
    import faiss

    def layout(lib: Library) -> str:
        index = lib.indexes().get("scene", persist=False)
        ivf = faiss.try_extract_index_ivf(getattr(index, "base", index))
        return f"IVF{ivf.nlist}, nprobe={ivf.nprobe}" if ivf is not None else "exact (fp16)"

    result = {
        "vectors": args.vectors,
        "vectors_kind": "synthetic (clustered, anisotropic), dim 512",
        "libraries": args.libraries,
        "layouts": {"one": layout(one[0]), "each of several": layout(several[0])},
        "encoder": f"{ENCODER}, local random init (speed only)",
        "queries": args.queries,
        "build_s": round(built, 1),
        "search_path": "searchapp.query.fanout.search_libraries, k=10, all kinds, no check",
        "served": "each of the several by `searchapp serve` in its own process, on this machine",
        **cases,
    }
    write_result(args.out, result)
    for lib in one + several:
        lib.close()
    print(
        f"{args.vectors:,} synthetic vectors in one library ({result['layouts']['one']}) and "
        f"in {args.libraries} of {args.vectors // args.libraries:,} "
        f"({result['layouts']['each of several']}); {args.queries} queries each"
    )
    n = args.libraries
    columns = ["one_library", f"{n}_libraries", f"{n}_libraries_served"]
    columns += ["one_part_here", "one_part_served"]
    print(f"p50 / p95 ms {'':4}" + "".join(f"{c:>24}" for c in columns) + "  overlap  same")
    for name in ("words", "image"):
        row = "".join(
            f"{cases[name][c]['p50_ms']:>15.2f} / {cases[name][c]['p95_ms']:>6.2f}" for c in columns
        )
        print(
            f"{name:16}{row}  {cases[name]['top10_overlap']:7.3f}  "
            f"{cases[name]['served_answers_same']}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
