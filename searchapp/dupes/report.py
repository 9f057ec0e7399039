"""A duplicate report as plain data: what `dupes --json` prints and the web API answers."""

from __future__ import annotations

from typing import Any

from searchapp.dupes.find import DupeReport

# the pixels confirmed these tiers; "similar" is the embeddings' guess
SURE_TIERS = frozenset({"exact", "near", "crop"})


def _photo(report: DupeReport, row: int) -> dict[str, Any]:
    table = report.table
    return {
        "id": int(table.ids[row]),
        "path": table.paths[row],
        "bytes": int(table.sizes[row]),
        "size": [int(table.widths[row]), int(table.heights[row])],
        "format": table.formats[row],
        "taken_at": float(table.taken_at[row]),
        "camera": table.cameras[row] or None,
    }


def report_dict(report: DupeReport) -> dict[str, Any]:
    paths = report.table.paths
    groups = []
    for group in report.groups:
        others = [row for row in group.rows if row != group.keep]
        groups.append(
            {
                "keep": paths[group.keep],
                "why": group.why,
                "paths": [paths[row] for row in group.rows],
                "photos": [_photo(report, row) for row in group.rows],
                "bytes_freed": int(sum(int(report.table.sizes[row]) for row in others)),
                "confirmed": all(pair.tier in SURE_TIERS for pair in group.pairs),
                "pairs": [
                    {
                        "a": paths[p.a],
                        "b": paths[p.b],
                        "tier": p.tier,
                        "score": p.score,
                        "reason": p.reason,
                    }
                    for p in group.pairs
                ],
            }
        )
    return {
        "groups": groups,
        "summary": {
            "photos": len(report.table),
            "groups": len(report.groups),
            "copies": sum(len(g.rows) - 1 for g in report.groups),
            "bytes_freed": sum(group["bytes_freed"] for group in groups),
            "pairs_proposed": report.proposed,
            "pairs_checked": report.checked,
            "seconds": {k: round(v, 3) for k, v in report.seconds.items()},
        },
    }
