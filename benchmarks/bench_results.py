"""Where every benchmark's JSON record goes, stamped with when and on what it was measured, and
the scratch folders benchmarks fill (libraries, copies, checkpoints), removed when they exit."""

from __future__ import annotations

import atexit
import json
import os
import platform
import shutil
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


def code_version() -> str:
    """The commit the benchmark ran, "+changes" when the working tree differed from it."""
    import subprocess

    root = Path(__file__).resolve().parents[1]
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "searchapp"],
            cwd=root,
            capture_output=True,
            text=True,
        ).stdout.strip()
    except OSError:
        return "unknown"
    return (commit or "unknown") + ("+changes" if dirty else "")


# taken when a benchmark starts: a commit made while it runs did not change the code it imported
STARTED_ON = code_version()


def write_result(path: Path, result: dict[str, Any]) -> None:
    """Writes `result` to `path` after a date, commit and machine line, and says where it went."""
    stamped = {
        "date": datetime.now().strftime("%Y-%m-%dT%H:%M:%S"),
        "commit": STARTED_ON,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores",
        **result,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(stamped, indent=2) + "\n")
    print(f"wrote {path}")


def scratch_folder(prefix: str) -> Path:
    """A temporary folder, removed when the benchmark exits: libraries of a run take gigabytes."""
    folder = Path(tempfile.mkdtemp(prefix=prefix))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return folder


def random_vit_b32(folder: Path) -> str:
    """A randomly initialised ViT-B-32 checkpoint in open_clip's layout: real shapes, real
    speed, no download."""
    import open_clip
    import torch

    torch.manual_seed(0)
    model = open_clip.create_model("ViT-B-32", pretrained=None)
    path = folder / "vit-b-32-random.pt"
    torch.save(model.state_dict(), path)
    return str(path)
