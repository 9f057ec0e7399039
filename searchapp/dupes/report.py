"""A duplicate report as plain data: what `dupes --json` prints and the web API answers."""

from __future__ import annotations

from typing import Any

from searchapp.dupes.find import DupeReport
from searchapp.dupes.groups import DupePair

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


def _pair(report: DupeReport, pair: DupePair) -> dict[str, Any]:
    paths = report.table.paths
    found: dict[str, Any] = {
        "a": paths[pair.a],
        "b": paths[pair.b],
        "tier": pair.tier,
        "score": pair.score,
        "reason": pair.reason,
    }
    if pair.offset is not None:  # two videos: the frames that matched, and the offset
        found["offset"] = pair.offset
        found["frames"] = [{"a": a, "b": b, "score": s} for a, b, s in pair.frames]
    return found


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
                "pairs": [_pair(report, p) for p in group.pairs],
            }
        )
    stills = [
        {
            "photo": paths[still.photo],
            "video": paths[still.video],
            "time": still.time,
            "score": still.score,
        }
        for still in report.stills
    ]
    return {
        "groups": groups,
        "stills": stills,
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
