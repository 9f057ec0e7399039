"""Where the models run: `--device auto|cpu|cuda|mps`.

On a GPU the towers run in PyTorch (ONNX Runtime's sessions here are CPU ones) with larger
batches; decoding stays on the CPU's reader threads, which feed it. `auto` takes a CUDA GPU,
then Apple's, and where there is neither it takes the CPU and says why.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from searchapp.errors import SearchappError, UsageError

DEVICE_CHOICES = ("auto", "cpu", "cuda", "mps")
# images a forward pass on a GPU: enough to fill one, small enough for any 4 GB card (CLIP
# ViT-B-32 and the CNN at 224 px take well under a GB of activations at this size)
GPU_MICRO_BATCH = 64
GPU_INDEX_BATCH = 256  # images the index run hands the encoder at once on a GPU


CPU_INDEX_BATCH = 32
# images a CPU pass of an encoder that has no smaller choice of its own: a bigger pass is no
# faster there, and a batch of 256 (a GPU's, where `auto` guessed wrong) would take GBs
CPU_MICRO_BATCH = 32
# what torch and ONNX Runtime say when a device or the CPU's allocator has no room for a pass
OUT_OF_MEMORY = ("out of memory", "not enough memory", "allocate")

Part = TypeVar("Part")
# one PyTorch pass at a time where passes must not overlap: a CPU pass runs on all of torch's
# threads (feature_maps.py), and Apple's GPU crashes the process when two Python threads run
# on it at once (pytorch/pytorch#197805, torch 2.14). Re-entrant: a pass may call another.
TORCH_PASS = threading.RLock()


class DeviceUnavailableError(SearchappError):
    exit_code = 2  # a flag that cannot be honoured here


class DeviceOutOfMemoryError(SearchappError):
    """A pass of one image did not fit on the device."""


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
        name = f"{torch.cuda.get_device_name(0)}, CUDA {torch.version.cuda}"
        unsupported = _unsupported_gpu(torch)
        if unsupported is None:
            # convolutions in float32, not TF32 (cuDNN's default on Ampere and later): a GPU's
            # vectors then agree with a CPU's to 1e-3, so a library built on both (a Ray cluster
            # of mixed nodes, a GPU run resumed on a laptop) ranks as one built on either
            torch.backends.cudnn.allow_tf32 = False
            return Device("cuda", name)
        if requested == "cuda":
            raise DeviceUnavailableError(f"--device cuda: {unsupported}; {_fix('cuda', torch)}")
        return Device("cpu", f"{unsupported}: {_fix('auto', torch)}")
    if requested in ("auto", "mps") and mps:
        return Device("mps", "Apple GPU (Metal)")
    if requested == "auto":
        found = f"no GPU found: {_no_gpu(torch)}"
        # an NVIDIA GPU that this PyTorch cannot use is worth the fix; a machine without one
        # is not (nor a Mac: its fix is not a CUDA build)
        return Device("cpu", f"{found}; {_fix('auto', torch)}" if _nvidia_gpu() else found)
    raise DeviceUnavailableError(
        f"--device {requested}: {_no_gpu(torch)}; {_fix(requested, torch)}"
    )


def _mps_available(torch: Any) -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def index_device(requested: str, runtime: str, on_ray: bool) -> str:
    """The device an index run asks its models for. A GPU asked for and not there stops the
    run before it starts; on Ray the GPUs are the cluster's workers', and
    ray_engine.actor_pool asks the cluster instead of this machine."""
    if runtime == "onnx":  # ONNX Runtime's sessions here are CPU ones
        if requested in ("cuda", "mps"):
            raise UsageError(
                f"--runtime onnx runs on the CPU; on --device {requested} the models run in "
                "PyTorch: drop --runtime onnx, or use --device cpu"
            )
        return "cpu"
    if requested in ("cuda", "mps") and not on_ray:
        pick_device(requested)
    return requested


def _unsupported_gpu(torch: Any) -> str | None:
    """Why this PyTorch cannot run on the first CUDA GPU (None: it can). torch says CUDA is
    available on a card its wheel has no kernels for (recent wheels leave out pre-Turing
    cards); the first pass would then fail with "no kernel image is available"."""
    major, minor = torch.cuda.get_device_capability(0)
    built = torch.cuda.get_arch_list()  # e.g. ["sm_75", "sm_80", ..., "compute_90"]
    parts = [arch.partition("_") for arch in built]
    named = [(kind, number) for kind, _, number in parts if number.isdigit()]
    if not named or getattr(torch.version, "hip", None):
        return None  # a build that does not say (or ROCm's gfx names): the first pass tells
    card = major * 10 + minor
    for kind, number in named:
        have = int(number)
        # a cubin runs on its own major version from its minor up; PTX compiles for newer cards
        if (kind == "sm" and have // 10 == major and have <= card) or (
            kind == "compute" and have <= card
        ):
            return None
    return (
        f"{torch.cuda.get_device_name(0)} (compute capability {major}.{minor}) is not among "
        f"the GPUs this PyTorch {torch.__version__} has kernels for ({', '.join(built)})"
    )


def _no_gpu(torch: Any) -> str:
    if torch.version.cuda is None:
        return f"this PyTorch ({torch.__version__}) is built without CUDA"
    return f"PyTorch {torch.__version__} (CUDA {torch.version.cuda}) sees no CUDA GPU"


def _fix(requested: str, torch: Any) -> str:
    if requested == "mps":
        return "Apple GPUs need macOS 12.3+ on Apple silicon; use --device cpu or auto"
    instead = "use --device cpu or auto" if requested != "auto" else "the CPU runs meanwhile"
    if torch.version.cuda is None:
        return (
            "install a CUDA build of PyTorch (pip install torch torchvision, from PyPI's "
            f"default index on Linux); {instead}"
        )
    if torch.cuda.is_available():  # there, but too old or too new for this build
        return f"install a PyTorch built for this GPU (pytorch.org lists them); {instead}"
    return f"check that `nvidia-smi` lists the GPU and its driver; {instead}"


def index_batch(requested: str) -> int:
    """The index run's encoder batch for `--device`, chosen before torch is imported (a run
    with nothing new never imports it): for `auto`, whether a GPU is likely there."""
    if requested == "cpu" or (requested == "auto" and not _gpu_likely()):
        return CPU_INDEX_BATCH
    return GPU_INDEX_BATCH


def _gpu_likely() -> bool:
    import platform
    import sys

    if os.environ.get("CUDA_VISIBLE_DEVICES", "x").strip() in ("", "-1"):
        return False  # every GPU hidden from this process
    if _nvidia_gpu():
        return True
    return sys.platform == "darwin" and platform.machine() == "arm64"


def _nvidia_gpu() -> bool:
    """Whether an NVIDIA driver lists a GPU here (Linux), whatever torch makes of it."""
    from pathlib import Path

    nvidia = Path("/proc/driver/nvidia/gpus")
    return nvidia.is_dir() and any(nvidia.iterdir())


def out_of_memory(exc: BaseException) -> bool:
    """Whether an error is a failed allocation (torch and ONNX Runtime raise no MemoryError)."""
    text = str(exc).lower()
    return any(words in text for words in OUT_OF_MEMORY)


class Passes:
    """An encoder's passes over a batch, `size` images each. Where a pass runs out of memory
    (a bigger model or a smaller card than the default size assumes) the size halves and the
    pass is tried again, and stays halved for the batches after it."""

    def __init__(self, size: int, what: str, device: str = "cpu"):
        self.size = max(1, size)
        self.what = what  # the model, as the message names it
        # on an Apple GPU the index run's main thread and its readers' passes take turns
        self.one_at_a_time = device == "mps"

    def run(self, work: Callable[[Any], Part], batch: Any) -> list[Part]:
        parts: list[Part] = []
        start = 0
        while start < len(batch):
            chunk = batch[start : start + self.size]
            try:
                with TORCH_PASS if self.one_at_a_time else contextlib.nullcontext():
                    parts.append(work(chunk))
                start += len(chunk)
                continue
            except RuntimeError as exc:  # torch's OutOfMemoryError is one
                if not out_of_memory(exc):
                    raise
                if self.size == 1:
                    raise DeviceOutOfMemoryError(
                        f"{self.what} ran out of memory on a single image ({exc}); close what "
                        "else uses the device, or use --device cpu"
                    ) from exc
                self.size = max(1, min(self.size, len(chunk)) // 2)
            # out of the handler, whose traceback held the failed pass's tensors
            _release_cached_memory()
        return parts


def _release_cached_memory() -> None:
    """Give the blocks of the failed pass back before the smaller one tries."""
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    backend = getattr(torch, "mps", None)
    if _mps_available(torch) and backend is not None:
        backend.empty_cache()
