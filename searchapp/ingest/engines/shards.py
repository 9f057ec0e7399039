"""Parquet shards: what a distributed indexing run writes as its results come back, one file a
batch, and what the library loads into its catalog. A killed run resumes from them.

A row is one photo: (path, size, mtime_ns, content hash, metadata, regions, float16 vectors),
or its error, or only its hash where the catalog already holds those bytes. Metadata and
regions are JSON, so any parquet reader can look inside; the vectors are one float16 blob per
photo, the regions' in order. A file appears whole or not at all (written aside, then renamed),
and a path seen twice (a retried task's second answer) is taken once.
"""

from __future__ import annotations

import dataclasses
import json
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from searchapp.errors import UsageError
from searchapp.records import FileStat, ImageMeta, RegionData

SUFFIX = ".parquet"
MAKER_FILE = "made-by.json"  # what made the shards: a run that would make other rows drops them
_BYTES_FIELDS = {f.name for f in dataclasses.fields(ImageMeta) if f.name == "phash"}


@dataclass
class ShardRow:
    stat: FileStat
    content_hash: str | None = None
    meta: ImageMeta | None = None  # None with a hash: the catalog holds these bytes already
    regions: list[RegionData] = dataclasses.field(default_factory=list)
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        vectors = [region.vector.astype(np.float16) for region in self.regions]
        return {
            "path": os.fsencode(self.stat.path),  # bytes: a name need not be UTF-8
            "size": self.stat.size,
            "mtime_ns": self.stat.mtime_ns,
            "content_hash": self.content_hash,
            "error": self.error,
            "meta": None if self.meta is None else _meta_json(self.meta),
            "regions": json.dumps([_region_json(region) for region in self.regions]),
            "vectors": np.stack(vectors).tobytes() if vectors else b"",
        }

    @classmethod
    def from_dict(cls, row: dict[str, Any]) -> ShardRow:
        stat = FileStat(os.fsdecode(row["path"]), int(row["size"]), int(row["mtime_ns"]))
        described = json.loads(row["regions"] or "[]")
        blob = np.frombuffer(row["vectors"] or b"", dtype=np.float16)
        vectors = blob.reshape(len(described), -1) if described else blob.reshape(0, 0)
        regions = [_region(item, vectors[i].astype(np.float32)) for i, item in enumerate(described)]
        meta = None if row["meta"] is None else _meta(row["meta"])
        return cls(stat, row["content_hash"], meta, regions, row["error"])


def _meta_json(meta: ImageMeta) -> str:
    data = dataclasses.asdict(meta)
    for name in _BYTES_FIELDS:
        data[name] = None if data[name] is None else data[name].hex()
    return json.dumps(data)


def _meta(text: str) -> ImageMeta:
    data = json.loads(text)
    for name in _BYTES_FIELDS:
        data[name] = None if data[name] is None else bytes.fromhex(data[name])
    return ImageMeta(**data)


def _region_json(region: RegionData) -> dict[str, Any]:
    data = dataclasses.asdict(region)
    data.pop("vector")
    return data


def _region(data: dict[str, Any], vector: np.ndarray) -> RegionData:
    data["bbox"] = tuple(data["bbox"])
    data["labels"] = [(name, prob) for name, prob in data["labels"]]
    return RegionData(vector=vector, **data)


class ShardFolder:
    """The shards of one library's distributed runs, until a run has loaded them all."""

    def __init__(self, directory: Path):
        self.directory = directory

    def keep_only_made_by(self, maker: str) -> int:
        """Shards are only resumed by a run that makes rows alike (`maker`: the encoders and
        region options): others are removed, and how many is returned."""
        stamp = self.directory / MAKER_FILE
        made_by = stamp.read_text() if stamp.is_file() else None
        if made_by is None and self.directory.is_dir() and any(self.directory.iterdir()):
            raise UsageError(
                f"{self.directory} holds files that no indexing run wrote there; give --shards "
                "an empty folder (or a new one) for the run's shards"
            )
        dropped = 0
        if made_by != maker:
            dropped = len(self.files())
            self.clear()
        self.directory.mkdir(parents=True, exist_ok=True)
        stamp.write_text(maker)
        return dropped

    def files(self) -> list[Path]:
        if not self.directory.is_dir():
            return []
        return sorted(self.directory.glob(f"*{SUFFIX}"))

    def write_table(self, table: Any) -> Path:
        """A pyarrow table of ShardRow.to_dict rows, as one new shard."""
        import pyarrow.parquet as pq

        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / f"{uuid.uuid4().hex}{SUFFIX}"
        aside = path.with_suffix(".partial")
        pq.write_table(table, aside)
        with open(aside, "rb") as written:
            os.fsync(written.fileno())  # whole on disk before its name says it is there
        os.replace(aside, path)
        return path

    def rows(self) -> Iterator[ShardRow]:
        """Every row of every whole shard, each path once (the first answer for it)."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        seen: set[tuple[str, int, int]] = set()
        for path in self.files():
            try:
                table = pq.read_table(path)
            except (pa.ArrowException, OSError):  # damaged since: its photos are embedded again
                path.unlink(missing_ok=True)
                continue
            for row in table.to_pylist():
                shard_row = ShardRow.from_dict(row)
                key = (shard_row.stat.path, shard_row.stat.size, shard_row.stat.mtime_ns)
                if key not in seen:
                    seen.add(key)
                    yield shard_row

    def clear(self) -> None:
        """Forget the shards once their rows are in the catalog (a copy of them stays there)."""
        for path in [*self.files(), *self.directory.glob("*.partial"), self.directory / MAKER_FILE]:
            path.unlink(missing_ok=True)
        if self.directory.is_dir() and not any(self.directory.iterdir()):
            self.directory.rmdir()
