"""A readable error where torch and torchvision were installed as a mismatched pair.

torchvision's compiled operators are built against one torch release; beside another, importing
it fails deep inside timm or open_clip with "operator torchvision::nms does not exist" (met when
a CPU-wheel index was unreachable and pip fell back to a default index for one of the two)."""

from __future__ import annotations

from searchapp.errors import SearchappError

PAIR_HINT = (
    "install a matching pair in one command, e.g. pip install torch==2.14.1 torchvision==0.29.1 "
    "(add --index-url https://download.pytorch.org/whl/cpu for the CPU-only build)"
)


class TorchStackError(SearchappError):
    exit_code = 6  # like missing weights: the model cannot be loaded as installed


def check_torch_stack() -> None:
    """Import torch and torchvision once, turning a mismatch into a message that says the fix."""
    try:
        import torch
        import torchvision  # noqa: F401
    except (RuntimeError, ImportError, OSError) as exc:
        versions = _versions()
        raise TorchStackError(
            f"PyTorch cannot load ({versions}): {first_line(exc)}. {PAIR_HINT}"
        ) from exc
    del torch


def _versions() -> str:
    from importlib.metadata import PackageNotFoundError, version

    found = []
    for name in ("torch", "torchvision"):
        try:
            found.append(f"{name} {version(name)}")
        except PackageNotFoundError:
            found.append(f"{name} not installed")
    return ", ".join(found)


def first_line(exc: BaseException) -> str:
    return (str(exc).splitlines() or [type(exc).__name__])[0]
