"""Duplicate detection on real photos: every tier, its evidence, the stereo pair left alone,
the keep rule, the JSON schema, and the move / undo cycle including an interrupted move."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
from pathlib import Path

import pytest
from PIL import Image

from searchapp.dupes.find import DupeOptions
from searchapp.errors import UsageError
from searchapp.library import Library
from tests.conftest import sample_image, searchapp_here
from tests.integration.helpers import index

ORIENTATION_TAG = 0x0112


def _save(image: Image.Image, path: Path, **kw: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, **kw)
    return path


@pytest.fixture
def dupe_folder(tmp_path: Path, sample_dir: Path) -> Path:
    """Originals, copies made with known edits, and a stereo pair that must stay apart."""
    root = tmp_path / "dupes"
    originals = root / "originals"
    originals.mkdir(parents=True)
    for name in ("chelsea", "coffee", "astronaut", "rocket", "camera"):
        shutil.copy(sample_dir / f"{name}.jpg", originals / f"{name}.jpg")
    for name in ("motorcycle_left", "motorcycle_right"):
        _save(sample_image(name), originals / f"{name}.jpg", quality=92)
    copies = root / "copies"
    copies.mkdir()
    shutil.copy(originals / "chelsea.jpg", copies / "chelsea_same_bytes.jpg")
    coffee = Image.open(originals / "coffee.jpg").convert("RGB")
    _save(coffee, copies / "coffee_as_png.png")
    astronaut = Image.open(originals / "astronaut.jpg").convert("RGB")
    _save(
        astronaut.resize((256, 256), Image.Resampling.LANCZOS),
        copies / "astro_small.jpg",
        quality=40,
    )
    _save(astronaut.transpose(Image.Transpose.ROTATE_90), copies / "astro_turned.jpg", quality=90)
    _save(astronaut.convert("L"), copies / "astro_grey.jpg", quality=95)
    chelsea = Image.open(originals / "chelsea.jpg").convert("RGB")
    _save(
        chelsea.transpose(Image.Transpose.FLIP_LEFT_RIGHT), copies / "cat_mirrored.jpg", quality=90
    )
    exif = Image.Exif()
    exif[ORIENTATION_TAG] = 6  # stored turned, shown upright
    _save(
        chelsea.transpose(Image.Transpose.ROTATE_90),
        copies / "cat_exif.jpg",
        quality=90,
        exif=exif.tobytes(),
    )
    rocket = Image.open(originals / "rocket.jpg").convert("RGB")
    width, height = rocket.size
    _save(
        rocket.crop((int(width * 0.1), int(height * 0.05), int(width * 0.85), int(height * 0.9))),
        copies / "rocket_cropped.jpg",
        quality=92,
    )
    return root


@pytest.fixture
def dupe_library(library: Library, dupe_folder: Path) -> Library:
    summary = index(library, dupe_folder)
    assert summary.failed == 0
    return library


def _groups(report) -> list[set[str]]:  # type: ignore[no-untyped-def]
    return [{Path(report.table.paths[r]).name for r in g.rows} for g in report.groups]


def _pair(report, a: str, b: str):  # type: ignore[no-untyped-def]
    for pair in report.pairs:
        names = {Path(report.table.paths[pair.a]).name, Path(report.table.paths[pair.b]).name}
        if names == {a, b}:
            return pair
    return None


def test_each_tier_on_real_photos(dupe_library: Library) -> None:
    report = dupe_library.dupes()
    groups = _groups(report)
    assert {"chelsea.jpg", "chelsea_same_bytes.jpg", "cat_mirrored.jpg", "cat_exif.jpg"} in groups
    assert {"coffee.jpg", "coffee_as_png.png"} in groups
    assert {"astronaut.jpg", "astro_small.jpg", "astro_turned.jpg", "astro_grey.jpg"} in groups
    assert {"rocket.jpg", "rocket_cropped.jpg"} in groups
    assert len(groups) == 4  # the stereo pair and the camera man stay out

    same_bytes = _pair(report, "chelsea.jpg", "chelsea_same_bytes.jpg")
    assert same_bytes.tier == "exact" and "same bytes" in same_bytes.reason
    same_pixels = _pair(report, "coffee.jpg", "coffee_as_png.png")
    assert same_pixels.tier == "exact" and "same pixels" in same_pixels.reason
    small = _pair(report, "astronaut.jpg", "astro_small.jpg")
    assert small.tier == "near" and "hamming" in small.reason and "residual" in small.reason
    # a pair already joined through a third photo is not checked again: any link will do
    turned = next(
        p
        for p in report.pairs
        if "astro_turned" in report.table.paths[p.a] + report.table.paths[p.b]
    )
    assert turned.tier == "near" and "(rot" in turned.reason
    crop = _pair(report, "rocket.jpg", "rocket_cropped.jpg")
    assert crop.tier == "crop"
    assert Path(report.table.paths[crop.a]).name == "rocket_cropped.jpg"  # the crop comes first
    assert 0.4 < crop.score < 0.9  # the share of the larger photo it covers (64% here)


def test_keep_rule_prefers_resolution_then_honours_keep(dupe_library: Library) -> None:
    report = dupe_library.dupes()
    astro = next(g for g in report.groups if len(g.rows) == 4)
    assert Path(report.table.paths[astro.keep]).name in {"astronaut.jpg", "astro_turned.jpg"}
    assert "same resolution (512x512)" in astro.why  # the greyscale copy is never the keeper
    small = next(p for p in report.table.paths if p.endswith("astro_small.jpg"))
    again = dupe_library.dupes(keep={small})
    astro = next(g for g in again.groups if len(g.rows) == 4)
    assert again.table.paths[astro.keep] == small and astro.why == "chosen with --keep"


def test_similar_tier_is_opt_in(dupe_library: Library) -> None:
    default = dupe_library.dupes()
    assert all(pair.tier != "similar" for pair in default.pairs)
    wide = dupe_library.dupes(DupeOptions(tiers=("similar",), similar_cosine=0.5))
    assert wide.pairs and all(pair.tier == "similar" for pair in wide.pairs)
    assert all("cosine" in pair.reason for pair in wide.pairs)


def test_bad_options_are_refused() -> None:
    with pytest.raises(UsageError, match="unknown tier"):
        DupeOptions(tiers=("nearish",))
    with pytest.raises(UsageError, match="hash-radius"):
        DupeOptions(hash_radius=12)


def test_older_library_gets_its_hashes(dupe_library: Library) -> None:
    with sqlite3.connect(dupe_library.directory / "catalog.db") as conn:
        conn.execute("UPDATE images SET phash = NULL, pixel_hash = NULL, colourfulness = NULL")
    assert dupe_library.backfill_hashes() == 15
    assert dupe_library.catalog.images_without_phash() == []
    assert {"astronaut.jpg", "astro_small.jpg", "astro_turned.jpg", "astro_grey.jpg"} in _groups(
        dupe_library.dupes()
    )


def test_empty_and_single_photo_libraries(
    library: Library, sample_dir: Path, tmp_path: Path
) -> None:
    assert library.dupes().groups == []
    one = tmp_path / "one"
    one.mkdir()
    shutil.copy(sample_dir / "coffee.jpg", one / "coffee.jpg")
    index(library, one)
    report = library.dupes(DupeOptions(tiers=("exact", "near", "crop", "similar")))
    assert report.groups == [] and report.pairs == []


def _snapshot(folder: Path) -> dict[str, str]:
    return {
        str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return searchapp_here(*args)


def test_cli_json_move_and_undo_restore_the_folder(
    dupe_library: Library, dupe_folder: Path, tmp_path: Path
) -> None:
    lib = str(dupe_library.directory)
    dupe_library.close()
    before = _snapshot(dupe_folder)
    result = _run("dupes", "--library", lib, "--json", "--quiet")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert len(data["groups"]) == 4
    for group in data["groups"]:
        assert os.path.isabs(group["keep"]) and group["keep"] in group["paths"]
        for pair in group["pairs"]:
            assert set(pair) == {"a", "b", "tier", "score", "reason"}
            assert pair["tier"] in {"exact", "near", "crop"}

    trash = tmp_path / "trash"
    dry = _run("dupes", "--library", lib, "--move-to", str(trash), "--json", "--quiet")
    assert len(json.loads(dry.stdout)["would_move"]) == 8
    assert _snapshot(dupe_folder) == before and not trash.exists()

    moved = _run("dupes", "--library", lib, "--move-to", str(trash), "--apply", "--json", "-q")
    assert moved.returncode == 0, moved.stderr
    outcome = json.loads(moved.stdout)
    assert len(outcome["moved"]) == 8
    assert len(_snapshot(dupe_folder)) == len(before) - 8
    with Library(lib) as reopened:  # the catalog followed the files, and set them aside
        for move in outcome["moved"]:
            assert reopened.catalog.image_by_path(move["to"]) is not None
            assert reopened.catalog.image_by_path(move["from"]) is None
        assert reopened.stats().set_aside == 8
    after_move = _run("dupes", "--library", lib, "--json", "-q")
    assert json.loads(after_move.stdout)["groups"] == []  # nothing left to clean up
    again = _run("dupes", "--library", lib, "--move-to", str(trash), "--apply", "--json", "-q")
    assert json.loads(again.stdout)["moved"] == []  # the moved copies are not moved twice
    kept = [group["keep"] for group in data["groups"]]
    found = _run("search", "--library", lib, "--like", kept[0], "-k", "50", "--json")
    assert found.returncode == 0 and "rebuilt" not in found.stderr  # the indexes followed
    found_paths = {hit["path"] for hit in json.loads(found.stdout)["results"]}
    assert found_paths and not any(path.startswith(str(trash)) for path in found_paths)

    undo = _run("dupes", "--library", lib, "--undo", outcome["journal"])
    assert undo.returncode == 0, undo.stderr
    assert _snapshot(dupe_folder) == before
    assert [p.name for p in trash.rglob("*")] == [Path(outcome["journal"]).name]  # no empty dirs
    with Library(lib) as reopened:
        for move in outcome["moved"]:
            assert reopened.catalog.image_by_path(move["from"]) is not None
        assert reopened.stats().set_aside == 0
    restored = _run("dupes", "--library", lib, "--json", "-q")
    assert len(json.loads(restored.stdout)["groups"]) == 4  # back in search, not re-embedded
    found = _run("search", "--library", lib, "--like", kept[0], "-k", "50", "--json")
    assert "rebuilt" not in found.stderr
    assert {move["from"] for move in outcome["moved"]} <= {
        hit["path"] for hit in json.loads(found.stdout)["results"]
    }


def test_interrupted_move_is_undone(
    dupe_library: Library, dupe_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = _snapshot(dupe_folder)
    report = dupe_library.dupes()
    paths = report.table.paths
    to_move = [paths[r] for g in report.groups for r in g.rows if r != g.keep]
    real_move = shutil.move
    calls = {"n": 0}

    def flaky(source: str, target: str) -> str:
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real_move(source, target)

    monkeypatch.setattr(shutil, "move", flaky)
    with pytest.raises(KeyboardInterrupt):
        dupe_library.move_duplicates(to_move, tmp_path / "trash")
    monkeypatch.setattr(shutil, "move", real_move)
    journals = list((tmp_path / "trash").glob("searchapp-dupes-*.json"))
    assert len(journals) == 1
    moved_paths = [p for p in to_move if not os.path.exists(p)]
    assert len(moved_paths) == 2
    for path in moved_paths:  # the catalog recorded the two moves that happened
        assert dupe_library.catalog.image_by_path(path) is None
    outcome = dupe_library.undo_moves(journals[0])
    assert len(outcome.moved) == 2
    assert _snapshot(dupe_folder) == before
    for path in to_move:
        assert dupe_library.catalog.image_by_path(path) is not None


def test_cli_refuses_bad_flags(tmp_path: Path) -> None:
    Library(tmp_path / "lib").close()  # an empty library: --undo reaches its journal
    result = _run("dupes", "--library", str(tmp_path / "lib"), "--apply")
    assert result.returncode == 2 and "--move-to" in result.stderr
    result = _run("dupes", "--library", str(tmp_path / "lib"), "--tier", "nearish")
    assert result.returncode == 2 and "unknown tier" in result.stderr
    result = _run("dupes", "--library", str(tmp_path / "lib"), "--threshold", "nearish=0.9")
    assert result.returncode == 2 and "NAME=VALUE" in result.stderr
    result = _run("dupes", "--library", str(tmp_path / "lib"), "--threshold", "near=1.5")
    assert result.returncode == 2 and "between -1 and 1" in result.stderr
    result = _run("dupes", "--library", str(tmp_path / "lib"), "--undo", str(tmp_path / "x.json"))
    assert result.returncode != 0 and "no journal" in result.stderr


def test_second_run_reuses_the_pixel_checks(dupe_library: Library) -> None:
    shown: list[list[tuple[int, int]]] = [[], []]  # what each run's pixel-check bar showed
    first = dupe_library.dupes(on_check=lambda done, total: shown[0].append((done, total)))
    assert first.checked > 0 and shown[0][-1][0] == shown[0][-1][1] > 0
    second = dupe_library.dupes(on_check=lambda done, total: shown[1].append((done, total)))
    assert second.checked == 0  # every check's evidence was kept, by content hash
    assert shown[1] == []  # and no bar counts pairs it does not check
    assert _groups(second) == _groups(first)
    assert [p.reason for p in second.pairs] == [p.reason for p in first.pairs]


def test_a_lossless_copy_of_a_large_jpeg_is_exact(tmp_path: Path, sample_dir: Path) -> None:
    """Indexing decodes a large JPEG reduced and takes no pixel hash from it; its PNG copy
    holds the very same pixels and must still come out exact (dupes_eval found 8 of 20 such
    copies called near)."""
    folder = tmp_path / "large"
    folder.mkdir()
    big = sample_image("astronaut").resize((2400, 2400), Image.Resampling.BICUBIC)
    big.save(folder / "big.jpg", quality=90)
    Image.open(folder / "big.jpg").save(folder / "big_copy.png")
    library = Library(tmp_path / "lib")
    index(library, folder)
    assert library.catalog.photo_table().pixel_hashes.count(None) == 1  # the reduced JPEG

    report = library.dupes()
    assert [(pair.tier, pair.reason) for pair in report.pairs] == [
        ("exact", "exact: same pixels, other file format or metadata")
    ]
    assert None not in library.catalog.photo_table().pixel_hashes  # kept: not decoded again
    assert [pair.tier for pair in library.dupes().pairs] == ["exact"]
    library.close()
