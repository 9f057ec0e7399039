"""`searchapp map`, `clusters` and `outliers`: what a collection holds, not what matches a query.

searchapp map --out map.html               an interactive map of the photos (UMAP, or PCA)
searchapp map --kind object --color label  the detected objects of every photo, by label
searchapp clusters                         groups of similar photos, named, and the noise
searchapp outliers                         the most unique photos first
"""

from __future__ import annotations

import argparse
import json
import os
from typing import Any

from searchapp.console import Console, table
from searchapp.paths import shown

COLOURS = ("folder", "date", "label", "cluster", "camera")


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text}: give 1 or more")
    return value


def add_explore_parsers(sub: Any, common: argparse.ArgumentParser) -> None:
    made = sub.add_parser(
        "map",
        parents=[common],
        help="an interactive 2-D map of the photos (a self-contained HTML file)",
        description="Lay the library's vectors out in 2-D (UMAP; PCA with --method pca) and "
        "write a self-contained HTML page: zoom and pan, hover for the thumbnail, click to open "
        "the photo, draw a lasso (shift-drag) to list the paths. The layout is kept in the "
        "library; new photos are placed beside their neighbours until the library has grown by "
        "half, then it is fitted again.",
    )
    made.add_argument(
        "--kind",
        choices=("scene", "object", "tile"),
        default="scene",
        help="what to map: whole photos (default), detected objects or tiles",
    )
    made.add_argument(
        "--color",
        "--colour",
        dest="colour",
        choices=COLOURS,
        default="folder",
        help="colour the points by (default folder)",
    )
    made.add_argument(
        "--method",
        choices=("auto", "umap", "pca"),
        default="auto",
        help="layout: auto (the stored one, else UMAP), umap or pca",
    )
    made.add_argument("--refit", action="store_true", help="fit the layout again from scratch")
    made.add_argument(
        "--out", default="map.html", metavar="FILE", help="HTML file to write (default map.html)"
    )
    made.add_argument(
        "--thumbs",
        type=int,
        default=3000,
        metavar="N",
        help="embed thumbnails for up to N points; beyond, hover loads the photo "
        "file itself (default 3000)",
    )
    made.add_argument("--json", action="store_true", help="print the coordinates as JSON")

    groups = sub.add_parser(
        "clusters",
        parents=[common],
        help="groups of similar photos, with names and representatives",
        description="Group the photos by their scene vectors with HDBSCAN (photos that belong "
        "nowhere are noise), or k-means with --kmeans K. Each group shows its size, a name (its "
        "most frequent labels, or a CLIP library's zero-shot tags) and the photos nearest its "
        "centre.",
    )
    groups.add_argument(
        "--kmeans", type=_positive, default=None, metavar="K", help="k-means with K clusters"
    )
    groups.add_argument(
        "--min-size",
        type=_positive,
        default=None,
        metavar="N",
        help="HDBSCAN's smallest cluster (default 3, more for large libraries)",
    )
    groups.add_argument("--json", action="store_true", help="JSON output")

    odd = sub.add_parser(
        "outliers",
        parents=[common],
        help="the odd photos first: test charts, black frames, strays",
        description="Rank the photos by an outlier score: uniqueness (distance to their 3 "
        "nearest neighbours, as FiftyOne's Brain defines it; 1 = the most unique) times one "
        "minus the probability of their top label (nothing in them the model recognises). "
        "Representativeness (closeness to their group's centre) is shown beside it.",
    )
    odd.add_argument("-k", type=_positive, default=20, help="how many to show (default 20)")
    odd.add_argument("--json", action="store_true", help="JSON output")


def cmd_clusters(args: argparse.Namespace, console: Console) -> int:
    from searchapp.library import Library

    with Library(args.library, args.db, create=False) as lib:
        report = lib.clusters(k=args.kmeans, min_size=args.min_size)
    if args.json:
        print(json.dumps(report.as_dict()))
        return 0
    every = [p for c in report.clusters for p in c.paths] + report.noise
    root = os.path.commonpath(every) if every else ""
    if every and root in every:  # a single photo: its folder
        root = os.path.dirname(root)
    rows = [
        (
            str(c.id),
            str(c.size),
            c.name,
            ", ".join(
                os.path.relpath(p, root) if root != os.sep else p for p in c.representatives[:3]
            ),
        )
        for c in report.clusters
    ]
    under = f" (under {root})" if root not in ("", os.sep) else ""
    if rows:
        table(("cluster", "photos", "name", f"most representative{under}"), rows)
    console.note(
        f"{len(report.clusters)} clusters ({report.method}), {len(report.noise)} photos in none"
        " (--json lists every path)"
        + ("; a small library may have no group of 3 alike" if not rows else "")
    )
    return 0


