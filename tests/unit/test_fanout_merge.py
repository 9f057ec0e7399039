"""How fanout.py merges the answers of several libraries (the search itself: test_fanout.py)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from searchapp.query.fanout import merged_hits, search_libraries
from searchapp.query.remote import RemoteAnswer, RemoteLibrary, Unreachable
from searchapp.query.search import Query, SearchHit, SearchResults, Term
from searchapp.records import EncoderIdentity


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


class Canned(RemoteLibrary):
    """A library on another machine that answers what it is given, or does not answer."""

    def __init__(self, name: str, answer: RemoteAnswer | None):
        super().__init__(f"http://{name}:8765/")
        self.answer = answer

    def ask(self, wire: dict[str, Any]) -> RemoteAnswer:
        if self.answer is None:
            raise Unreachable(f"library {self.base} did not answer (timed out)")
        return self.answer


def test_photos_their_machines_confirmed_come_first_then_by_score(tmp_path: Path) -> None:
    """Each machine checks its candidates' pixels; the merged top shows those confirmed by
    their pixels, the most alike first, then by geometry, then the rest by score: as one
    library would, from the evidence each machine sends."""
    cnn = EncoderIdentity("cnn:efficientnet-lite0", "imagenet", 1280, "resize 224")
    a2 = replace(hit("a2", 0.5), verified="pixels", agreement=0.95, inliers=30)
    b3 = replace(hit("b3", 0.4), verified="pixels", agreement=0.99, inliers=20)
    b1 = replace(hit("b1", 0.8), verified="geometry", agreement=0.3, inliers=40)
    a1 = replace(hit("a1", 0.9), agreement=0.2, inliers=3)  # checked, not confirmed
    first = SearchResults([a2, a1], "vector")
    b2 = replace(hit("b2", 0.6), agreement=0.1, inliers=0)  # checked there too
    second = SearchResults([b3, b1, b2], "vector")
    libraries = [
        Canned("one", RemoteAnswer(first, cnn, None)),
        Canned("two", RemoteAnswer(second, cnn, None)),
        Canned("three", None),
    ]
    query_image = tmp_path / "query.jpg"
    query_image.write_bytes(b"its bytes travel; not read here")
    found = search_libraries(libraries, Query(terms=(Term("image", str(query_image)),), k=5))
    assert [(h.path, h.verified) for h in found] == [
        ("b3", "pixels"),  # its pixels agree more than a2's, though it scores lower
        ("a2", "pixels"),
        ("b1", "geometry"),
        ("a1", None),
        ("b2", None),
    ]
    assert found.checked == 5
    assert (found[3].agreement, found[3].inliers) == (0.2, 3)  # checked there, evidence kept
    assert found.notes == [
        "library http://three:8765/ did not answer (timed out); the others were searched"
    ]


def test_a_verdict_stays_with_the_region_its_machine_checked(tmp_path: Path) -> None:
    """A CLIP library keeps tiles in the CNN's space. Merged with another library, a photo may
    rank better in the other space and show another region than the one its machine checked:
    that region is shown unchecked, not with the verdict of pixels nobody compared."""
    clip = EncoderIdentity("clip:ViT-B-32", "laion2b", 512, "resize 224")
    cnn = EncoderIdentity("cnn:efficientnet-lite0", "imagenet", 1280, "resize 224")
    p_scene = replace(hit("p", 0.3), verified="pixels", agreement=0.9, inliers=25)
    p_tile = replace(hit("p", 0.8, "tile"), bbox=(5, 5, 9, 9))
    q_tile = hit("q", 0.9, "tile")
    r1 = replace(hit("r1", 0.9), verified="pixels", agreement=0.8, inliers=20)
    # its own merge shows p's scene (rank 0 in CLIP's space) and checks it
    first = SearchResults([p_scene, q_tile], "vector", spaces=[[p_scene], [q_tile, p_tile]])
    # the other's scenes push p to rank 2 in CLIP's space; its tile is rank 1 in the CNN's
    second = SearchResults([r1], "vector", spaces=[[r1, hit("r2", 0.8)], []])
    libraries = [
        Canned("one", RemoteAnswer(first, clip, cnn)),
        Canned("two", RemoteAnswer(second, clip, cnn)),
    ]
    query_image = tmp_path / "query.jpg"
    query_image.write_bytes(b"its bytes travel; not read here")
    found = search_libraries(libraries, Query(terms=(Term("image", str(query_image)),), k=4))
    shown = {h.path: h for h in found}
    assert (shown["p"].kind, shown["p"].bbox) == ("tile", (5, 5, 9, 9))
    assert (shown["p"].verified, shown["p"].agreement) == (None, None)
    assert (shown["r1"].verified, shown["r1"].agreement) == ("pixels", 0.8)
    assert found[0].path == "r1"


def test_a_library_a_filter_left_empty_answers_without_its_spaces() -> None:
    """An empty answer carries no spaces: the others' spaces are merged without it."""
    empty = SearchResults([], "vector")
    other = SearchResults([], "vector", spaces=[[hit("a", 0.3)], [hit("b", 0.8, "tile")]])
    for answers in ([empty, other], [other, empty]):
        assert [h.path for h in merged_hits(answers, 2)] == ["a", "b"]
