"""The map as one self-contained HTML file: the points, their colours and captions, thumbnails
for the first points, and the page's script and style inlined, so it opens from disk with no
server and no network.

Coordinates travel as base64 float32 and categories as uint16, not as JSON numbers: a million
points is then 8 MB of coordinates instead of about 20; the paths are the rest, and the page
makes each file link from its path rather than carrying both. The points are shuffled once (seeded),
so that the prefix the page draws while panning a very large map is a fair sample of it.
"""

from __future__ import annotations

import base64
import html
import json
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from searchapp.paths import shown

if TYPE_CHECKING:
    from searchapp.library import Library
    from searchapp.library_explore import MapPoints

STATIC = Path(__file__).with_name("static")
MAX_CATEGORIES = 20  # the 19 largest, then "other"
THUMB_SIDE = 128
GREY_NAMES = ("noise", "other", "unknown", "unknown camera", "no label")


def _b64(array: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(array).tobytes()).decode("ascii")


def unit_square(coords: np.ndarray) -> np.ndarray:
    """Coordinates centred and scaled into [-1, 1], keeping their aspect."""
    coords = np.asarray(coords, dtype=np.float64)
    if len(coords) == 0:
        return coords.astype(np.float32)
    low, high = coords.min(axis=0), coords.max(axis=0)
    span = float((high - low).max()) or 1.0
    return ((coords - (low + high) / 2) * (2 / span)).astype(np.float32)


def categories(values: list[str]) -> tuple[np.ndarray, list[str], list[int], bool]:
    """(index per value, names, counts, whether the last name is "other")."""
    counts = Counter(values)
    ranked = sorted(counts, key=lambda v: (-counts[v], v))
    other = len(ranked) > MAX_CATEGORIES
    kept = ranked[: MAX_CATEGORIES - 1] if other else ranked
    index = {name: i for i, name in enumerate(kept)}
    codes = np.array([index.get(v, len(kept)) for v in values], dtype=np.uint16)
    names = kept + (["other"] if other else [])
    totals = [counts[name] for name in kept]
    if other:
        totals.append(sum(counts[v] for v in ranked[len(kept) :]))
    return codes, names, totals, other


def payload(
    points: MapPoints,
    colour_by: str,
    thumbs: dict[int, str],
    seed: int = 0,
    *,
    for_web: bool = False,
) -> dict[str, Any]:
    n = len(points.paths)
    order = np.random.default_rng(seed).permutation(n)
    coords = unit_square(points.coords)[order]
    values = points.facets.get(colour_by) or ["all"] * n
    codes, names, totals, other = categories([values[i] for i in order])
    paths = [points.paths[i] for i in order]
    labels = points.facets.get("label")
    return {
        "x": _b64(coords[:, 0].astype(np.float32)),
        "y": _b64(coords[:, 1].astype(np.float32)),
        "category": _b64(codes),
        "categories": [shown(name) for name in names],
        "counts": totals,
        "hasOther": other,
        "greys": [
            i
            for i, name in enumerate(names)
            if name in GREY_NAMES or (other and i == len(names) - 1)
        ],
        "colourBy": colour_by,
        "method": f"{points.method}, {points.kind}",
        "paths": [shown(p) for p in paths],
        # the exact file link where the shown name differs (control characters, undecodable bytes)
        "links": {str(k): Path(p).as_uri() for k, p in enumerate(paths) if shown(p) != p},
        "labels": [labels[i] for i in order] if labels else None,
        "thumbs": {str(k): thumbs[int(i)] for k, i in enumerate(order) if int(i) in thumbs},
        # the web app fetches thumbnails and photos by id; the file links each point's path
        **({"imageIds": [int(points.image_ids[i]) for i in order]} if for_web else {}),
    }


def _script_json(data: dict[str, Any]) -> str:
    """JSON safe inside a <script> element: no "</script>" or line separators can end it."""
    text = json.dumps(data, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


def map_html(points: MapPoints, colour_by: str, thumbs: dict[int, str]) -> str:
    script = (STATIC / "map.js").read_text(encoding="utf-8")
    style = (STATIC / "map.css").read_text(encoding="utf-8")
    title = f"searchapp map: {len(points.paths)} {points.kind} points"
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>{html.escape(title)}</title>
<style>html, body {{ margin: 0; height: 100%; font: 13px system-ui, sans-serif; }}
#map {{ position: absolute; inset: 0; }}
{style}</style></head>
<body><div id="map"></div>
<script>window.SEARCHAPP_MAP = {_script_json(payload(points, colour_by, thumbs))};</script>
<script>{script}</script>
</body></html>
"""


def thumbnails_for(library: Library, points: MapPoints, limit: int) -> dict[int, str]:
    """Data-URI thumbnails of the first `limit` points (photos for scenes, the region's crop
    for objects and tiles); a photo that cannot be read gets none and hovers show its file."""
    from searchapp.errors import SearchappError

    found: dict[int, str] = {}
    for i in range(min(limit, len(points.paths))):
        image_id = int(points.image_ids[i])
        try:
            if points.kind == "scene":
                data = library.thumbnail(image_id, THUMB_SIDE).read_bytes()
            else:
                data = library.region_jpeg(image_id, points.boxes[i])
        except (SearchappError, OSError):
            continue
        found[i] = "data:image/jpeg;base64," + base64.b64encode(data).decode("ascii")
    return found
