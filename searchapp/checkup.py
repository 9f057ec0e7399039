"""`searchapp check`: is a library consistent, and what can be mended without re-embedding.

It compares the three things a library is: the catalog (SQLite's own integrity check, orphan
rows, photos no search can reach), the FAISS index files (the ids each holds against the
catalog's regions, and a sample of self-lookups), and the files on disk (every photo in search
still there unchanged, every set-aside copy still in its move folder). `mend` repairs what needs
no encoder: index files are rebuilt from the catalog's vectors, orphan rows are deleted, a
set-aside photo found back at its original place (a killed `dupes --undo`) returns to search,
stale index files are removed. A catalog that fails the integrity check is marked damaged and
nothing else is done to it: no command writes to it until it passes again.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from searchapp.dupes.moves import already_back, original_place
from searchapp.records import REGION_KINDS, CatalogBatch
from searchapp.store.catalog import Catalog
from searchapp.store.integrity import damaged, sqlite_file
from searchapp.vectors.faiss_index import IndexStore
from searchapp.vectors.layouts import index_files, stored_ids

SELF_LOOKUPS = 200  # per kind: enough to catch a file of other vectors, cheap at any size


@dataclass(frozen=True)
class Finding:
    what: str  # a short name: integrity, index, orphans, unsearchable, missing, changed, ...
    detail: str  # one line for people, naming the file
    fix: str  # what mends it: "searchapp check --repair" or the command to run
    mendable: bool  # by `check --repair`, without re-embedding
    subject: str = ""  # the file or region kind it is about, for the repair


@dataclass
class Checkup:
    findings: list[Finding] = field(default_factory=list)
    mended: list[str] = field(default_factory=list)
    checked: dict[str, int] = field(default_factory=dict)
    not_checked: list[str] = field(default_factory=list)  # what was left alone, and why

    @property
    def clean(self) -> bool:
        return not self.findings

    def as_dict(self) -> dict[str, object]:
        return {
            "clean": self.clean,
            "checked": self.checked,
            "findings": [asdict(finding) for finding in self.findings],
            "mended": self.mended,
            "not_checked": self.not_checked,
            "complete": not self.not_checked,
        }


Stores = Callable[[], IndexStore | None]  # the library's indexes; None while it has no vectors


def examine(
    catalog: Catalog,
    stores: Stores,
    directory: Path,
    writer: Callable[[], str | None] = lambda: None,
) -> Checkup:
    """Everything `check` looks at. `stores` is asked only once the catalog proved sound.
    While a `writer` holds the library's write lock (asked before and after the index files
    are read: one may start meanwhile), the index files are left alone: a build or a save
    under way would read as a leftover or a stale file."""
    result = Checkup()
    problems = catalog.integrity_problems()
    if problems:
        detail = "; ".join(problems[:3]) + (
            f" (and {len(problems) - 3} more)" * (len(problems) > 3)
        )
        error = damaged(catalog.url, f"integrity check: {detail}")  # marks it: no more writes
        result.findings.append(Finding("integrity", str(error), "see the message", False))
        return result
    if catalog.mark_sound():
        where = sqlite_file(catalog.url) or catalog.url
        result.mended.append(f"{where} passes SQLite's integrity check: writes allowed again")
    _check_rows(catalog, result)
    before = len(result.findings)
    busy = writer()
    if not busy:
        _check_index_files(catalog, stores, directory, result)
        busy = writer()
    if busy:  # what the index files showed may be the writer's work under way
        del result.findings[before:]
        result.not_checked.append(
            f"the index files: {busy} is writing them; check again when it ends"
        )
    _check_files(catalog, result)
    return result


def _check_index_files(catalog: Catalog, stores: Stores, directory: Path, result: Checkup) -> None:
    store = stores()
    if store is not None:
        _check_indexes(catalog, store, directory, result)
        return
    # no vectors, so no index file belongs here (a catalog replaced by an empty one?)
    for leftover in index_files(directory):
        result.findings.append(
            Finding(
                "leftover",
                f"{leftover} holds vectors, but the catalog has none (replaced by an empty one?)",
                "searchapp check --repair removes it; `searchapp index` your folders again",
                True,
                str(leftover),
            )
        )


def _check_rows(catalog: Catalog, result: Checkup) -> None:
    lost_regions, lost_labels = catalog.orphans()
    if lost_regions or lost_labels:
        result.findings.append(
            Finding(
                "orphans",
                f"{lost_regions} regions and {lost_labels} labels belong to no photo",
                "searchapp check --repair deletes them",
                True,
            )
        )
    for image in catalog.images_without_scene():
        result.findings.append(
            Finding(
                "unsearchable",
                f"{image.path} has no vector (a photo's scene, a video's frames): no search "
                "can find it",
                "searchapp check --repair drops its row; then `searchapp index` its folder",
                True,
                image.path,
            )
        )


def _check_indexes(catalog: Catalog, store: IndexStore, directory: Path, result: Checkup) -> None:
    generation = catalog.vector_generation()
    for kind in REGION_KINDS:
        ids = np.concatenate(
            [chunk for chunk, _ in catalog.region_vectors(kind, store.dim)] or [np.zeros(0)]
        ).astype(np.int64)
        result.checked[f"{kind} vectors"] = len(ids)
        problem = _index_problem(catalog, store, kind, ids, generation)
        if problem:
            result.findings.append(
                Finding(
                    "index",
                    f"{kind}: {problem}",
                    "searchapp check --repair rebuilds it",
                    True,
                    kind,
                )
            )
    known = {path.name for kind in REGION_KINDS for path in store.saved_files(kind, generation)}
    for leftover in index_files(directory):
        if leftover.name not in known:
            result.findings.append(
                Finding(
                    "leftover",
                    f"{leftover} is no current index file (an earlier generation or a torn write)",
                    "searchapp check --repair removes it",
                    True,
                    str(leftover),
                )
            )


def _index_problem(
    catalog: Catalog, store: IndexStore, kind: str, ids: np.ndarray, generation: int
) -> str | None:
    record = catalog.index_record(kind)
    if record is None:
        return "no index file recorded" if len(ids) else None
    saved_generation, saved_count = record
    path = store.saved_files(kind, saved_generation)[0]
    if saved_generation != generation:
        return f"the index file is of generation {saved_generation}, the catalog {generation}"
    try:
        index = store.read_saved(kind, saved_generation)
    except FileNotFoundError as exc:
        return f"{exc.filename} is missing"
    except RuntimeError as exc:
        return f"{path} is unreadable (torn or not an index file: {_short(exc)})"
    held = np.sort(stored_ids(index))
    if (
        index.ntotal != saved_count
        or len(held) != saved_count
        or not np.array_equal(held, np.sort(ids))
    ):
        extra = len(np.setdiff1d(held, ids))
        absent = len(np.setdiff1d(ids, held))
        return (
            f"{path} holds {index.ntotal} vectors: {absent} of the catalog's are not in it, "
            f"{extra} in it are not in the catalog"
        )
    return _self_lookups(catalog, store, index, kind, path)


def _short(exc: Exception) -> str:
    """faiss's C++ message, whose last clause says what failed, cut to fit a line."""
    text = str(exc).splitlines()[0]
    return text.rsplit("Error:", 1)[-1].strip()[:80]


