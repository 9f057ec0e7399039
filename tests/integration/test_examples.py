"""The README's examples run on the sample photos: examples/sample_photos.py writes edited copies
so that `searchapp dupes` finds one group per tier, and a weighted mix subtracts what it says."""

from __future__ import annotations

from pathlib import Path


def test_sample_photos_give_dupes_one_group_per_tier(sample_library) -> None:  # type: ignore[no-untyped-def]
    library, photos = sample_library
    report = library.dupes()
    found = {
        frozenset(Path(report.table.paths[row]).name for row in group.rows): (
            Path(report.table.paths[group.keep]).name,
            {pair.tier for pair in group.pairs},
        )
        for group in report.groups
    }
    assert found == {
        frozenset({"coffee.jpg", "coffee_copy.png"}): ("coffee.jpg", {"exact"}),
        frozenset({"cat.jpg", "cat_small.jpg"}): ("cat.jpg", {"near"}),
        frozenset({"astronaut.jpg", "astronaut_crop.jpg"}): ("astronaut.jpg", {"crop"}),
    }

    # the README's weighted mix: the rocket minus the astronaut drops the astronaut photos
    rocket, astronaut = str(photos / "rocket.jpg"), str(photos / "astronaut.jpg")
    alone = [Path(h.path).name for h in library.search(image=rocket, k=2, kinds=("scene",))]
    assert alone == ["astronaut.jpg", "astronaut_crop.jpg"]
    mixed = library.search(image=rocket, minus=astronaut, weights=[1, 0.7], k=3, kinds=("scene",))
    assert [Path(h.path).name for h in mixed] == ["cat_small.jpg", "cat.jpg", "coffee.jpg"]

    # words subtracted on the CNN drop every photo labelled so, whichever region would match
    left, right = str(photos / "motorcycle_left.jpg"), str(photos / "motorcycle_right.jpg")
    assert library.search(like=left, k=1)[0].path == right
    without = [Path(hit.path).name for hit in library.search(like=left, minus="moped", k=3)]
    assert without == ["astronaut.jpg", "astronaut_crop.jpg", "cameraman.jpg"]
