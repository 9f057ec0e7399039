"""The Python API in one runnable script: index a folder, then search it four ways.

    python examples/search_api.py [PHOTO_DIR]

PHOTO_DIR defaults to examples/photos, filled with scikit-image's sample photos if missing. The
library goes to indexes/example.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from searchapp import open_library

HERE = Path(__file__).resolve().parent


def show(title: str, results) -> None:  # type: ignore[no-untyped-def]
    print(f"\n{title}  [{results.mode}]")
    for note in results.notes:
        print(f"  note: {note}")
    for hit in results:
        labels = ", ".join(name.split(",")[0] for name, _ in hit.labels[:2])
        print(f"  {hit.score:.3f}  {hit.date[:10]}  {Path(hit.path).name:22s} {labels}")


def main() -> int:
    photos = Path(sys.argv[1]) if len(sys.argv) > 1 else HERE / "photos"
    if not photos.exists():
        subprocess.run([sys.executable, str(HERE / "sample_photos.py"), str(photos)], check=True)

    with open_library(HERE.parent / "indexes" / "example") as lib:
        summary = lib.index([str(photos)])
        print("indexed:", summary.as_dict())

        show("words: 'cat'", lib.search("cat", k=3))
        like = str(next(iter(sorted(photos.glob("motorcycle_left*")))))
        show(f"more like {Path(like).name}", lib.search(like=like, k=3))
        show(
            "words and a photo, weighted",
            lib.search("cat", like=str(photos / "astronaut.jpg"), weights=[1.0, 0.5], k=3),
        )
        show(
            "filtered: taken in 2020 or later, at least 500 px wide",
            lib.search(like=like, after="2020-01-01", min_width=500, k=3),
        )
        stats = lib.stats()
        print(f"\n{stats.images} photos, {stats.vectors} vectors, encoder {stats.encoder.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
