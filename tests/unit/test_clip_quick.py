"""Text queries without torch: our tokenizer against open_clip's, the saved text tower against
the full model, and the fall-backs when the saved tower cannot be trusted."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from searchapp.encoders.base import EncoderOptions
from searchapp.encoders.clip_quick import QuickClipEncoder, cache_folder, quick_encoder
from searchapp.encoders.clip_tokenizer import ClipTokenizer, vocab_path
from searchapp.encoders.registry import create_encoder
from tests.conftest import sample_image

AWKWARD = [
    "a red bicycle by a canal",
    "Dog on the BEACH!!",
    "  café  naïve résumé ",
    "emoji 🐱🚲 and 日本語のテキスト",
    "&amp;lt;b&amp;gt; html entities",
    "it's they're we've I'm you'll he'd",
    "x" * 300,
    " ".join(["word"] * 100),  # longer than the context: cut, keeping the end token
    "",
    "12345 3.14 $100",
    "<start_of_text> inside",
    "Ünïcödé ÀÉÎÕÜ ß ﬁ ligature",
]


def _no_full() -> None:
    raise AssertionError("finding the saved towers must not build the full encoder")


def test_the_tokenizer_matches_open_clips() -> None:
    import open_clip

    path = vocab_path()
    assert path is not None
    ours = ClipTokenizer(path)(AWKWARD)
    theirs = open_clip.get_tokenizer("ViT-B-32")(AWKWARD).numpy()
    np.testing.assert_array_equal(ours, theirs)


def _options(checkpoint: Path, **extra: object) -> EncoderOptions:
    return EncoderOptions(clip_weights=checkpoint, **extra)  # type: ignore[arg-type]


def test_a_saved_tower_gives_the_full_models_text_embeddings(tiny_clip_checkpoint: Path) -> None:
    full = create_encoder("clip:tiny-test", _options(tiny_clip_checkpoint))  # saves the tower
    quick = create_encoder("clip:tiny-test", _options(tiny_clip_checkpoint, quick_start=True))
    assert isinstance(quick, QuickClipEncoder) and quick.identity == full.identity
    np.testing.assert_allclose(quick.encode_text(AWKWARD), full.encode_text(AWKWARD), atol=1e-5)


def test_without_a_visual_export_an_image_query_loads_the_full_encoder(
    tiny_clip_checkpoint: Path, tmp_path: Path
) -> None:
    import shutil

    weights = Path(shutil.copy(tiny_clip_checkpoint, tmp_path / "never-exported.pt"))
    full = create_encoder("clip:tiny-test", _options(weights, runtime="torch"))  # no export
    quick = create_encoder("clip:tiny-test", _options(weights, quick_start=True))
    image = sample_image("chelsea")
    got = quick.encode(quick.preprocess(image)[None]).vectors
    np.testing.assert_allclose(got, full.encode(full.preprocess(image)[None]).vectors, atol=1e-5)
    assert quick._full is not None  # type: ignore[attr-defined]


PORTRAIT_AND_ODD = [("chelsea", None), ("astronaut", (301, 777)), ("coffee", (999, 223))]


@pytest.mark.parametrize(("name", "size"), PORTRAIT_AND_ODD)
def test_plain_preprocessing_matches_open_clips_transform(
    tiny_clip_checkpoint: Path, name: str, size: tuple[int, int] | None
) -> None:
    from searchapp.encoders.clip_quick import plain_preprocess, preprocess_plain

    full = create_encoder("clip:tiny-test", _options(tiny_clip_checkpoint))
    recipe = plain_preprocess(full.transform)  # type: ignore[attr-defined]
    assert recipe is not None and recipe["size"] == full.input_size
    image = sample_image(name)
    if size is not None:
        image = image.resize(size)
    np.testing.assert_allclose(preprocess_plain(image, recipe), full.preprocess(image), atol=1e-5)


def test_an_image_query_runs_the_visual_export_without_the_full_model(
    tiny_clip_checkpoint: Path,
) -> None:
    full = create_encoder("clip:tiny-test", _options(tiny_clip_checkpoint))  # exports, saves
    quick = create_encoder("clip:tiny-test", _options(tiny_clip_checkpoint, quick_start=True))
    images = [sample_image(name) for name in ("chelsea", "rocket")]
    got = quick.encode(np.stack([quick.preprocess(image) for image in images])).vectors
    expected = full.encode(np.stack([full.preprocess(image) for image in images])).vectors
    np.testing.assert_allclose(got, expected, atol=1e-4)
    assert quick._full is None  # type: ignore[attr-defined]  # no torch model was built
    assert "_tokenizer" not in vars(quick)  # an image query leaves the vocabulary unread
    assert quick.encode_text(["a cat"]).shape == (1, expected.shape[1])


def test_a_query_process_embeds_text_and_images_without_importing_torch(
    tiny_clip_checkpoint: Path,
) -> None:
    create_encoder("clip:tiny-test", _options(tiny_clip_checkpoint))
    script = (
        "import sys; from pathlib import Path\n"
        "from searchapp.encoders.base import EncoderOptions\n"
        "from searchapp.encoders.registry import create_encoder\n"
        f"options = EncoderOptions(clip_weights=Path({str(tiny_clip_checkpoint)!r}), "
        "quick_start=True)\n"
        "e = create_encoder('clip:tiny-test', options)\n"
        "vector = e.encode_text(['a red bicycle'])\n"
        "from PIL import Image\n"
        "e.encode(e.preprocess(Image.new('RGB', (640, 480), 'red'))[None])\n"
        "print(type(e).__name__, vector.shape[0], "
        "sorted(m for m in ('torch', 'open_clip', 'timm') if m in sys.modules))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, env=os.environ
    )
    assert out.stdout.split() == ["QuickClipEncoder", "1", "[]"]


def test_changed_weights_or_runtime_torch_load_the_full_encoder(
    tiny_clip_checkpoint: Path, tmp_path: Path
) -> None:
    import shutil

    weights = Path(shutil.copy(tiny_clip_checkpoint, tmp_path / "copy.pt"))
    create_encoder("clip:tiny-test", _options(weights))
    assert quick_encoder("tiny-test", _options(weights, quick_start=True), _no_full) is not None
    torch_only = create_encoder(
        "clip:tiny-test", _options(weights, quick_start=True, runtime="torch")
    )
    assert not isinstance(torch_only, QuickClipEncoder)
    stat = weights.stat()
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))  # new weights
    assert quick_encoder("tiny-test", _options(weights, quick_start=True), _no_full) is None
    create_encoder("clip:tiny-test", _options(weights))  # the full load saves the tower again
    assert quick_encoder("tiny-test", _options(weights, quick_start=True), _no_full) is not None


@pytest.mark.parametrize("damage", ["no manifest", "missing array"])
def test_an_incomplete_saved_tower_is_not_used(
    tiny_clip_checkpoint: Path, tmp_path: Path, damage: str
) -> None:
    import shutil

    weights = Path(shutil.copy(tiny_clip_checkpoint, tmp_path / f"{damage}.pt"))
    create_encoder("clip:tiny-test", _options(weights))
    folder = cache_folder("tiny-test", _options(weights))
    if damage == "no manifest":
        (folder / "manifest.json").unlink()
    else:
        (folder / "b0.qkv_t.npy").unlink()
    assert quick_encoder("tiny-test", _options(weights, quick_start=True), _no_full) is None
