"""How fanout.py merges the answers of several libraries (the search itself: test_fanout.py)."""

from __future__ import annotations

from searchapp.query.fanout import merged_hits
from searchapp.query.search import SearchHit, SearchResults


def hit(path: str, score: float, kind: str = "scene") -> SearchHit:
    return SearchHit(path, score, kind, (0, 0, 10, 10), None, 0.0)


def test_spaces_are_merged_by_score_each_then_fused_by_rank() -> None:
    """CLIP libraries keep tiles in the CNN's space, whose cosines run higher: merged by raw
    score, the tiles of every library would come before any scene."""
    first = SearchResults([], "vector", spaces=[[hit("a1", 0.30)], [hit("a2", 0.80, "tile")]])
    second = SearchResults([], "vector", spaces=[[hit("b1", 0.20)], [hit("b2", 0.90, "tile")]])
    merged = merged_hits([first, second], 4)
    # each space's best first (a1 in CLIP's, b2 in the CNN's), then each space's second;
    # equal ranks by path. By raw score it would be b2, a2, a1, b1
    assert [h.path for h in merged] == ["a1", "b2", "a2", "b1"]


def test_one_space_is_merged_by_score_each_photo_once() -> None:
    """A folder two libraries both index answers once, with its better score."""
    first = SearchResults([hit("same", 0.5), hit("a", 0.4)], "vector")
    second = SearchResults([hit("b", 0.45), hit("same", 0.7)], "vector")
    merged = merged_hits([first, second], 3)
    assert [(h.path, h.score) for h in merged] == [("same", 0.7), ("b", 0.45), ("a", 0.4)]
