"""Two spaces' rankings of photos merged by rank (query/spaces.py)."""

from __future__ import annotations

from searchapp.query.spaces import merged
from searchapp.records import RegionHit


def by_id(hit: RegionHit) -> int:  # one library: photos by their image id
    return hit.image_id


def hit(image_id: int, score: float, kind: str = "scene") -> RegionHit:
    return RegionHit(
        region_id=image_id * 10,
        image_id=image_id,
        path=f"/p/{image_id}.jpg",
        kind=kind,
        bbox=(0, 0, 1, 1),
        label=None,
        score=score,
        taken_at=0.0,
    )


def test_the_first_of_each_space_lead_and_a_photo_both_rank_high_wins_a_tie() -> None:
    scenes = [hit(1, 0.9), hit(2, 0.8), hit(3, 0.7)]
    tiles = [hit(4, 0.99, "tile"), hit(2, 0.95, "tile"), hit(5, 0.5, "tile")]
    order = [h.image_id for h in merged([scenes, tiles], 10, by_id)]
    # rank 0: 1 and 4 (tied; path breaks it); rank 1: 2 is in both lists, so before nothing else
    assert order == [1, 4, 2, 3, 5]
    # the region shown is the one of the space where the photo ranks best (2: rank 1 in both,
    # the first space's seen first)
    shown = {h.image_id: h.kind for h in merged([scenes, tiles], 10, by_id)}
    assert shown[4] == "tile" and shown[1] == "scene"


def test_a_photo_ranked_high_in_one_space_is_not_buried_by_many_in_both() -> None:
    scenes = [hit(i, 1 - i / 100) for i in range(10, 40)]
    tiles = [hit(99, 0.99, "tile")] + [hit(i, 0.9 - i / 100, "tile") for i in range(10, 40)]
    order = [h.image_id for h in merged([scenes, tiles], 5, by_id)]
    assert order[:2] == [10, 99] and len(order) == 5


def test_one_ranking_alone_keeps_its_order() -> None:
    tiles = [hit(3, 0.9, "tile"), hit(1, 0.8, "tile")]
    assert [h.image_id for h in merged([[], tiles], 10, by_id)] == [3, 1]
