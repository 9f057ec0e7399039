"""FAISS indexes keyed by catalog region id: one per region kind, saved atomically.

Index files are caches. Each file is named after the catalog's vector generation it holds
(`index-scene-g42.faiss`); the catalog records which generation and count it saved last. On open,
a file that is missing, unreadable, of another generation or of the wrong size is rebuilt from the
vectors kept in the catalog (float16, or int8 codes for objects and tiles), so nothing is ever
re-embedded to repair an index. A big IVF-PQ kind may be saved as the changes since an earlier
file instead (`index-scene-g45.changes`, lying on `index-scene-g42.faiss`: vectors/layered.py).
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from searchapp.errors import DiskFullError, UsageError
from searchapp.interrupts import held_interrupts
from searchapp.records import REGION_KINDS, CatalogBatch, VectorDelta
from searchapp.store.catalog import Catalog
from searchapp.vectors import ann, large, layered
from searchapp.vectors.ann import load as load
from searchapp.vectors.layered import Layered

# one copy of each; callers keep faiss_index.search and the rest
from searchapp.vectors.layouts import _disk_full, index_files, write_atomic
from searchapp.vectors.layouts import add as add
from searchapp.vectors.layouts import is_pq as is_pq
from searchapp.vectors.layouts import needs_rebuild as needs_rebuild
from searchapp.vectors.layouts import remove as remove
from searchapp.vectors.layouts import save_atomic as save_atomic
from searchapp.vectors.layouts import search as search

# additions a catch-up takes however small its file (a file of a few hundred vectors may
# take a run's two minutes of them: it stays exact up to this many, and so keeps its layout)
CATCH_UP_AT_LEAST = ann.EXACT_LIMIT


class IndexStore:
    """The FAISS indexes of one library, kept consistent with its catalog."""

    def __init__(self, directory: Path, catalog: Catalog, dim: int):
        self.directory = directory
        self.catalog = catalog
        self.dim = dim
        self._indexes: dict[str, Any] = {}
        self._generations: dict[str, int] = {}  # catalog generation each loaded index reflects
        self._lock = threading.Lock()
        self._mapped: set[str] = set()  # kinds loaded memory-mapped and read-only
        self._unsaved: set[str] = set()  # loaded kinds changed since their file was written
        # kinds another writer's batches passed by (PostgreSQL): made anew from the catalog
        # once, when saved or next read, instead of at each of the batches that follow
        self._behind: set[str] = set()
        # an IVF-PQ build's file, written beside the index files, and the index that maps it
        # (so the writer does not hold its lists), waiting for the save that renames it
        self._built: dict[str, tuple[Path, Any]] = {}
        # a mapped PQ index of each kind, and the generation of the file it maps: what changes
        # to it lie beside (a reader's own build maps a temporary file instead)
        self._files: dict[str, tuple[Any, int]] = {}
        self.repairs: list[str] = []  # what open() had to rebuild, for the CLI to report

    def path_for(self, kind: str, generation: int) -> Path:
        return self.directory / f"index-{kind}-g{generation}.faiss"

    def changes_path(self, kind: str, generation: int) -> Path:
        return self.directory / f"index-{kind}-g{generation}{layered.SUFFIX}"

    def saved_files(self, kind: str, generation: int) -> list[Path]:
        """The files the kind's save at a generation lies in: its index file, or its changes
        file and the index file they lie on."""
        changes = self.changes_path(kind, generation)
        if not changes.exists():
            return [self.path_for(kind, generation)]
        try:
            base = layered.base_generation(changes)
        except FileNotFoundError:  # a save replaced it since
            return [changes]
        return [changes] if base is None else [changes, self.path_for(kind, base)]

    def read_saved(self, kind: str, generation: int, *, persist: bool = False) -> Any:
        """The kind's index as saved at a generation: its file, or the changes beside an
        earlier one. A PQ file is memory-mapped (changes lie beside it, never in it), as is
        every reader's; a writer reads its other files into memory, to change them.
        FileNotFoundError where a file is gone, RuntimeError where one is unreadable."""
        for path in self.saved_files(kind, generation):
            if not path.exists():
                raise FileNotFoundError(errno.ENOENT, "missing", str(path))
        changes = self.changes_path(kind, generation)
        if changes.exists():
            return layered.read_changes(changes, lambda base: self.path_for(kind, base))
        path = self.path_for(kind, generation)
        index = load(path, mapped=True)
        return load(path) if persist and not large.is_pq(index) else index

    def _note_file(self, kind: str, index: Any, generation: int) -> Any:
        """Remember which of the kind's files a mapped PQ index maps (path_for `generation`)."""
        if not isinstance(index, Layered) and large.is_mapped(index) and large.is_pq(index):
            self._files[kind] = (index, generation)
        return index

    def _changeable(self, kind: str, index: Any, *, shared: bool) -> Any:
        """An index that takes changes: a mapped PQ index of one of the kind's files gets its
        changes beside it; another mapped one (a reader's own build) gets its lists copied."""
        if isinstance(index, Layered) or not large.is_mapped(index):
            return index
        mapped = self._files.get(kind)
        if mapped is not None and mapped[0] is index:
            try:  # the side index takes its quantiser from the file, opened again
                return Layered(index, self.path_for(kind, mapped[1]), mapped[1])
            except (OSError, RuntimeError):
                pass  # gone since it was mapped (another writer's save): copy the mapping
        large.writable(index, shared=shared)
        return index

    def get(self, kind: str, *, persist: bool, at_generation: int | None = None) -> Any:
        """The index of a kind, loaded or rebuilt. With persist, a rebuilt index is saved. With
        at_generation, the file of that generation is taken as it is (a batch committed since
        is about to be applied to it), so that following a batch never rebuilds."""
        with self._lock:
            if persist and kind in self._mapped:  # about to change: load a writable copy
                del self._indexes[kind]
                self._mapped.discard(kind)
            if kind in self._indexes and self._indexes[kind].d != self.dim_of(kind):
                del self._indexes[kind]  # another process re-encoded the kind: read it anew
                self._files.pop(kind, None)
                self._mapped.discard(kind)
            if kind not in self._indexes:
                index, generation = self._open(kind, persist=persist, at_generation=at_generation)
                self._indexes[kind], self._generations[kind] = index, generation
                self._behind.discard(kind)
            return self._indexes[kind]

    def _open(
        self, kind: str, *, persist: bool, at_generation: int | None, again: bool = True
    ) -> tuple[Any, int]:
        generation = self.catalog.vector_generation()
        wanted = generation if at_generation is None else at_generation
        record = self.catalog.index_record(kind)
        # a file of an earlier generation cannot be counted against the catalog of now
        expected = self.catalog.region_count(kind) if wanted == generation else None
        problem = None
        if record is None:
            problem = "no index file recorded" if expected else None
        else:
            saved_gen, saved_count = record
            if saved_gen < wanted:  # batches committed since it was saved: apply them
                caught = self._catch_up(kind, record, persist)
                if caught is not None:
                    return caught
            if saved_gen != wanted:
                problem = f"index file is stale (generation {saved_gen}, catalog {generation})"
            else:
                try:
                    index = self._note_file(
                        kind, self.read_saved(kind, saved_gen, persist=persist), saved_gen
                    )
                except FileNotFoundError as exc:
                    problem = f"index file {Path(exc.filename).name} is missing"
                except RuntimeError as exc:
                    name = self.saved_files(kind, saved_gen)[0].name
                    problem = f"index file {name} is unreadable ({str(exc).splitlines()[0]})"
                else:
                    counted = expected is None or index.ntotal == expected
                    dim = self.dim_of(kind)
                    if index.ntotal == saved_count and counted and index.d == dim:
                        if not persist and not isinstance(index, Layered):
                            self._mapped.add(kind)
                        return index, wanted
                    name = self.saved_files(kind, saved_gen)[0].name
                    problem = (
                        f"index file {name} holds {index.ntotal} vectors of dim {index.d}, "
                        f"catalog has {expected if expected is not None else saved_count} "
                        f"of dim {dim}"
                    )
            if again and self.catalog.index_record(kind) != record:  # a save overtook it
                return self._open(kind, persist=persist, at_generation=None, again=False)
        index = self.rebuild_from_catalog(kind, persist=persist)
        if problem:
            self.repairs.append(f"{kind}: {problem}; rebuilt from the catalog")
        if persist:
            index = self.save(kind, index, generation)
        return index, generation

    def _catch_up(
        self, kind: str, record: tuple[int, int], persist: bool
    ) -> tuple[Any, int] | None:
        """The kind's file of an earlier generation, with the batches committed since applied
        from the catalog's change log; None where the log cannot say, or the result does not
        count what the catalog does (the caller then rebuilds)."""
        saved_gen, saved_count = record
        # the log first: where it cannot say (a re-encoding, say), a writer has not read its
        # file whole for nothing. More additions than the file holds would change its layout.
        most = max(saved_count, CATCH_UP_AT_LEAST)
        changes = self.catalog.changes_since(kind, saved_gen, self.dim, most)
        if changes is None:
            return None
        try:
            index = self._note_file(
                kind, self.read_saved(kind, saved_gen, persist=persist), saved_gen
            )
        except (OSError, RuntimeError):
            return None  # gone (a save replaced it) or unreadable: the caller says which
        if index.ntotal != saved_count or index.d != self.dim_of(kind):
            return None
        changed = len(changes.removed_ids) or len(changes.added_ids)
        if changed or persist:  # a writer's save of a mapped PQ file writes its changes
            index = self._changeable(kind, index, shared=False)
        if changed:
            remove(index, changes.removed_ids.tolist())
            add(index, changes.added_ids, changes.added_vectors)
        if index.ntotal != changes.count or needs_rebuild(index):
            return None  # a change the log missed, or grown past its layout: rebuild
        if persist:
            index = self.save(kind, index, changes.generation)
        elif not changed and not isinstance(index, Layered):
            self._mapped.add(kind)
        return index, changes.generation

    def dim_of(self, kind: str) -> int:
        """The width of a kind's vectors: the encoder's, or the library's codec's."""
        return self.catalog.vector_dim(kind, self.dim)

    def rebuild_from_catalog(self, kind: str, *, persist: bool = True) -> Any:
        """The kind's index made anew from the catalog's vectors: exact, IVF or IVF-PQ by its
        size. An IVF-PQ index is built into a file: the writer's (persist) lies beside the
        index files until its save; a reader's is in a temporary folder, gone once mapped."""
        count = self.catalog.region_count(kind)
        vectors = lambda: self.catalog.region_vectors(kind, self.dim)  # noqa: E731
        if count > large.PQ_ABOVE:
            try:
                return self._build_pq(kind, count, vectors, persist)
            except UsageError as exc:  # the catalog has committed: the kind stays searchable
                self.repairs.append(f"{kind}: no IVF-PQ index ({exc}); built the fp16 IVF")
        return ann.build(self.dim_of(kind), count, vectors, ranges=self.catalog.code_ranges(kind))

    def _build_pq(self, kind: str, count: int, vectors: ann.Chunks, persist: bool) -> Any:
        dim, budget = self.dim_of(kind), large.memory_budget()
        # a reader's build is its own, in a temporary folder, gone once mapped; a writer's lies
        # beside the index files, named as they are, so that a killed build is a leftover
        folder = tempfile.TemporaryDirectory(prefix="searchapp-pq-") if not persist else None
        where = Path(folder.name) if folder else self.directory
        generation = self.catalog.vector_generation()
        path = where / f"{self.path_for(kind, generation).name}.build{os.getpid()}"
        if persist:  # this build replaces the writer's pending one; a reader's leaves it be
            self._drop_built(kind)
        try:
            index = large.build(dim, count, vectors, budget, path)
        except (OSError, RuntimeError) as exc:
            if not _disk_full(exc):
                raise
            raise DiskFullError(
                f"disk full while building the {kind} index in {where} (its shards and its "
                "file take about the lists' size twice); free space there and run "
                "`searchapp rebuild-index`: the catalog is intact"
            ) from exc
        finally:
            if folder:
                folder.cleanup()
        if persist:
            self._built[kind] = (path, index)
        return index

    def _drop_built(self, kind: str) -> None:
        built = self._built.pop(kind, None)
        if built is not None:
            built[0].unlink(missing_ok=True)

    def exact_vectors(self, kind: str, index: Any) -> large.ExactVectors | None:
        """What re-ranks a PQ index's candidates: the catalog's stored vectors of the kind. None
        for the other layouts, whose codes are the stored vectors."""
        if not is_pq(index):
            return None
        return lambda ids: self.catalog.vectors_of_regions(kind, ids, self.dim)

    def save(self, kind: str, index: Any, generation: int) -> Any:
        """Save a kind's index as of a generation, and record it; returns the index saved (made
        anew where it outgrew its layout, mapped from the new file where changes were merged)."""
        if needs_rebuild(index):  # grown or shrunk past its layout: retrain, re-tune
            index = self.rebuild_from_catalog(kind)
        path = self.path_for(kind, generation)
        kept = [path]
        built = self._built.pop(kind, None)
        if built is not None and built[1] is index:
            os.replace(built[0], path)  # the build wrote and synced it
            self._note_file(kind, index, generation)
        else:
            if built is not None:  # the build of an index since replaced
                built[0].unlink(missing_ok=True)
            if isinstance(index, Layered):
                index, kept = self._save_layered(kind, index, generation)
            else:
                if large.is_mapped(index):
                    if self.catalog.index_record(kind) == (generation, index.ntotal) and (
                        path.exists()
                    ):
                        self._unsaved.discard(kind)  # unchanged, and its file already holds it
                        return index
                    large.writable(index)  # mapped from a file of another generation
                save_atomic(index, path)
        self.catalog.set_index_record(kind, generation, index.ntotal)
        self._unsaved.discard(kind)
        self._remove_other_files(kind, keep=kept)
        return index

    def _save_layered(self, kind: str, index: Layered, generation: int) -> tuple[Any, list[Path]]:
        """A PQ kind's changes alone, beside the file they lie on; once they are many, the two
        merged into a new file, which the kind then maps. (index, the files it lies in)."""
        if index.worth_compacting():
            path = self.path_for(kind, generation)
            write_atomic(path, index.write_compacted)
            return self._note_file(kind, load(path, mapped=True), generation), [path]
        changes = self.changes_path(kind, generation)
        # a second save at one generation (no batch since) has nothing new to write
        if self.catalog.index_record(kind) != (generation, index.ntotal) or not changes.exists():
            write_atomic(changes, index.write_changes)
        return index, [changes, index.base_path]

    def save_all(self, generation: int) -> None:
        with self._lock:
            for kind in sorted(self._behind):
                self._indexes[kind] = self.rebuild_from_catalog(kind)
                self._generations[kind] = generation
            self._behind.clear()
            for kind, index in list(self._indexes.items()):
                if self._generations[kind] != generation:  # did not follow every batch
                    index = self.rebuild_from_catalog(kind)
                    self._generations[kind] = generation
                self._indexes[kind] = self.save(kind, index, generation)
            # the shards of an IVF-PQ build that was killed (a build removes its own)
            for leftover in self.directory.glob(".shards-*"):
                shutil.rmtree(leftover, ignore_errors=True)

    def _remove_other_files(self, kind: str, keep: list[Path]) -> None:
        """Earlier generations, and the temporary file of a save killed before its rename
        (saves hold the write lock, so no other save is under way)."""
        for candidate in index_files(self.directory):
            if candidate.name.startswith(f"index-{kind}-g") and candidate not in keep:
                with contextlib.suppress(OSError):
                    candidate.unlink()

    def apply_delta(
        self,
        kind: str,
        added: tuple[np.ndarray, np.ndarray],
        removed: list[int],
        base_generation: int,
        new_generation: int,
    ) -> None:
        """Follow a committed catalog batch that moved `base_generation` to `new_generation`."""
        if kind in self._behind:
            return  # made anew when saved: this batch is in the catalog it reads
        index = self.get(kind, persist=True, at_generation=base_generation)
        loaded_at = self._generations[kind]
        if loaded_at == new_generation:
            return  # loaded after the commit: the catalog already had these vectors
        if loaded_at != base_generation:
            index = self._indexes[kind] = self.rebuild_from_catalog(kind)
        else:
            if self._built.get(kind, (None, None))[1] is index:  # a PQ build, not yet saved:
                index = self.save(kind, index, loaded_at)  # its file is what changes lie on
            index = self._indexes[kind] = self._changeable(kind, index, shared=True)
            remove(index, removed)
            add(index, *added)
        self._generations[kind] = new_generation
        self._unsaved.add(kind)

    def follow(self, delta: VectorDelta, base_generation: int, new_generation: int) -> None:
        """Follow one committed catalog batch: apply it to the kinds it touched, and carry the
        others to the new generation unchanged, so that none is rebuilt for being untouched."""
        touched = set(delta.added_ids) | set(delta.removed_ids) | set(delta.recoded)
        if new_generation != base_generation + 1:
            # another writer's batch came between (on PostgreSQL several write at once): this
            # delta is not all that changed. Each loaded index is dropped, and made anew from
            # the catalog when saved or read: rebuilding it here cost a read of the whole kind
            # at every batch two writers interleave.
            with self._lock:
                for kind in list(self._indexes):
                    del self._indexes[kind]
                    self._files.pop(kind, None)
                    self._drop_built(kind)
                    self._generations.pop(kind, None)
                    self._mapped.discard(kind)
                    self._unsaved.discard(kind)
                    self._behind.add(kind)
            return
        for kind in delta.recoded:  # every vector of the kind changed width: read them anew
            with self._lock:
                self._behind.discard(kind)
                self._files.pop(kind, None)
                self._indexes[kind] = self.rebuild_from_catalog(kind)
                self._generations[kind] = new_generation
                self._mapped.discard(kind)
                self._unsaved.add(kind)
        for kind in touched - set(delta.recoded):
            ids = np.asarray(delta.added_ids.get(kind, []), dtype=np.int64)
            vectors = delta.added_vectors.get(kind, [])
            stacked = np.stack(vectors) if vectors else np.zeros((0, 1), np.float32)
            removed = delta.removed_ids.get(kind, [])
            self.apply_delta(kind, (ids, stacked), removed, base_generation, new_generation)
        with self._lock:
            for kind in set(REGION_KINDS) - touched:
                if self._generations.get(kind) == base_generation:
                    self._generations[kind] = new_generation
                if kind not in self._indexes or kind not in self._unsaved:
                    # its file still holds what it holds: a reader (a search while the region
                    # stage commits tiles) opens it as it is instead of rebuilding it
                    self._carry_file(kind, base_generation, new_generation)

    def _carry_file(self, kind: str, base_generation: int, new_generation: int) -> None:
        """Rename an unloaded kind's file of the base generation to the new one. A crash between
        the rename and the record leaves a missing file, which the next open rebuilds."""
        record = self.catalog.index_record(kind)
        if record is None or record[0] != base_generation:
            return
        for named in (self.path_for, self.changes_path):  # changes move, not the file they lie on
            source = named(kind, base_generation)
            if source.exists():
                os.replace(source, named(kind, new_generation))
                self.catalog.set_index_record(kind, new_generation, record[1])
                mapped = self._files.get(kind)
                if named == self.path_for and mapped is not None and mapped[1] == base_generation:
                    self._files[kind] = (mapped[0], new_generation)
                return

    def rebuild_all(self, kinds: list[str]) -> None:
        generation = self.catalog.vector_generation()
        with self._lock:
            for kind in kinds:
                self._behind.discard(kind)
                index = self.rebuild_from_catalog(kind)
                self._indexes[kind] = self.save(kind, index, generation)
                self._generations[kind] = generation


def commit_batch(
    catalog: Catalog,
    indexes: Callable[[], IndexStore],
    batch: CatalogBatch,
    base_generation: int,
) -> int:
    """The one way a batch of changes reaches the catalog and the indexes, for an indexing run
    and for duplicate moves alike: the catalog commits, then the loaded indexes follow, with
    Ctrl-C and kill held so that nothing lands between the two. `indexes` is called only when
    vectors changed (a run's first batches may hold failures alone, before any encoder).
    Returns the catalog's new vector generation."""
    with held_interrupts():
        generation, delta = catalog.apply(batch)
        if delta.added_ids or delta.removed_ids or delta.recoded:
            indexes().follow(delta, base_generation, generation)
    return generation
