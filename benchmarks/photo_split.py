"""What the shared photos show: which files are one picture, which one scene, and which half a
scene is in (tuning or scoring).

    python benchmarks/photo_split.py [FOLDER] [--list]

Tile layout, CAM thresholds, verification and duplicate thresholds were tuned on
../shared/data/photos, so figures over the whole folder flatter the engine. The quality
evaluations (crop_eval.py, dupes_eval.py) therefore also report the scoring half alone: scenes
that future tuning must not look at. The split is by scene, never by photo, since a second shot of
a scene is the hardest distractor for its sibling: were the two on either side, tuning would have
seen the scene.

Scene groups follow ../shared/data/MANIFEST.md: the BoofCV triple/stitch/scale groups by name
before _0N (copies/ beside their namesakes), the EXIF orientation set is one waterfall, each HDR
pair is one moment, Lund and Berlin are one place each, imagededup's UKBench files go by object
(UKBench numbers each object's 4 shots consecutively), every pixabay photo is its own scene, and
anything else is its own group. A group's half is a hash of its name: it does not move when
photos are added, and nobody picks it.

One picture (the same moment and viewpoint, whatever the file's size, format or metadata):
copies/ and their stitch/ or scale/ namesakes; imagededup's files of one UKBench number and the
RGBA PNG of ukbench00120; each HDR on/off pair (0.19-0.27 px apart once aligned); identical
bytes. The manifest calls the 16 EXIF orientation files one picture; they are two, a landscape
and a portrait shot of one waterfall (8 files each, each file with its own digit drawn on; 18 ORB
inliers and 14 px of parallax between the two shots), so they are one scene and two pictures.
The BoofCV zoom series (scale/ and the copies of its rainforest) are each their own picture, but a
telephoto shot from the same spot is, pixel for pixel, a crop of the wide one: is_zoom_shot lets
the duplicate evaluation leave them out of its scoring, since whether they are duplicates is the
user's call.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import sys
from collections import Counter
from pathlib import Path

TUNING, SCORING = "tuning", "scoring"
HALVES = (TUNING, SCORING)
# Changing the salt reshuffles the halves, and figures from before are no longer comparable.
SPLIT_SALT = b"searchapp issue 15"
ZOOM_SCENES = {"boofcv:beach", "boofcv:mountain", "boofcv:rainforest"}
PHOTO_SUFFIXES = {
    ".jpg",
    ".jpeg",
    ".png",
    ".webp",
    ".bmp",
    ".tif",
    ".tiff",
    ".gif",
    ".ppm",
    ".pgm",
    ".pbm",
    ".svg",
}
DEFAULT_FOLDER = Path(__file__).resolve().parents[2] / "shared" / "data" / "photos"


def _boofcv_scene(stem: str) -> str:
    # kayak_01, beach01, mountain_4p2mm and minecraft_cave1_01 lose their shot number or focal
    # length; stitch's mountain_rotate and scale's mountain are different places
    return "boofcv:" + re.sub(r"_?(\d+p\d+mm|\d+)$", "", stem)


def scene_group(rel: str) -> str:
    """The scene a photo (path relative to the photos folder) shows."""
    boofcv = re.match(r"boofcv/(triple|stitch|scale|copies)/(.+)\.jpg$", rel)
    if boofcv:
        return _boofcv_scene(boofcv.group(2))
    if rel.startswith("exif/orientation/"):
        return "exif:orientation-waterfall"
    hdr = re.match(r"exif/hdr/(\w+)_hdr_", rel)
    if hdr:
        return "exif:hdr-" + hdr.group(1)
    place = re.match(r"opensfm/(lund|berlin)/", rel)
    if place:
        return "opensfm:" + place.group(1)
    if rel == "imagededup/alpha_channel_image.png":
        rel = "imagededup/ukbench00120.png"  # the manifest's RGBA copy of ukbench00120
    ukbench = re.match(r"imagededup/.*ukbench(\d+)", rel)
    if ukbench:
        return f"ukbench:object{int(ukbench.group(1)) // 4}"
    return rel  # pixabay photos and everything else: a scene of its own


def picture_key(rel: str) -> str:
    """Photos with one key are the same picture (see the module docstring). Identical bytes under
    other names are merged by picture_keys, which reads the files."""
    orientation = re.match(r"exif/orientation/(landscape|portrait)_", rel)
    if orientation:
        return "exif-orientation:" + orientation.group(1)
    if rel == "imagededup/alpha_channel_image.png":
        return "ukbench00120"
    boofcv = re.match(r"boofcv/(copies|stitch|scale)/(.+)\.jpg$", rel)
    if boofcv:
        return "boofcv:" + boofcv.group(2)
    ukbench = re.match(r"imagededup/.*ukbench(\d+)", rel)
    if ukbench:
        return "ukbench" + ukbench.group(1)
    hdr = re.match(r"exif/hdr/(\w+)_hdr_", rel)
    if hdr:
        return "hdr:" + hdr.group(1)
    return rel


def pixabay_class(rel: str) -> str | None:
    """dog for boofcv/pixabay/dog03.jpg: photos of one class look alike but are other scenes."""
    matched = re.match(r"boofcv/pixabay/([a-z]+)\d+\.jpg$", rel)
    return matched.group(1) if matched else None


def is_zoom_shot(rel: str) -> bool:
    """A shot of a BoofCV zoom series, or a copy of one: a crop of its wider siblings."""
    return scene_group(rel) in ZOOM_SCENES


def half_of_group(group: str) -> str:
    return SCORING if hashlib.blake2b(SPLIT_SALT + group.encode()).digest()[0] & 1 else TUNING


def half_of(rel: str) -> str:
    return half_of_group(scene_group(rel))


def photo_files(folder: Path) -> list[str]:
    """Every photo-like file below folder, relative to it, sorted (unreadable ones included)."""
    return sorted(
        str(path.relative_to(folder))
        for path in folder.rglob("*")
        if path.is_file() and path.suffix.lower() in PHOTO_SUFFIXES
    )


def picture_keys(folder: Path) -> dict[str, str]:
    """picture_key of every photo below folder, with files of identical bytes given one key."""
    keys = {rel: picture_key(rel) for rel in photo_files(folder)}
    first_by_digest: dict[bytes, str] = {}
    for rel in keys:
        digest = hashlib.blake2b((folder / rel).read_bytes()).digest()
        first = first_by_digest.setdefault(digest, rel)
        if first != rel and keys[rel] != keys[first]:
            if scene_group(rel) != scene_group(first):
                # one picture in two scenes would put it on both sides of the split
                raise ValueError(f"{rel} has the bytes of {first}, from another scene")
            keys[rel] = keys[first]
    return keys


def relative(path: str | Path, folder: Path) -> str:
    return os.path.relpath(path, folder)


def split_sizes(rels: list[str]) -> dict[str, dict[str, int]]:
    """Scenes and photos on each side."""
    groups = {rel: scene_group(rel) for rel in rels}
    sizes = {}
    for half in HALVES:
        side = [rel for rel, group in groups.items() if half_of_group(group) == half]
        sizes[half] = {"scenes": len({groups[rel] for rel in side}), "photos": len(side)}
    return sizes


def print_split(rels: list[str], label: str = "photos", show_groups: bool = False) -> None:
    sizes = split_sizes(rels)
    total = len(rels)
    print(
        f"split of {total} {label} by scene: "
        + ", ".join(
            f"{half} {sizes[half]['photos']} ({sizes[half]['photos'] / max(total, 1):.0%}, "
            f"{sizes[half]['scenes']} scenes)"
            for half in HALVES
        )
    )
    if show_groups:
        counts = Counter(scene_group(rel) for rel in rels)
        for half in HALVES:
            named = sorted(g for g in counts if half_of_group(g) == half)
            print(f"\n{half}:")
            for group in named:
                print(f"  {counts[group]:3d}  {group}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", nargs="?", type=Path, default=DEFAULT_FOLDER)
    parser.add_argument("--list", action="store_true", help="list every scene on each side")
    args = parser.parse_args()
    folder = args.folder.resolve()
    if not folder.is_dir():
        print(f"no folder {folder}; pass a folder of photos", file=sys.stderr)
        return 2
    rels = photo_files(folder)
    keys = picture_keys(folder)
    print_split(rels, show_groups=args.list)
    print(f"{len(set(keys.values()))} pictures in {len({scene_group(r) for r in rels})} scenes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
