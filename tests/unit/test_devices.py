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
    DeviceOutOfMemoryError,
    DeviceUnavailableError,
    Passes,
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
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda index=0: (9, 0))
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", True)  # cuDNN's default
    device = pick_device("auto")
    assert (device.name, device.is_gpu, device.micro_batch) == ("cuda", True, 64)
    assert "Test GPU" in device.why
    assert torch.backends.cudnn.allow_tf32 is False  # a GPU's vectors agree with a CPU's


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
    # 72 images: passes of 64 on a GPU, of 4 on a CPU, each split where it falls
    images = [sample_image(name) for name in ("chelsea", "coffee", "astronaut")] * 24
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
    names = ("chelsea", "rocket") * 36  # passes of 64 on a GPU, of 32 on a CPU
    batch = np.stack([cpu.preprocess(sample_image(name)) for name in names])
    assert np.abs(on_device.encode(batch).vectors - cpu.encode(batch).vectors).max() < 1e-3
    texts = ["a cat", "a rocket on its launch pad"]
    assert np.abs(on_device.encode_text(texts) - cpu.encode_text(texts)).max() < 1e-3


@pytest.mark.parametrize(
    ("capability", "built", "runs"),
    [
        ((8, 6), ["sm_75", "sm_80", "sm_90"], True),  # an sm_80 cubin runs on an 8.6 card
        ((9, 0), ["sm_75", "sm_80", "compute_80"], True),  # PTX compiles for a newer card
        ((6, 1), ["sm_75", "sm_80", "sm_90"], False),  # a pre-Turing card the wheel left out
        ((12, 0), ["sm_75", "sm_80", "sm_90"], False),  # too new, and no PTX to compile
        ((8, 0), [], True),  # a build that does not say: the first pass tells
        ((9, 4), ["gfx90a", "gfx942"], True),  # ROCm's names: its own build, the pass tells
    ],
)
def test_a_gpu_without_kernels_in_this_pytorch_is_not_taken(
    monkeypatch: pytest.MonkeyPatch, capability: tuple[int, int], built: list[str], runs: bool
) -> None:
    """torch calls CUDA available on a card its wheel has no kernels for; the first pass would
    then fail with "no kernel image is available" where the CPU would have run."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda index=0: "Old GPU")
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda index=0: capability)
    monkeypatch.setattr(torch.cuda, "get_arch_list", lambda: built)
    device = pick_device("auto")
    if runs:
        assert device.name == "cuda" and pick_device("cuda").name == "cuda"
        return
    major, minor = capability
    assert device.name == "cpu"
    assert f"Old GPU (compute capability {major}.{minor}) is not among" in device.why
    assert "install a PyTorch built for this GPU" in device.why
    with pytest.raises(DeviceUnavailableError, match=r"--device cuda: Old GPU .* --device cpu"):
        pick_device("cuda")


def test_auto_on_a_machine_with_a_gpu_torch_cannot_use_says_the_fix(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from searchapp.encoders import devices

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    monkeypatch.setattr(devices, "_nvidia_gpu", lambda: True)  # an NVIDIA driver is there
    assert "--device cpu" not in pick_device("auto").why
    assert "the CPU runs meanwhile" in pick_device("auto").why
    monkeypatch.setattr(devices, "_nvidia_gpu", lambda: False)  # none, or a Mac
    assert "the CPU runs meanwhile" not in pick_device("auto").why


def test_gpus_hidden_from_the_process_give_the_cpus_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    for hidden in ("", "-1"):
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", hidden)
        assert index_batch("auto") == CPU_INDEX_BATCH


def _out_of_memory_above(limit: int, run):  # type: ignore[no-untyped-def]
    """`run`, failing as torch does on a device where more than `limit` images do not fit."""
    sizes: list[int] = []

    def work(chunk):  # type: ignore[no-untyped-def]
        sizes.append(len(chunk))
        if len(chunk) > limit:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return run(chunk)

    return work, sizes


def test_a_pass_that_runs_out_of_memory_halves_and_stays_halved() -> None:
    work, sizes = _out_of_memory_above(10, lambda chunk: list(chunk))
    passes = Passes(64, "clip:test on cuda")
    assert [x for part in passes.run(work, list(range(50))) for x in part] == list(range(50))
    assert sizes == [50, 25, 12, 6, 6, 6, 6, 6, 6, 6, 6, 2] and passes.size == 6
    sizes.clear()
    passes.run(work, list(range(12)))
    assert sizes == [6, 6]  # the next batch starts at the size that fitted


def test_one_image_that_does_not_fit_is_an_error_naming_the_model() -> None:
    work, _ = _out_of_memory_above(0, lambda chunk: chunk)
    with pytest.raises(DeviceOutOfMemoryError, match="clip:test on cuda ran out of memory on a"):
        Passes(4, "clip:test on cuda").run(work, [1, 2, 3])

    def broken(chunk):  # type: ignore[no-untyped-def]
        raise RuntimeError("shape mismatch")

    with pytest.raises(RuntimeError, match="shape mismatch"):  # not memory: not retried
        Passes(4, "x").run(broken, [1, 2, 3])


def test_clip_on_a_full_device_gives_the_same_vectors_in_smaller_passes(
    tiny_clip_checkpoint: Path,
) -> None:
    """CLIP's image passes: 32 images at most on a CPU (a GPU's 256-image batch in one pass
    took GBs), and halved where a device runs out of memory, with the same vectors."""
    options = EncoderOptions(clip_weights=tiny_clip_checkpoint, runtime="torch")  # as on a GPU
    encoder = create_encoder("clip:tiny-test", options)
    assert encoder.runtime == "torch"
    images = [sample_image(name) for name in ("chelsea", "rocket", "coffee")] * 24
    batch = np.stack([encoder.preprocess(image) for image in images])
    model = encoder.model.encode_image
    sizes_seen: list[int] = []

    def counted(pixels):  # type: ignore[no-untyped-def]
        sizes_seen.append(len(pixels))
        return model(pixels)

    encoder.model.encode_image = counted
    whole = encoder.encode(batch).vectors
    assert sizes_seen == [32, 32, 8]
    encoder.model.encode_image, sizes = _out_of_memory_above(20, model)
    halved = encoder.encode(batch).vectors
    assert sizes[:3] == [32, 16, 16] and max(sizes) == 32
    assert np.abs(halved - whole).max() < 1e-5


def test_onnx_runtime_is_refused_on_a_gpu_and_keeps_auto_on_the_cpu(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """ONNX Runtime's sessions here are CPU ones: on a GPU the towers ran in PyTorch, and
    `--runtime onnx` was dropped without a word."""
    from searchapp.cli import main

    photos = tmp_path / "photos"
    photos.mkdir()
    sample_image("coffee").save(photos / "coffee.jpg")
    library = str(tmp_path / "lib")
    args = ["index", str(photos), "--library", library, "--regions", "scene"]
    assert main([*args, "--runtime", "onnx", "--device", "cuda"]) == 2
    assert "--runtime onnx runs on the CPU; on --device cuda" in capsys.readouterr().err
    assert not Path(library).exists()
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # a GPU auto would take
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda index=0: "Test GPU")
    assert main([*args, "--runtime", "onnx", "--device", "auto"]) == 0
    assert "device: cpu" in capsys.readouterr().err


@pytest.mark.parametrize(("device", "alone"), [("mps", True), ("cpu", False), ("cuda", False)])
def test_passes_on_an_apple_gpu_take_turns_with_every_other_torch_pass(
    device: str, alone: bool
) -> None:
    """Two Python threads on Apple's GPU at once crash the process (pytorch/pytorch#197805):
    there the main thread's encoder passes hold the lock the readers' passes take."""
    import threading

    from searchapp.encoders.devices import TORCH_PASS

    others_could: list[bool] = []

    def work(chunk):  # type: ignore[no-untyped-def]
        def another_thread() -> None:  # a reader's CAM pass, say
            taken = TORCH_PASS.acquire(blocking=False)
            others_could.append(taken)
            if taken:
                TORCH_PASS.release()

        reader = threading.Thread(target=another_thread)
        reader.start()
        reader.join()
        return chunk

    Passes(2, "x", device).run(work, [1, 2, 3])
    assert others_could == [not alone, not alone]
