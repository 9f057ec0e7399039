"""ONNX Runtime against PyTorch, the reference: the same embeddings to 1e-4 on real photos, an
export made once and reused, and `auto` following the timing it recorded."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from searchapp.encoders.base import EncoderOptions
from searchapp.encoders.cnn import EfficientNetLite0Encoder, bundled_weights_path
from searchapp.encoders.onnx_runtime import weights_path
from searchapp.encoders.registry import create_encoder
from searchapp.errors import UsageError
from tests.conftest import sample_image

PHOTOS = ("chelsea", "astronaut", "coffee", "rocket", "motorcycle_left")


@pytest.fixture(scope="module")
def cnn_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real weights, copied so that the export lands in a temporary folder."""
    folder = tmp_path_factory.mktemp("cnn")
    return Path(shutil.copy(bundled_weights_path(), folder / "efficientnet_lite0.pth"))


def _batch(encoder: object, names: tuple[str, ...] = PHOTOS) -> np.ndarray:
    return np.stack([encoder.preprocess(sample_image(name)) for name in names])  # type: ignore[attr-defined]


def test_cnn_onnx_gives_the_torch_embeddings_and_labels(cnn_weights: Path) -> None:
    reference = EfficientNetLite0Encoder(EncoderOptions(runtime="torch"), cnn_weights)
    onnx = EfficientNetLite0Encoder(EncoderOptions(runtime="onnx"), cnn_weights)
    assert (reference.runtime, onnx.runtime) == ("torch", "onnx")
    batch = _batch(reference)
    expected, got = reference.encode(batch), onnx.encode(batch)
    np.testing.assert_allclose(got.vectors, expected.vectors, atol=1e-4)
    assert [row[0][0] for row in got.labels] == [row[0][0] for row in expected.labels]
    assert expected.labels[0][0][0].startswith(("tabby", "tiger cat", "Egyptian cat"))
    exported = list(cnn_weights.parent.glob("*.onnx"))
    assert len(exported) == 1  # beside the weights, with its weights in a file of their own
    assert weights_path(exported[0]).stat().st_size > 10_000_000  # EfficientNet's 4.7M floats
    assert exported[0].stat().st_size < 1_000_000
    assert weights_path(exported[0]).stat().st_mode == exported[0].stat().st_mode  # as shared
    assert [p for p in cnn_weights.parent.iterdir() if p.name.startswith(".")] == []  # no staging
    stamp = exported[0].stat().st_mtime_ns
    EfficientNetLite0Encoder(EncoderOptions(runtime="onnx"), cnn_weights)
    assert exported[0].stat().st_mtime_ns == stamp  # exported once, then reused


def test_a_graph_without_its_weights_file_is_exported_again(
    cnn_weights: Path, tmp_path: Path
) -> None:
    weights = Path(shutil.copy(cnn_weights, tmp_path / "again.pth"))
    EfficientNetLite0Encoder(EncoderOptions(runtime="onnx"), weights)
    (graph,) = tmp_path.glob("*.onnx")
    first = weights_path(graph).read_bytes()
    weights_path(graph).unlink()  # a half-deleted cache
    quick = EfficientNetLite0Encoder(EncoderOptions(quick_start=True), weights)
    assert quick.model is not None  # no broken session: the full encoder loads and re-exports
    # The export is deterministic, which is what makes two racing first exports harmless.
    assert weights_path(graph).read_bytes() == first


def test_clip_onnx_gives_the_torch_embeddings(tiny_clip_checkpoint: Path) -> None:
    def encoder(runtime: str) -> object:
        options = EncoderOptions(clip_weights=tiny_clip_checkpoint, runtime=runtime)
        return create_encoder("clip:tiny-test", options)

    reference, onnx = encoder("torch"), encoder("onnx")
    assert (reference.runtime, onnx.runtime) == ("torch", "onnx")  # type: ignore[attr-defined]
    batch = _batch(reference)
    np.testing.assert_allclose(
        onnx.encode(batch).vectors,  # type: ignore[attr-defined]
        reference.encode(batch).vectors,  # type: ignore[attr-defined]
        atol=1e-4,
    )


