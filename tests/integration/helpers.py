"""Helpers shared by the integration tests."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from searchapp.ingest.pipeline import IndexCallbacks, IndexOptions, IndexSummary
from searchapp.ingest.regions import RegionOptions
from searchapp.library import Library
from searchapp.vectors import ann


@dataclass
class Recorder:
    failures: list[tuple[str, str]] = field(default_factory=list)
    notes: list[tuple[str, str]] = field(default_factory=list)
    advanced: int = 0

    def callbacks(self, stop_after: int | None = None) -> IndexCallbacks:
        def on_advance(n: int) -> None:
            self.advanced += n
            if stop_after is not None and self.advanced >= stop_after:
                raise KeyboardInterrupt

        return IndexCallbacks(
            on_advance=on_advance,
            on_failure=lambda p, r: self.failures.append((p, r)),
            on_note=lambda p, r: self.notes.append((p, r)),
        )


# scene-only unless a test is about tiles: tiles multiply the encoder work of every test
OPTIONS = IndexOptions(
    workers=2, batch_size=4, commit_every=2, regions=RegionOptions(kinds=("scene",))
)
HYBRID = IndexOptions(workers=2, batch_size=16, commit_every=8)


def index(lib: Library, *paths: object, recorder: Recorder | None = None, **kw) -> IndexSummary:  # type: ignore[no-untyped-def]
    recorder = recorder or Recorder()
    return lib.index(
        [str(p) for p in paths],
        options=kw.pop("options", OPTIONS),
        callbacks=kw.pop("callbacks", recorder.callbacks()),
        **kw,
    )


def index_ids(lib: Library, kind: str = "scene") -> set[int]:
    index = lib.indexes().get(kind, persist=False)
    return set(ann.stored_ids(index).tolist())


def catalog_ids(lib: Library, kind: str = "scene") -> set[int]:
    ids: set[int] = set()
    for chunk, _ in lib.catalog.region_vectors(kind, lib.encoder_identity.dim):  # type: ignore[union-attr]
        ids.update(chunk.tolist())
    return ids


def assert_consistent(lib: Library) -> None:
    """The FAISS index holds exactly the catalog's regions, with the catalog's vectors."""
    fresh = Library(lib.directory)
    try:
        assert index_ids(fresh) == catalog_ids(fresh)
        index = fresh.indexes().get("scene", persist=False)
        for ids, vectors in fresh.catalog.region_vectors("scene", index.d):
            for region_id, vector in zip(ids[:5], vectors[:5], strict=False):
                np.testing.assert_array_equal(index.reconstruct(int(region_id)), vector)
    finally:
        fresh.close()


def paths_of(lib: Library) -> list[str]:
    return sorted(image.path for image in lib.catalog.all_images())
