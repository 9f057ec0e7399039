"""Word queries on the offline CNN: how confident must a tile's label be to count?

    python benchmarks/label_tiles.py [FOLDER] [--library DIR]

A tile sees a corner of a photo at 2-3x the resolution the scene sees, and the CNN names what it
half-sees there with confidence: "a dog" found the cameraman photo through a corner tile labelled
"Boston bull". This indexes FOLDER (default ../shared/data/photos) with the default hybrid
regions, then asks each class word of the pixabay photos ("dog", "cat", "car", ...) as a word
query, with tile labels counting only from each probability in FLOORS. A hit is right when it is
a pixabay photo of that class; every other photo of FOLDER is a distractor. Tuned on the pixabay
photos of photo_split.py's tuning half, reported on its scoring half (each is a scene of its
own): the other half's photos of the class are left out of the ranking, neither right nor wrong.

Writes benchmarks/results/label_tiles.json.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bench_results import RESULTS, scratch_folder, write_result
from photo_split import TUNING, half_of, pixabay_class, relative

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from searchapp.errors import QueryError  # noqa: E402
from searchapp.ingest import regions as regions_module  # noqa: E402
from searchapp.library import Library  # noqa: E402
from searchapp.query import search as search_module  # noqa: E402

FLOORS = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
K = 10


def pixabay_classes(folder: Path) -> dict[str, dict[str, list[str]]]:
    """{class word: {"tune": paths, "score": paths}} for classes with a photo on each side of
    photo_split's halves (the split every evaluation shares)."""
    classes: dict[str, dict[str, list[str]]] = {}
    for path in sorted((folder / "boofcv" / "pixabay").glob("*.jpg")):
        rel = relative(path, folder)
        word = pixabay_class(rel)
        if word:
            side = "tune" if half_of(rel) == TUNING else "score"
            classes.setdefault(word, {"tune": [], "score": []})[side].append(str(path.absolute()))
    return {word: sides for word, sides in classes.items() if sides["tune"] and sides["score"]}


def measure(lib: Library, classes: dict[str, dict[str, list[str]]], side: str) -> dict[str, float]:
    """Mean precision@n (n = the class's photos on this side) and recall@K over the words."""
    other = "score" if side == "tune" else "tune"
    precision, recall, tile_hits, answered = [], [], 0, 0
    for word, sides in classes.items():
        relevant, ignored = set(sides[side]), set(sides[other])
        try:
            results = lib.search(word, k=K + len(ignored))
        except QueryError:
            continue  # a word no ImageNet class answers to (e.g. "corn" is "ear")
        hits = [hit for hit in results if hit.path not in ignored][:K]
        answered += 1
        top = hits[: len(relevant)]
        precision.append(sum(hit.path in relevant for hit in top) / len(relevant))
        recall.append(sum(hit.path in relevant for hit in hits) / len(relevant))
        tile_hits += sum(hit.kind == "tile" for hit in top)
    return {
        "words": answered,
        "precision_at_n": round(sum(precision) / max(1, len(precision)), 3),
        "recall_at_10": round(sum(recall) / max(1, len(recall)), 3),
        "tile_wins_in_top_n": tile_hits,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", nargs="?", default=str(ROOT.parent / "shared/data/photos"))
    parser.add_argument("--library", help="reuse (or keep) this library instead of a scratch one")
    args = parser.parse_args()
    folder = Path(args.folder)
    library = Path(args.library) if args.library else scratch_folder("label-tiles-") / "lib"
    classes = pixabay_classes(folder)
    # every tile label stored, so that floors below the one indexing keeps can be tried
    regions_module.TILE_LABEL_MIN_PROB = 0.0
    with Library(library) as lib:
        lib.index([str(folder)], encoder="cnn:efficientnet-lite0")
        rows = []
        for floor in FLOORS:
            search_module.LABEL_FLOORS["tile"] = floor
            row = {"tile_floor": floor}
            for side in ("tune", "score"):
                row[side] = measure(lib, classes, side)
            rows.append(row)
            print(
                f"tile floor {floor:.1f}: tune P@n {row['tune']['precision_at_n']:.3f} "
                f"R@10 {row['tune']['recall_at_10']:.3f} | score P@n "
                f"{row['score']['precision_at_n']:.3f} R@10 {row['score']['recall_at_10']:.3f} "
                f"| tile wins {row['tune']['tile_wins_in_top_n']}+"
                f"{row['score']['tile_wins_in_top_n']}"
            )
    # the most precise floor among those that lose no recall on the tuning half: a floor that
    # trades recall for precision on a dozen words is noise-fitting
    top_recall = max(r["tune"]["recall_at_10"] for r in rows)
    keeping = [r for r in rows if r["tune"]["recall_at_10"] == top_recall]
    best = max(keeping, key=lambda r: (r["tune"]["precision_at_n"], -r["tile_floor"]))
    print(f"best on the tuning half (no recall lost): tile floor {best['tile_floor']}")
    write_result(
        RESULTS / "label_tiles.json",
        {
            "what": "word queries in label mode on the offline CNN, hybrid regions; a tile's "
            "label counts from tile_floor",
            "data": str(folder),
            "classes": {
                word: {s: len(p) for s, p in sides.items()} for word, sides in classes.items()
            },
            "rows": rows,
            "chosen_on_tuning_half": best["tile_floor"],
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