def cmd_outliers(args: argparse.Namespace, console: Console) -> int:
    from searchapp.library import Library

    with Library(args.library, args.db, create=False) as lib:
        ranked = lib.photo_scores(by="outlier")[: args.k]
    if args.json:
        print(json.dumps({"photos": [_score_dict(s) for s in ranked]}))
        return 0
    rows = [
        (
            str(rank),
            f"{s.outlier:.3f}",
            f"{s.uniqueness:.3f}",
            f"{s.representativeness:.3f}",
            f"{s.label} {s.recognised:.2f}" if s.label else "-",
            s.path,
        )
        for rank, s in enumerate(ranked, 1)
    ]
    table(("#", "outlier", "unique", "typical", "top label", "path"), rows)
    console.note(
        "outlier = unique x (1 - the top label's probability): far from every other photo, and "
        "nothing in it the model knows. unique: 1 for the photo farthest from its 3 nearest; "
        "typical (representativeness): 1 nearest its k-means group's centre, 0 the farthest"
    )
    return 0


def _score_dict(score: Any) -> dict[str, Any]:
    """One photo's scores as `outliers --json` and `search --sort ... --json` give them."""
    return {
        "path": score.path,
        "outlier": round(score.outlier, 4),
        "uniqueness": round(score.uniqueness, 4),
        "representativeness": round(score.representativeness, 4),
        "top_label": {"name": score.label, "prob": round(score.recognised, 4)}
        if score.label
        else None,
    }


def cmd_map(args: argparse.Namespace, console: Console) -> int:
    from searchapp.library import Library
    from searchapp.web.map_page import map_html, thumbnails_for

    with Library(args.library, args.db, create=False) as lib:
        console.note(
            f"laying out the {args.kind} vectors (a first layout or a refit takes a while: "
            "UMAP at 100,000 photos about a minute; then the layout is kept)"
        )
        points = lib.map_points(
            args.kind, args.method, args.refit, with_clusters=args.colour == "cluster"
        )
        thumbs = {} if args.json else thumbnails_for(lib, points, args.thumbs)
    if args.json:
        print(
            json.dumps(
                {
                    "kind": points.kind,
                    "method": points.method,
                    "fitted": points.fitted_count,
                    "points": [
                        {
                            "path": path,
                            "x": round(float(x), 4),
                            "y": round(float(y), 4),
                            "region_id": int(rid),
                            "box": list(box),
                            **{name: values[i] for name, values in points.facets.items()},
                        }
                        for i, (path, (x, y), rid, box) in enumerate(
                            zip(
                                points.paths,
                                points.coords,
                                points.region_ids,
                                points.boxes,
                                strict=True,
                            )
                        )
                    ],
                }
            )
        )
        return 0
    page = map_html(points, args.colour, thumbs)
    with open(args.out, "w", encoding="utf-8") as out:
        out.write(page)
    placed = len(points.paths) - points.fitted_count
    extra = f", {placed} placed beside their neighbours" if placed > 0 else ""
    console.note(
        f"wrote {shown(os.path.abspath(args.out))}: {len(points.paths)} {args.kind} points, "
        f"{points.method} layout fitted on {points.fitted_count}{extra}; open it in a browser"
    )
    return 0


def health_dict(health: Any) -> dict[str, Any] | None:
    """`stats --json`'s "health": the figures, their thresholds and the warnings."""
    if health is None:
        return None
    from searchapp.explore import health as figures

    return {
        "vectors": health.count,
        "sampled": min(health.count, figures.GRAPH_SAMPLE),
        "mean_cosine": _rounded(health.mean_cosine),
        "near_identical_share": _rounded(health.near_identical),
        "hubness": _rounded(health.hubness),
        "norm_spread": _rounded(health.norm_spread),
        "norms_recorded": health.norms_known,
        "thresholds": {
            "mean_cosine": figures.MAX_MEAN_COSINE,
            "near_identical_share": figures.MAX_NEAR_IDENTICAL,
            "hubness": figures.MAX_HUBNESS,
            "norm_spread": figures.MAX_NORM_SPREAD,
        },
        "warnings": list(health.warnings),
    }


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(float(value), 4)


def health_rows(health: Any) -> list[tuple[str, str]]:
    """The `stats` table's rows for the embedding health figures."""
    if health is None:
        return [("health", "no vectors yet")]
    if health.mean_cosine is None:
        return [("health", f"{health.count} scene vectors: too few to measure (3 or more)")]
    data = health_dict(health)
    assert data is not None

    def figure(value: float | None, text: str) -> str:
        return "n/a" if value is None else text

    spread = (
        f"{health.norm_spread:.2f}"
        if health.norm_spread is not None
        else "not recorded (photos indexed before this version; `searchapp reindex` records it)"
    )
    rows = [
        (
            "health",
            f"mean cosine {figure(health.mean_cosine, f'{health.mean_cosine or 0:.2f}')}, "
            f"near-identical {figure(health.near_identical, f'{health.near_identical or 0:.0%}')}, "
            f"hubness {figure(health.hubness, f'{health.hubness or 0:.2f}')} "
            f"(skew of 10-occurrence; over {data['sampled']} scene vectors)",
        ),
        ("norm spread", spread),
    ]
    rows += [("warning", text) for text in health.warnings]
    if not health.warnings:
        rows.append(("", "every figure within its threshold"))
    return rows
