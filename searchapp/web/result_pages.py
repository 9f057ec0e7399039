"""Pages of ranked results: scrolling asks for page after page of one query, and each should
not search again. A query's ranking is kept (the last few queries, least recently used out) for
as many photos as its pages have asked for; a page beyond them searches again for twice as many,
so scrolling through n results costs searches for about 2n in all, not n/50 of them."""

from __future__ import annotations

import itertools
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass

from searchapp.query.search import SearchResults

KEPT = 4  # queries; a ranking of 100,000 photos holds about 30 MB
KEPT_COUNTS = 64  # photo counts, one per filters used


@dataclass(frozen=True)
class Ranking:
    results: SearchResults
    asked: int  # the k it was searched with
    id: int  # what a viewer names it by, to score one photo's regions against its query
    estimate: int | None = None  # how many it will hold when complete, if known beforehand

    @property
    def complete(self) -> bool:
        """Every photo that can match is in it: the search found fewer than it was asked for."""
        return len(self.results.hits) < self.asked


class ResultPages:
    def __init__(self) -> None:
        self._kept: OrderedDict[Hashable, Ranking] = OrderedDict()
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._building: dict[Hashable, threading.Lock] = {}
        self._counts: dict[Hashable, int] = {}

    def ranking(
        self,
        key: Hashable,
        need: int,
        run: Callable[[int], SearchResults],
        estimate: Callable[[SearchResults], int | None],
    ) -> Ranking:
        """The ranking of the query `key` holding at least `need` photos, or all there are;
        `run(k)` searches for k; `estimate(first results)` says how many there will be."""
        with self._lock:
            building = self._building.setdefault(key, threading.Lock())
        with building:  # pages asked for at once wait for one search, not run one each
            with self._lock:
                kept = self._kept.get(key)
                if kept is not None:
                    self._kept.move_to_end(key)
                    if kept.complete or len(kept.results.hits) >= need:
                        return kept
            # a first page asks for just itself: it is the answer a user waits for
            asked = max(need, 2 * kept.asked if kept else 0)
            results = run(asked)
            if kept is not None:
                ranking = Ranking(results, asked, kept.id, kept.estimate)
            else:
                ranking = Ranking(results, asked, next(self._ids), estimate(results))
            with self._lock:
                self._kept[key] = ranking
                self._kept.move_to_end(key)
                while len(self._kept) > KEPT:
                    dropped, _ = self._kept.popitem(last=False)
                    self._building.pop(dropped, None)
        return ranking

    def photo_count(self, key: Hashable, count: Callable[[], int]) -> int:
        """How many photos pass a search's filters, counted once per filters and library state:
        a count over 100,000 photos took 13 ms, more than the rest of a search's answer."""
        with self._lock:
            if key in self._counts:
                return self._counts[key]
        counted = count()
        with self._lock:
            if len(self._counts) >= KEPT_COUNTS:
                self._counts.clear()
            self._counts[key] = counted
        return counted

    def by_id(self, ranking_id: int) -> Ranking | None:
        with self._lock:
            return next((r for r in self._kept.values() if r.id == ranking_id), None)
