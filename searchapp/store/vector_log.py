"""The vector change log: each committed batch's additions and removals, per region kind.

An index file holds a kind as it was at one generation. While an indexing run commits, the
catalog moves on, and a search that opened the file then rebuilt the kind from every stored
vector (minutes at ten million). With the log it applies the batches since its file instead:
the regions added since, read by id, and the ids removed since.

The log is pruned as index files are saved: what a kind's recorded file holds is not needed.
It is whole from `vectors.logged_since`; a re-encoded kind (every vector changed under the same
ids) logs RECODED, and its older files cannot be caught up.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from sqlalchemy import Engine, delete, select
from sqlalchemy.engine import Connection

from searchapp.records import VectorCatchUp, VectorDelta
from searchapp.store.tables import vector_changes

ADDED, REMOVED, RECODED = 1, 2, 3
LOGGED_SINCE = "vectors.logged_since"
GENERATION = "vectors.generation"
CATCH_UP_TRIES = 3  # reads the writer's commits overtook before giving up (then: a rebuild)


def _runs(ids: list[int]) -> list[tuple[int, int]]:
    """Ids, in any order, as sorted (first, last) runs of consecutive ids."""
    if not ids:
        return []
    ordered = np.unique(np.asarray(ids, dtype=np.int64))
    breaks = np.flatnonzero(np.diff(ordered) != 1) + 1
    return [(int(run[0]), int(run[-1])) for run in np.split(ordered, breaks)]


class VectorLog:
    engine: Engine
    _get: Callable[[Connection, str], str | None]  # the catalog's settings read
    _set: Callable[[Connection, str, str], None]  # the catalog's settings upsert
    vectors_of_regions: Callable[[str, np.ndarray, int], np.ndarray]
    region_count: Callable[[str], int]
    index_record: Callable[[str], tuple[int, int] | None]

    def _log_changes(self, conn: Connection, generation: int, delta: VectorDelta) -> None:
        """Log a batch's delta under the generation it made (in the batch's transaction)."""
        rows = []
        for change, by_kind in ((ADDED, delta.added_ids), (REMOVED, delta.removed_ids)):
            for kind, ids in by_kind.items():
                rows += [(kind, change, first, last) for first, last in _runs(ids)]
        rows += [(kind, RECODED, 0, -1) for kind in delta.recoded]
        if rows:
            conn.execute(
                vector_changes.insert(),
                [
                    {"kind": k, "generation": generation, "change": c, "first_id": f, "last_id": t}
                    for k, c, f, t in rows
                ],
            )

    def _restart_log(self, conn: Connection, generation: int) -> None:
        """Every vector went (a new encoder): no file from before can be caught up."""
        conn.execute(delete(vector_changes))
        self._set(conn, LOGGED_SINCE, str(generation))

    def _prune_log(self, conn: Connection, kind: str, generation: int) -> None:
        """A kind's file of `generation` is now the recorded one: what it holds goes."""
        conn.execute(
            delete(vector_changes).where(
                vector_changes.c.kind == kind, vector_changes.c.generation <= generation
            )
        )

    def changes_since(
        self, kind: str, generation: int, width: int, most: int | None = None
    ) -> VectorCatchUp | None:
        """What a kind's file of `generation` lacks against the catalog now, or None where the
        log cannot say (older than the log, re-encoded since, a save that recorded a newer file
        and pruned the log, or the writer kept overtaking) or it adds more than `most`.

        Read outside one snapshot (SQLite's driver begins none for reads), so the kind's
        recorded file is read after the log (a save prunes the log as it records its file), and
        the catalog's generation again last (a commit meanwhile, and the reads may disagree)."""
        for _ in range(CATCH_UP_TRIES):
            with self.engine.connect() as conn:
                now = int(self._get(conn, GENERATION) or 0)
                since = int(self._get(conn, LOGGED_SINCE) or 0)
                if generation < since:
                    return None
                rows = conn.execute(
                    select(
                        vector_changes.c.generation,
                        vector_changes.c.change,
                        vector_changes.c.first_id,
                        vector_changes.c.last_id,
                    ).where(
                        vector_changes.c.kind == kind,
                        vector_changes.c.generation > generation,
                        vector_changes.c.generation <= now,
                    )
                ).all()
            record = self.index_record(kind)  # after the rows: a prune since would show here
            if any(row.change == RECODED for row in rows) or record is None:
                return None
            if record[0] != generation:
                return None  # the rows it held may be gone: the caller opens the newer file
            removed, added = _net(rows)
            if most is not None and len(added) > most:
                return None
            vectors = self.vectors_of_regions(kind, added, width)
            count = self.region_count(kind)
            with self.engine.connect() as conn:
                still = int(self._get(conn, GENERATION) or 0)
            if still == now:  # nothing committed meanwhile: the reads agree with each other
                return VectorCatchUp(now, removed, added, vectors, count)
        return None


def _net(rows: Sequence[Any]) -> tuple[np.ndarray, np.ndarray]:
    """(ids to remove from the file, ids to add) for the logged changes in `rows`. An id whose
    first change is a removal was in the file, and is removed; an id whose last change is an
    addition is then added (SQLite may give a deleted region's id to a new one). An id added
    and removed since is neither: a count of the file's removals must hold only its ids."""
    if not rows:
        empty = np.zeros(0, np.int64)
        return empty, empty
    ids, generations, changes = [], [], []
    for row in rows:
        run = np.arange(row.first_id, row.last_id + 1, dtype=np.int64)
        ids.append(run)
        generations.append(np.full(len(run), row.generation, np.int64))
        changes.append(np.full(len(run), row.change, np.int64))
    every_id, every_generation = np.concatenate(ids), np.concatenate(generations)
    every_change = np.concatenate(changes)
    # by id, then generation, then a batch's removals before its additions (its deletes run
    # first, and an insert may take the id a delete freed)
    order = np.lexsort((every_change == ADDED, every_generation, every_id))
    by_id, change = every_id[order], every_change[order]
    is_first = np.insert(by_id[1:] != by_id[:-1], 0, True)
    is_last = np.append(by_id[1:] != by_id[:-1], True)
    removed = by_id[is_first][change[is_first] == REMOVED]
    added = by_id[is_last][change[is_last] == ADDED]
    return removed, added
