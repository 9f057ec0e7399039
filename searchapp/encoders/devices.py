"""Where the models run: `--device auto|cpu|cuda|mps`.

On a GPU the towers run in PyTorch (ONNX Runtime's sessions here are CPU ones) with larger
batches; decoding stays on the CPU's reader threads, which feed it. `auto` takes a CUDA GPU,
then Apple's, and where there is neither it takes the CPU and says why.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from searchapp.errors import SearchappError

DEVICE_CHOICES = ("auto", "cpu", "cuda", "mps")
# images a forward pass on a GPU: enough to fill one, small enough for any 4 GB card (CLIP
# ViT-B-32 and the CNN at 224 px take well under a GB of activations at this size)
GPU_MICRO_BATCH = 64
GPU_INDEX_BATCH = 256  # images the index run hands the encoder at once on a GPU


CPU_INDEX_BATCH = 32


class DeviceUnavailableError(SearchappError):
    exit_code = 2  # a flag that cannot be honoured here


@dataclass(frozen=True)
class Device:
    name: str  # a torch device: "cpu", "cuda" or "mps"
    why: str  # said to the user: what was found

    @property
    def is_gpu(self) -> bool:
        return self.name != "cpu"

    @property
    def micro_batch(self) -> int | None:
        return micro_batch(self.name)


def micro_batch(device: str) -> int | None:
    """Images a forward pass on a torch device; None: the encoder's own CPU choice."""
    return GPU_MICRO_BATCH if device != "cpu" else None


def pick_device(requested: str) -> Device:
    """The device for `--device`; an explicit GPU that is not there is an error naming why."""
    if requested not in DEVICE_CHOICES:
        raise DeviceUnavailableError(
            f"unknown device {requested!r}; valid: {', '.join(DEVICE_CHOICES)}"
        )
    if requested == "cpu":
        return Device("cpu", "as requested")
    import torch

    cuda, mps = torch.cuda.is_available(), _mps_available(torch)
    if requested in ("auto", "cuda") and cuda:
        return Device("cuda", f"{torch.cuda.get_device_name(0)}, CUDA {torch.version.cuda}")
    if requested in ("auto", "mps") and mps:
        return Device("mps", "Apple GPU (Metal)")
    if requested == "auto":
        return Device("cpu", f"no GPU found: {_no_gpu(torch)}")
    raise DeviceUnavailableError(
        f"--device {requested}: {_no_gpu(torch)}; {_fix(requested, torch)}"
    )


def _mps_available(torch: Any) -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def _no_gpu(torch: Any) -> str:
    if torch.version.cuda is None:
        return f"this PyTorch ({torch.__version__}) is built without CUDA"
    return f"PyTorch {torch.__version__} (CUDA {torch.version.cuda}) sees no CUDA GPU"


def _fix(requested: str, torch: Any) -> str:
    if requested == "mps":
        return "Apple GPUs need macOS 12.3+ on Apple silicon; use --device cpu or auto"
    if torch.version.cuda is None:
        return (
            "install a CUDA build of PyTorch (pip install torch torchvision, from PyPI's "
            "default index on Linux), or use --device cpu or auto"
        )
    return "check that `nvidia-smi` lists the GPU and its driver, or use --device cpu or auto"


def index_batch(requested: str) -> int:
    """The index run's encoder batch for `--device`, chosen before torch is imported (a run
    with nothing new never imports it): for `auto`, whether a GPU is likely there."""
    if requested == "cpu" or (requested == "auto" and not _gpu_likely()):
        return CPU_INDEX_BATCH
    return GPU_INDEX_BATCH


def _gpu_likely() -> bool:
    import platform
    import sys
    from pathlib import Path

    nvidia = Path("/proc/driver/nvidia/gpus")
    if nvidia.is_dir() and any(nvidia.iterdir()):
        return True
    return sys.platform == "darwin" and platform.machine() == "arm64"