def test_auto_follows_the_recorded_timing(cnn_weights: Path) -> None:
    EfficientNetLite0Encoder(EncoderOptions(runtime="auto"), cnn_weights)
    verdicts = [p for p in cnn_weights.parent.glob("*.json") if ".classes." not in p.name]
    assert len(verdicts) == 1
    timing = json.loads(verdicts[0].read_text())
    assert timing["torch_seconds"] > 0 and timing["onnx_seconds"] > 0
    for onnx_seconds, chosen in ((0.001, "onnx"), (1000.0, "torch")):
        verdicts[0].write_text(json.dumps({"torch_seconds": 1.0, "onnx_seconds": onnx_seconds}))
        assert EfficientNetLite0Encoder(EncoderOptions(), cnn_weights).runtime == chosen


def test_unknown_runtime_is_refused(cnn_weights: Path) -> None:
    with pytest.raises(UsageError, match="unknown runtime"):
        EfficientNetLite0Encoder(EncoderOptions(runtime="tensorrt"), cnn_weights)


def test_a_failed_export_falls_back_to_torch_unless_onnx_was_asked_for(
    cnn_weights: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from searchapp.encoders import onnx_runtime
    from searchapp.errors import SearchappError

    def broken(*args: object) -> None:
        raise RuntimeError("operator not supported")

    weights = Path(shutil.copy(cnn_weights, tmp_path / "fresh.pth"))  # nothing exported yet
    monkeypatch.setattr(onnx_runtime, "_export", broken)
    assert EfficientNetLite0Encoder(EncoderOptions(), weights).runtime == "torch"
    with pytest.raises(SearchappError, match="--runtime torch"):
        EfficientNetLite0Encoder(EncoderOptions(runtime="onnx"), weights)
    assert list(tmp_path.glob("*.onnx")) == []


def test_a_query_process_starts_from_the_export_without_importing_torch(
    cnn_weights: Path,
) -> None:
    reference = EfficientNetLite0Encoder(EncoderOptions(runtime="torch"), cnn_weights)
    EfficientNetLite0Encoder(EncoderOptions(runtime="onnx"), cnn_weights)  # the export
    quick = EfficientNetLite0Encoder(EncoderOptions(quick_start=True), cnn_weights)
    assert (quick.runtime, quick.model) == ("onnx", None)
    batch = _batch(reference)
    expected, got = reference.encode(batch), quick.encode(batch)
    np.testing.assert_allclose(got.vectors, expected.vectors, atol=1e-4)
    assert got.labels[0][0][0] == expected.labels[0][0][0]
    script = (
        "import sys; from pathlib import Path; import numpy as np\n"
        "from searchapp.encoders.base import EncoderOptions\n"
        "from searchapp.encoders.cnn import EfficientNetLite0Encoder\n"
        f"weights = Path({str(cnn_weights)!r})\n"
        "e = EfficientNetLite0Encoder(EncoderOptions(quick_start=True), weights)\n"
        "e.encode(np.zeros((1, 3, 224, 224), np.float32))\n"
        "print(e.runtime, sorted(m for m in ('torch', 'timm', 'open_clip') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["onnx", "[]"]
    # without an export (or with --runtime torch) the encoder loads PyTorch as before
    fresh = Path(shutil.copy(cnn_weights, cnn_weights.parent / "unexported.pth"))
    assert EfficientNetLite0Encoder(EncoderOptions(quick_start=True, runtime="torch"), fresh).model


def test_index_flags_size_the_encoder_and_the_readers() -> None:
    import os

    from searchapp.cli import _index_setup, build_parser

    parser = build_parser()
    flags = ["--threads", "1", "--workers", "3", "--runtime", "torch"]
    sized = parser.parse_args(["index", "x", *flags])
    options, encoder_options = _index_setup(sized)
    assert (encoder_options.threads, options.workers, encoder_options.runtime) == (1, 3, "torch")
    defaults = _index_setup(parser.parse_args(["index", "x"]))
    assert defaults[1].threads == defaults[0].workers == (os.cpu_count() or 1)
    assert defaults[1].runtime == "auto"
