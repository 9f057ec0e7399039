"""The parts of duplicate detection: hashes under rotation, candidate search against brute
force, the pixel check on a real stereo pair, union-find and the keep rule."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from searchapp.dupes import candidates
from searchapp.dupes.candidates import hash_pairs, neighbour_pairs
from searchapp.dupes.groups import UnionFind, choose_keeper
from searchapp.dupes.pixels import PixelComparer
from searchapp.ingest.hashes import VARIANTS, hamming, phash_variants
from searchapp.store.dupe_reads import PhotoTable
from tests.conftest import sample_image


def _hash(image: Image.Image, variant: int = 0) -> bytes:
    return phash_variants(image)[8 * variant : 8 * variant + 8]


def test_turned_copy_matches_the_stored_variant() -> None:
    cat = sample_image("chelsea")
    turned = cat.transpose(Image.Transpose.ROTATE_90)
    assert hamming(_hash(turned), _hash(cat, VARIANTS.index("rot90"))) <= 2
    mirrored = cat.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    assert hamming(_hash(mirrored), _hash(cat, VARIANTS.index("flip"))) <= 2
    assert hamming(_hash(turned), _hash(cat)) > 16  # the upright hash alone would miss it


def test_hash_pairs_equal_brute_force() -> None:
    rng = np.random.default_rng(1)
    hashes = rng.integers(0, 256, (400, 64), dtype=np.uint8)
    for row in range(0, 40, 2):  # plant near copies at 0..9 bits, some turned
        copy = hashes[row, :8].copy()
        flips = rng.choice(64, size=row // 4, replace=False)
        bits = np.unpackbits(copy)
        bits[flips] ^= 1
        variant = row % 8
        hashes[row + 1, 8 * variant : 8 * variant + 8] = np.packbits(bits)
    found = hash_pairs(hashes, np.ones(400, dtype=bool), 7)
    got = {(min(a, b), max(a, b)) for a, b in zip(found.a, found.b, strict=True)}
    expected = set()
    for a in range(400):
        for b in range(400):
            if (
                a != b
                and min(
                    hamming(hashes[a, 8 * v : 8 * v + 8].tobytes(), hashes[b, :8].tobytes())
                    for v in range(8)
                )
                <= 7
            ):
                expected.add((min(a, b), max(a, b)))
    assert got == expected and len(expected) >= 15


def test_approximate_neighbours_find_the_planted_copies(monkeypatch: pytest.MonkeyPatch) -> None:
    """Clustered vectors (like real embeddings) with 100 planted near-copies: the IVF path that
    large libraries take finds what exact search finds."""
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(40, 128)).astype(np.float32)
    vectors = centres[rng.integers(0, 40, 4000)] + 0.8 * rng.normal(size=(4000, 128))
    vectors[2000:2100] = vectors[:100] + 0.05 * rng.normal(size=(100, 128))
    vectors = (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)

    def pairs(found: tuple[np.ndarray, np.ndarray, np.ndarray]) -> set[tuple[int, int]]:
        return {(a, b) for a, b in zip(found[0].tolist(), found[1].tolist(), strict=True) if a != b}

    exact = pairs(neighbour_pairs(vectors, vectors, 5, 0.95))
    assert {(i, 2000 + i) for i in range(100)} <= exact
    monkeypatch.setattr(candidates, "EXACT_SEARCH_LIMIT", 0)
    approximate = pairs(neighbour_pairs(vectors, vectors, 5, 0.95))
    assert len(exact & approximate) >= 0.95 * len(exact)
    assert approximate <= exact  # rescored with the full vectors: no pair below the threshold


def test_pixels_tell_a_second_shot_from_a_copy(tmp_path: Path) -> None:
    left, right = sample_image("motorcycle_left"), sample_image("motorcycle_right")
    left.save(tmp_path / "left.jpg", quality=92)
    right.save(tmp_path / "right.jpg", quality=92)
    small = left.resize((left.width // 2, left.height // 2), Image.Resampling.LANCZOS)
    small.save(tmp_path / "small.jpg", quality=50)
    comparer = PixelComparer()
    second_shot = comparer.compare(str(tmp_path / "left.jpg"), str(tmp_path / "right.jpg"))
    assert second_shot.inliers >= 15 and second_shot.tier is None  # aligned, yet parallax stays
    copy = comparer.compare(str(tmp_path / "small.jpg"), str(tmp_path / "left.jpg"))
    assert copy.tier == "near" and copy.residual < 0.5
    missing = comparer.compare(str(tmp_path / "gone.jpg"), str(tmp_path / "left.jpg"))
    assert missing.tier is None


def _table(
    widths: list[int],
    blur: list[float],
    taken: list[float],
    colour: list[float] | None = None,
    formats: list[str] | None = None,
    camera: list[bool] | None = None,
    mtimes: list[int] | None = None,
    exif: list[bool] | None = None,
    durations: list[float] | None = None,
) -> PhotoTable:
    n = len(widths)
    return PhotoTable(
        ids=np.arange(n),
        paths=[f"/p/{i}.{'png' if formats and formats[i] == 'PNG' else 'jpg'}" for i in range(n)],
        sizes=np.ones(n, int),
        widths=np.array(widths),
        heights=np.array(widths),
        blur=np.array(blur),
        colourfulness=np.array(colour or [40.0] * n),
        taken_at=np.array(taken),
        mtimes_ns=np.array(mtimes or [0] * n, dtype=np.int64),
        formats=formats or ["JPEG"] * n,
        has_camera=np.array(camera or [False] * n),
        cameras=["Camera" if known else "" for known in camera or [False] * n],
        taken_from_exif=np.array(exif or [False] * n),
        content_hashes=[str(i) for i in range(n)],
        pixel_hashes=[None] * n,
        phashes=np.zeros((n, 64), np.uint8),
        has_phash=np.ones(n, bool),
        durations=np.array(durations or [np.nan] * n),
    )


def test_keep_rule_order() -> None:
    table = _table([100, 200, 200], [50.0, 10.0, 90.0], [3.0, 2.0, 1.0])
    assert choose_keeper(table, [0, 1], set()) == (1, "highest resolution (200x200)")
    keep, why = choose_keeper(table, [1, 2], set())
    assert keep == 2 and "sharpest" in why
    same = _table([200, 200], [50.0, 50.0], [5.0, 1.0], exif=[True, True])
    keep, why = choose_keeper(same, [0, 1], set())
    assert keep == 1 and "taken first" in why
    # a trimmed copy in a higher resolution is still a part of the video
    trimmed = _table([400, 200], [np.nan] * 2, [1.0, 5.0], durations=[9.0, 18.0])
    assert choose_keeper(trimmed, [0, 1], set()) == (1, "the longest video (18.0 s against 9.0 s)")
    # lengths within 5% are one video's: resolution decides
    resized = _table([200, 400], [np.nan] * 2, [1.0, 5.0], durations=[18.04, 18.0])
    assert choose_keeper(resized, [0, 1], set()) == (1, "highest resolution (400x400)")
    assert choose_keeper(same, [0, 1], {"/p/0.jpg"}) == (0, "chosen with --keep")
    grey_sharper = _table([200, 200], [90.0, 50.0], [1.0, 2.0], colour=[0.4, 35.0])
    keep, why = choose_keeper(grey_sharper, [0, 1], set())
    assert keep == 1 and "in colour" in why


def test_a_blur_difference_within_the_noise_does_not_beat_the_original() -> None:
    """The reported case: a turned PNG copy was kept over its JPEG on blur 633 against 632."""
    copy_first = _table([200, 200], [633.0, 632.0], [1.0, 1.0], formats=["PNG", "JPEG"])
    keep, why = choose_keeper(copy_first, [0, 1], set())
    assert keep == 1 and "camera's format (JPEG, not PNG)" in why
    with_exif = _table([200, 200], [640.0, 600.0], [1.0, 1.0], camera=[False, True])
    keep, why = choose_keeper(with_exif, [0, 1], set())
    assert keep == 1 and "EXIF camera data" in why
    older = _table([200, 200], [600.0, 610.0], [1.0, 1.0], mtimes=[2 * 10**18, 10**18])
    keep, why = choose_keeper(older, [0, 1], set())
    assert keep == 1 and "the oldest file" in why
    clearly_sharper = _table([200, 200], [900.0, 500.0], [2.0, 1.0], formats=["PNG", "JPEG"])
    keep, why = choose_keeper(clearly_sharper, [0, 1], set())
    assert keep == 0 and "sharpest (blur score 900 against 500)" in why


def test_union_find_joins_transitively() -> None:
    sets = UnionFind(6)
    assert sets.union(0, 1) and sets.union(1, 2) and not sets.union(0, 2)
    assert sets.find(2) == sets.find(0) != sets.find(3)


def test_turned_edit_is_a_copy_but_a_rolled_camera_is_not(tmp_path: Path) -> None:
    photo = sample_image("astronaut")
    photo.save(tmp_path / "photo.jpg", quality=92)
    # an editor's turn: the corners it opens are filled flat
    photo.rotate(25, resample=Image.Resampling.BICUBIC).save(tmp_path / "edit.jpg", quality=90)
    # a camera rolled 25 degrees between two shots: beyond the overlap, more of the scene
    middle = (106, 106, 406, 406)
    photo.crop(middle).save(tmp_path / "shot_a.jpg", quality=92)
    photo.rotate(25, resample=Image.Resampling.BICUBIC).crop(middle).save(
        tmp_path / "shot_b.jpg", quality=92
    )
    comparer = PixelComparer()
    edit = comparer.compare(str(tmp_path / "edit.jpg"), str(tmp_path / "photo.jpg"))
    assert edit.tier == "near" and edit.filled_corners and 20 < abs(edit.turn) < 30
    rolled = comparer.compare(str(tmp_path / "shot_a.jpg"), str(tmp_path / "shot_b.jpg"))
    assert rolled.aligned and not rolled.filled_corners and rolled.tier is None


def test_threshold_flag_sets_the_same_options_as_the_long_flags() -> None:
    from searchapp.cli import build_parser
    from searchapp.cli_dupes import _options

    parser = build_parser()
    one_flag = parser.parse_args(
        ["dupes", "--threshold", "hash=3", "--threshold", "near=0.9", "--threshold", "similar=0.8"]
    )
    long_flags = parser.parse_args(
        ["dupes", "--hash-radius", "3", "--near-cosine", "0.9", "--similar-cosine", "0.8"]
    )
    options = _options(one_flag)
    assert options == _options(long_flags)
    assert (options.hash_radius, options.near_cosine, options.similar_cosine) == (3, 0.9, 0.8)
    assert options.crop_cosine == 0.75  # untouched thresholds keep their defaults


def test_a_png_original_is_kept_over_its_later_jpeg_resave() -> None:
    """A camera's format decides only when the dates cannot: a screenshot or an export kept as
    PNG and re-saved later as JPEG keeps the PNG."""
    later = [10_000_000_000, 20_000_000_000]  # ten seconds on
    table = _table([200, 200], [600.0, 640.0], [1.0, 1.0], formats=["PNG", "JPEG"], mtimes=later)
    keep, why = choose_keeper(table, [0, 1], set())
    assert keep == 0 and "the oldest file" in why


def test_two_exposures_are_never_copies() -> None:
    """Both EXIF-dated: another second or another camera is another shot, whatever the pixels
    (an iPhone and a Pixel shot of one view aligned like a crop on the real phone photos)."""
    from searchapp.dupes.find import _separate_exposures

    table = _table([9] * 4, [1.0] * 4, [100.0, 117.0, 100.0, 100.0], exif=[True, True, True, False])
    assert _separate_exposures(table, 0, 1)  # 17 s apart
    assert not _separate_exposures(table, 0, 2)  # one moment, one camera: a copy, or a burst
    assert not _separate_exposures(table, 1, 3)  # a copy that lost its EXIF
    table.cameras[2] = "Google Pixel 5"
    table.cameras[0] = "Apple iPhone 11"
    assert _separate_exposures(table, 0, 2)  # one second, two cameras


def test_file_times_a_copy_run_wrote_together_do_not_pick_the_original() -> None:
    """The reported case: `cp` or a script wrote a JPEG and its PNG copy within a second, and
    without EXIF the JPEG was kept as "taken first", by its file time. Only a camera's date is
    "taken"; file times within SAME_WRITE_S tell nothing, and the camera's format decides."""
    written = [1_700_000_000_300_000_000, 1_700_000_000_900_000_000]  # 0.6 s apart
    png_first = _table(
        [200, 200],
        [600.0, 600.0],
        [1_700_000_000.3, 1_700_000_000.9],
        formats=["PNG", "JPEG"],
        mtimes=written,
    )
    keep, why = choose_keeper(png_first, [0, 1], set())
    assert keep == 1 and why == "same resolution (200x200), in a camera's format (JPEG, not PNG)"
    # a day apart, the older file is the original, and the reason shows both times
    day_later = _table(
        [200, 200], [600.0, 600.0], [9e8, 1e9], mtimes=[10**18, 10**18 + 86400 * 10**9]
    )
    keep, why = choose_keeper(day_later, [1, 0], set())
    assert keep == 0 and "the oldest file (modified " in why and "; the copies " in why
    # a camera's date beats an undated copy's file time, however early
    dated = _table([200, 200], [600.0, 600.0], [2e9, 1e9], exif=[True, False])
    keep, why = choose_keeper(dated, [0, 1], set())
    assert keep == 0 and "taken first" in why and "the copies undated" in why