def _self_lookups(
    catalog: Catalog, store: IndexStore, index: Any, kind: str, path: Path
) -> str | None:
    """A sample of the catalog's vectors must each find itself: the file holds these vectors
    under these ids, not others."""
    from searchapp.vectors.faiss_index import search

    sample_ids, sample_vectors = [], []
    for ids, vectors in catalog.region_vectors(kind, store.dim):
        step = max(1, len(ids) // SELF_LOOKUPS)
        sample_ids.extend(ids[::step].tolist())
        sample_vectors.append(vectors[::step])
    if not sample_ids:
        return None
    queries = np.concatenate(sample_vectors)[: SELF_LOOKUPS * 4]
    # a PQ index's codes order near neighbours loosely: its search re-ranks, as queries do
    scores, found = search(index, queries, 10, exact=store.exact_vectors(kind, index))
    wrong = sum(
        1
        for own, row_ids, row_scores in zip(sample_ids, found, scores, strict=False)
        if not _found_itself(own, row_ids, row_scores)
    )
    return (
        f"{path}: {wrong} of {len(queries)} stored vectors do not find themselves"
        if wrong
        else None
    )


def _found_itself(own: int, ids: np.ndarray, scores: np.ndarray) -> bool:
    """First, or tied with the first: a byte-identical copy holds the very same vector."""
    where = np.flatnonzero(ids == own)
    return bool(len(where)) and scores[where[0]] >= scores[0] - 1e-4


def _check_files(catalog: Catalog, result: Checkup) -> None:
    photos = catalog.all_images()
    result.checked["photo files"] = len(photos)
    for image in photos:
        try:
            st = os.stat(image.path)
        except OSError:
            result.findings.append(
                Finding(
                    "missing",
                    f"{image.path} is no longer on disk",
                    "reconnect its drive; if a `dupes --apply` was cut short, run its "
                    "`dupes --undo JOURNAL`; else `searchapp index` its folder drops it",
                    False,
                    image.path,
                )
            )
            continue
        if (st.st_size, st.st_mtime_ns) != (image.size, image.mtime_ns):
            result.findings.append(
                Finding(
                    "changed",
                    f"{image.path} changed on disk since it was indexed",
                    "searchapp index its folder",
                    False,
                    image.path,
                )
            )
    aside = catalog.set_aside_photos()
    result.checked["set-aside files"] = len(aside)
    for image in aside:
        if os.path.lexists(image.path):
            continue
        home = original_place(image.path, image.size, image.content_hash)
        if home is not None:
            result.findings.append(
                Finding(
                    "back",
                    f"{home} is back from the move folder but still set aside as {image.path}",
                    "searchapp check --repair returns it to search",
                    True,
                    home,
                )
            )
        else:
            result.findings.append(
                Finding(
                    "gone",
                    f"{image.path} (a copy set aside by dupes --move-to) is no longer on disk",
                    "if its drive is unplugged, plug it in; if you deleted the set-aside "
                    "copies, `searchapp check --repair --forget-deleted-copies` forgets them",
                    False,  # an unplugged drive looks the same: only the user can tell
                    image.path,
                )
            )


def mend(
    catalog: Catalog,
    stores: Stores,
    commit: Callable[[CatalogBatch], None],
    found: Checkup,
    forget_deleted_copies: bool = False,
) -> list[str]:
    """Repair what `examine` found mendable; what was done, one line each."""
    done: list[str] = []
    kinds: set[str] = set()
    for finding in found.findings:
        if finding.what == "orphans":
            catalog.delete_orphans()
            kinds.update(REGION_KINDS)
            done.append(f"deleted {finding.detail}")
        elif finding.what == "index":
            kinds.add(finding.subject)
        elif finding.what == "leftover":
            Path(finding.subject).unlink(missing_ok=True)
            done.append(f"removed {finding.subject}")
    unsearchable = [f for f in found.findings if f.what == "unsearchable"]
    if unsearchable:
        ids = [image.id for image in catalog.images_without_scene()]
        commit(CatalogBatch(deleted_ids=ids))
        done.append(f"dropped {len(ids)} items without a vector; index their folders")
    gone = [f.subject for f in found.findings if f.what == "gone" and forget_deleted_copies]
    if gone:
        ids = [image.id for image in catalog.set_aside_photos() if image.path in set(gone)]
        commit(CatalogBatch(deleted_ids=ids))  # their vectors left the indexes when set aside
        done.append(f"forgot {len(ids)} set-aside copies no longer on disk")
    returned = CatalogBatch()
    for image in catalog.set_aside_photos():
        home = (
            None
            if os.path.lexists(image.path)
            else original_place(image.path, image.size, image.content_hash)
        )
        if home is not None and already_back(image.path, home, catalog, returned):
            done.append(f"returned {home} to search")
    if not returned.is_empty():
        commit(returned)
    store = stores() if kinds else None
    if store is not None:
        store.rebuild_all(sorted(kinds))
        done.append(f"rebuilt the {', '.join(sorted(kinds))} index from the catalog")
    return done
