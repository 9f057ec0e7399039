"""`--device`: what auto picks and says, an absent GPU refused with its reason, and the models
giving the CPU's vectors on every device this machine has (a GPU where one is present)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from searchapp.encoders.base import EncoderOptions
from searchapp.encoders.devices import (
    CPU_INDEX_BATCH,
    DeviceUnavailableError,
    index_batch,
    pick_device,
)
from searchapp.encoders.registry import create_encoder
from tests.conftest import cli_env, sample_image

HAS_CUDA = torch.cuda.is_available()
HAS_MPS = bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())
# the CPU always, so that the device path of every tower runs here too; a GPU where one is
DEVICES = ["cpu"] + (["cuda"] if HAS_CUDA else []) + (["mps"] if HAS_MPS else [])


def test_auto_takes_a_cuda_gpu_when_torch_sees_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda index=0: "Test GPU")
    device = pick_device("auto")
    assert (device.name, device.is_gpu, device.micro_batch) == ("cuda", True, 64)
    assert "Test GPU" in device.why


def test_auto_without_a_gpu_takes_the_cpu_and_says_why(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    device = pick_device("auto")
    assert (device.name, device.is_gpu, device.micro_batch) == ("cpu", False, None)
    assert device.why.startswith("no GPU found: ") and torch.__version__ in device.why


@pytest.mark.parametrize("asked", ["cuda", "mps"])
def test_a_gpu_asked_for_and_absent_is_refused_with_the_fix(
    monkeypatch: pytest.MonkeyPatch, asked: str
) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    with pytest.raises(DeviceUnavailableError, match=f"--device {asked}: .*--device cpu or auto"):
        pick_device(asked)
    with pytest.raises(DeviceUnavailableError, match="unknown device 'tpu'"):
        pick_device("tpu")


def test_the_index_batch_follows_the_device() -> None:
    assert index_batch("cpu") == CPU_INDEX_BATCH
    assert index_batch("cuda") == index_batch("mps") > CPU_INDEX_BATCH


def test_index_with_an_absent_gpu_stops_before_the_library_is_made(tmp_path: Path) -> None:
    photos = tmp_path / "photos"
    photos.mkdir()
    sample_image("coffee").save(photos / "coffee.jpg")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "searchapp",
            "index",
            str(photos),
            "--device",
            "cuda",
            "--library",
            str(tmp_path / "lib"),
            "--regions",
            "scene",
        ],
        capture_output=True,
        text=True,
        env=cli_env(),
        timeout=300,
    )
    if HAS_CUDA:  # a machine with a GPU runs there, and says so
        assert result.returncode == 0, result.stderr
        assert "device: cuda (" in result.stderr
    else:
        assert result.returncode == 2
        assert "searchapp: error: --device cuda: " in result.stderr
        assert not (tmp_path / "lib").exists()


@pytest.mark.parametrize("device", DEVICES)
def test_the_cnn_gives_the_cpus_vectors_and_maps_on_each_device(cnn_encoder, device: str) -> None:  # type: ignore[no-untyped-def]
    from searchapp.encoders.cnn import EfficientNetLite0Encoder

    on_device = EfficientNetLite0Encoder(EncoderOptions(device=device, runtime="torch"))
    assert on_device.runtime == "torch" and on_device.device == device
    images = [sample_image(name) for name in ("chelsea", "coffee", "astronaut")]
    batch = np.stack([cnn_encoder.preprocess(image) for image in images])
    ours, reference = on_device.encode(batch), cnn_encoder.encode(batch)
    assert np.abs(ours.vectors - reference.vectors).max() < 1e-3
    assert [labels[0][0] for labels in ours.labels] == [r[0][0] for r in reference.labels]
    pixels = on_device.region_input(images[0])
    ours_map = on_device.feature_map(pixels, images[0].size).cells
    reference_map = cnn_encoder.feature_map(pixels, images[0].size).cells
    assert np.abs(ours_map - reference_map).max() < 2e-3 * np.abs(reference_map).max()


@pytest.mark.parametrize("device", DEVICES)
def test_clip_gives_the_cpus_image_and_text_vectors_on_each_device(
    tiny_clip_checkpoint: Path, device: str
) -> None:
    cpu = create_encoder("clip:tiny-test", EncoderOptions(clip_weights=tiny_clip_checkpoint))
    on_device = create_encoder(
        "clip:tiny-test", EncoderOptions(clip_weights=tiny_clip_checkpoint, device=device)
    )
    batch = np.stack([cpu.preprocess(sample_image(name)) for name in ("chelsea", "rocket")])
    assert np.abs(on_device.encode(batch).vectors - cpu.encode(batch).vectors).max() < 1e-3
    texts = ["a cat", "a rocket on its launch pad"]
    assert np.abs(on_device.encode_text(texts) - cpu.encode_text(texts)).max() < 1e-3
