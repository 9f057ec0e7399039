"""How fast one library takes photos that are already embedded: what a Ray cluster's shards
hand the library's machine, and so the most photos a second any cluster can index into one
library.

    python benchmarks/commit_rate.py [--photos 20000] [--regions 35] [--batch 64]
                                     [--db URL [--writers N]] [--out FILE]

Each photo is committed as a Ray run commits a shard row: a NewImage with its regions, in
batches through `commit_batch` (the catalog's transaction, then the loaded indexes follow it),
and the indexes are saved at the end, as a run's last commit does. The vectors are synthetic
(unit vectors, CLIP's 512 dimensions); nothing is read or embedded. Per photo: one scene and
--regions - 1 others, objects and tiles in the ratio of the shared photos' hybrid run (7803
regions for 225 photos: 34.7 a photo). Objects and tiles are int8-coded once the library holds
1024 of them, as a real library's are. Reported: photos and regions a second over the whole run
and over its last fifth (the catalog and indexes then hold four fifths of the photos), and the
final save. Writes benchmarks/results/commit_rate.json.
"""

from __future__ import annotations

import argparse
import multiprocessing
import time
from pathlib import Path
from typing import Any

import numpy as np
from bench_results import RESULTS, scratch_folder, write_result

from searchapp.library import Library
from searchapp.records import (
    CatalogBatch,
    EncoderIdentity,
    FileStat,
    ImageMeta,
    NewImage,
    RegionData,
)
from searchapp.vectors.faiss_index import commit_batch

DIM = 512
TILES = 24  # of the regions a photo has besides its scene; objects are the rest


def photo_batch(start: int, count: int, regions: int, rng: np.random.Generator) -> CatalogBatch:
    batch = CatalogBatch()
    vectors = rng.normal(size=(count, regions, DIM)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=2, keepdims=True)
    for offset in range(count):
        i = start + offset
        kinds = ["scene"] + ["tile"] * min(TILES, regions - 1)
        kinds += ["object"] * (regions - len(kinds))
        made = [
            RegionData(
                kind, (0, 0, 100 + n, 100), vectors[offset, n], "dog" if kind == "object" else None
            )
            for n, kind in enumerate(kinds)
        ]
        meta = ImageMeta(4000, 3000, "JPEG", 1.6e9 + i, "exif", "Apple", "iPhone 12")
        stat = FileStat(f"/archive/{i // 1000:04d}/{i:08d}.jpg", 3_000_000, i)
        batch.new.append(NewImage(stat, f"{i:064x}", meta, made))
    return batch


def run(
    photos: int, regions: int, batch_size: int, db: str | None, folder: Path, first: int = 0
) -> dict:
    rng = np.random.default_rng(first)
    with Library(folder, db) as lib:
        if lib.catalog.encoder_identity() is None:
            identity = EncoderIdentity("clip:synthetic", "none", DIM, "none")
            lib.catalog.set_encoder_identity(identity)
        generation = lib.catalog.vector_generation()
        tail_from = photos - photos // 5
        started = time.perf_counter()
        tail_started = started
        made_s = 0.0
        for start in range(0, photos, batch_size):
            if start >= tail_from and tail_started == started:
                tail_started, tail_made = time.perf_counter(), made_s
            began = time.perf_counter()
            batch = photo_batch(first + start, min(batch_size, photos - start), regions, rng)
            made_s += time.perf_counter() - began
            generation = commit_batch(lib.catalog, lib.indexes, batch, generation)
        committed = time.perf_counter() - started - made_s
        tail = time.perf_counter() - tail_started - (made_s - tail_made)
        began = time.perf_counter()
        lib.indexes().save_all(generation)
        save_s = time.perf_counter() - began
        counts = lib.catalog.counts()[2]
    total = photos / (committed + save_s)
    return {
        "photos": photos,
        "regions_per_photo": regions,
        "regions_by_kind": counts,
        "batch": batch_size,
        "catalog": "postgresql" if db else "sqlite",
        "commit_s": round(committed, 1),
        "save_s": round(save_s, 1),
        "photos_per_s": round(total, 1),
        "regions_per_s": round(total * regions),
        "last_fifth_photos_per_s": round((photos - tail_from) / tail, 1),
    }


def _writer(photos: int, regions: int, batch: int, db: str, first: int, report: Any) -> None:
    report[first] = run(photos, regions, batch, db, scratch_folder("commit-writer"), first)


def several_writers(photos: int, regions: int, batch: int, db: str, writers: int) -> dict:
    """`writers` processes, each with its library folder, committing photos/writers each into
    one PostgreSQL catalog at once: photos a second over the wall time until all are done."""
    with Library(scratch_folder("commit-setup"), db) as lib:  # the encoder, recorded once
        lib.catalog.set_encoder_identity(EncoderIdentity("clip:synthetic", "none", DIM, "none"))
    context = multiprocessing.get_context("spawn")
    share = photos // writers
    with context.Manager() as manager:
        report = manager.dict()
        started = time.perf_counter()
        processes = [
            context.Process(target=_writer, args=(share, regions, batch, db, n * share, report))
            for n in range(writers)
        ]
        for process in processes:
            process.start()
        for process in processes:
            process.join()
        wall = time.perf_counter() - started
        runs = list(report.values())
    if len(runs) != writers:
        raise SystemExit("a writer failed; see its traceback above")
    return {
        "writers": writers,
        "photos": share * writers,
        "regions_per_photo": regions,
        "wall_s": round(wall, 1),
        "photos_per_s": round(share * writers / wall, 1),
        "each": runs,
    }


def fresh_database(url: str, name: str) -> str:
    """A new, empty database named `name` on the server of `url`, so that each run starts
    from nothing; its URL."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    server = make_url(url)
    engine = create_engine(server.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    return server.set(database=name).render_as_string(hide_password=False)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--photos", type=int, default=20_000)
    parser.add_argument("--regions", type=int, default=35, help="a photo's, its scene included")
    parser.add_argument("--batch", type=int, default=64, help="photos a commit")
    parser.add_argument(
        "--db",
        help="a PostgreSQL server's URL (each run makes its own database on it); "
        "default SQLite in the library",
    )
    parser.add_argument(
        "--writers", type=int, default=1, help="with --db: also this many processes at once"
    )
    parser.add_argument("--out", type=Path, default=RESULTS / "commit_rate.json")
    args = parser.parse_args()
    rows: list[dict] = []
    if args.db and args.writers > 1:
        db = fresh_database(args.db, "commit_rate_writers")
        row = several_writers(args.photos, args.regions, args.batch, db, args.writers)
        print(
            f"{row['photos']:,} photos of {args.regions} regions by {args.writers} writers at "
            f"once into postgresql: {row['photos_per_s']} photos/s ({row['wall_s']} s)",
            flush=True,
        )
        rows.append(row)
    for regions in sorted({1, args.regions}):
        db = fresh_database(args.db, f"commit_rate_{regions}") if args.db else None
        row = run(args.photos, regions, args.batch, db, scratch_folder("commit-rate"))
        rows.append(row)
        print(
            f"{row['photos']:,} photos of {regions} regions into {row['catalog']}: "
            f"{row['photos_per_s']} photos/s ({row['regions_per_s']:,} regions/s; last fifth "
            f"{row['last_fifth_photos_per_s']} photos/s), commits {row['commit_s']} s, "
            f"final save {row['save_s']} s",
            flush=True,
        )
    write_result(
        args.out,
        {"vectors": "synthetic unit vectors, 512-d", "runs": rows},
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
