"""ONNX Runtime for the image towers, exported once from the real PyTorch model.

PyTorch stays the reference. On first use a tower is exported (TorchScript exporter, dynamic
batch) next to its weights, or under ~/.cache/searchapp/onnx when that folder is not writable,
and both runtimes are timed on one batch; `auto` then uses ONNX Runtime only where it was faster
(ViT-B-32 on 2 cores: 33 images/s against 17). The file is keyed by the weights file's name, size
and mtime and by the versions of torch and onnxruntime, so new weights or a new runtime export
again. tests/unit/test_onnx_runtime.py holds the two runtimes to 1e-4 of each other.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import logging
import os
import shutil
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from searchapp.encoders.base import user_cache
from searchapp.errors import SearchappError, UsageError

RUNTIMES = ("auto", "torch", "onnx")
CALIBRATION_BATCH = 8
OPSET = 17
QUICK_UNOPTIMISED_BYTES = 64 << 20  # above this, a query session skips graph optimisation

Tower = Callable[[np.ndarray], list[np.ndarray]]


def installed() -> bool:
    return importlib.util.find_spec("onnxruntime") is not None


def check_runtime(runtime: str) -> None:
    if runtime not in RUNTIMES:
        raise UsageError(f"unknown runtime {runtime!r}; choose from {', '.join(RUNTIMES)}")
    if runtime == "onnx" and not installed():
        raise UsageError("--runtime onnx needs onnxruntime: pip install onnxruntime onnx")


def export_path(weights: Path, tower: str) -> Path:
    """Where a tower's export lives: beside its weights when that folder is writable. Versions
    come from package metadata, so finding an export imports neither torch nor onnxruntime."""
    from importlib.metadata import version

    stat = weights.stat()
    key = f"{weights.name}:{stat.st_size}:{stat.st_mtime_ns}:{version('torch')}:"
    key += f"{version('onnxruntime')}:{tower}:external-weights"
    name = f"{weights.stem}.{tower}.{hashlib.sha256(key.encode()).hexdigest()[:12]}.onnx"
    beside = weights.parent
    if os.access(beside, os.W_OK):
        return beside / name
    return user_cache("onnx") / name


def _export(module: Any, input_size: int, outputs: list[str], path: Path) -> None:
    """Writes the graph to `path` and its weights to `path`.data. ONNX Runtime memory-maps
    weights kept apart, where it parses a single file's protobuf: ViT-B-32's tower then starts
    in 0.35 s instead of 0.7. The weights land first, and the graph, which names them, only
    once they are whole; both names are final only after a complete write."""
    import onnx
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{path.stem}.", dir=path.parent))
    single = staging / "single.onnx"
    example = torch.zeros(1, 3, input_size, input_size)
    axes = {name: {0: "n"} for name in ["pixels", *outputs]}
    # With gradients off, PyTorch swaps attention for a fused kernel ONNX has no operator for;
    # the tracer's warnings are about shapes it freezes, and only the batch axis varies here.
    try:
        with torch.inference_mode(False), torch.enable_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                module,
                (example,),
                str(single),
                dynamo=False,
                input_names=["pixels"],
                output_names=outputs,
                dynamic_axes=axes,
                opset_version=OPSET,
            )
        data = weights_path(path)
        onnx.save_model(
            onnx.load(str(single)),
            str(staging / path.name),
            save_as_external_data=True,
            location=data.name,
        )
        graph_mode = (staging / path.name).stat().st_mode & 0o777
        os.chmod(staging / data.name, graph_mode)  # onnx writes it owner-only; share like the graph
        # Two first exports of the same weights may race here: the exporter is deterministic,
        # so either pair of files is the same pair.
        os.replace(staging / data.name, data)
        os.replace(staging / path.name, path)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def weights_path(graph: Path) -> Path:
    return graph.with_name(graph.name + ".data")


def shaped_session(module: Any, shape: tuple[int, ...], threads: int | None) -> Any:
    """A session for one fixed input shape, exported in memory (0.3 s for EfficientNet): ONNX
    Runtime folds every shape of such a graph, and ran EfficientNet's feature map 1.5x faster
    than from an export with dynamic height and width. Its one output is named "out"."""
    import io

    import torch

    buffer = io.BytesIO()
    with torch.inference_mode(False), torch.enable_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            (torch.zeros(*shape),),
            buffer,  # a file object works, though torch's stub says paths only
            dynamo=False,
            input_names=["pixels"],
            output_names=["out"],
            opset_version=OPSET,
        )
    return _session(buffer.getvalue(), threads, arena=False)


def _session(
    source: Path | bytes, threads: int | None, *, quick: bool = False, arena: bool = True
) -> Any:
    import onnxruntime

    options = onnxruntime.SessionOptions()
    # without its arena a session gives its buffers back after each run: 88 MB held instead of
    # 136 for the region pass, which keeps a session per input size
    options.enable_cpu_mem_arena = arena
    if quick and isinstance(source, Path):  # a query process: start plus one run is what counts
        level = onnxruntime.GraphOptimizationLevel
        # ViT-B-32 (350 MB): 0.40 s unoptimised, 0.53 with the basic pass; EfficientNet (18 MB):
        # 75 ms against 56, and the full set costs ViT-B-32 1.2 s
        big = weights_path(source).stat().st_size > QUICK_UNOPTIMISED_BYTES
        options.graph_optimization_level = level.ORT_DISABLE_ALL if big else level.ORT_ENABLE_BASIC
    if threads:
        options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    # ORT's pool spins between runs by default, taking the cores the decoders need meanwhile
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    model = str(source) if isinstance(source, Path) else source
    return onnxruntime.InferenceSession(model, options, providers=["CPUExecutionProvider"])


def exported_tower(weights: Path, name: str, threads: int | None) -> Tower | None:
    """The tower from an export made earlier, without PyTorch: a query process starts in a
    fraction of the time torch and its model code take to import (about 4 s). None when there
    is no export yet, or no onnxruntime."""
    path = _existing_export(weights, name) if installed() else None
    if path is None:
        return None
    try:
        return _runner(_session(path, threads, quick=True))
    except Exception:  # a damaged export: the torch path re-exports it
        return None


def _places(weights: Path, name: str) -> tuple[Path, Path]:
    """Where an export may be: beside the weights (or the user cache, if that folder is not
    writable), then the user cache, where a failed write beside the weights sent it."""
    first = export_path(weights, name)
    return first, user_cache("onnx") / first.name


def _existing_export(weights: Path, name: str) -> Path | None:
    places = _places(weights, name)
    return next((path for path in places if path.exists() and weights_path(path).exists()), None)


def _runner(session: Any) -> Tower:
    def run(batch: np.ndarray) -> list[np.ndarray]:
        return list(session.run(None, {"pixels": np.ascontiguousarray(batch, np.float32)}))

    return run


def _timed(run: Tower, batch: np.ndarray) -> float:
    """The best of three runs: on EfficientNet the two runtimes are within 30% of each other,
    which one run on a busy machine got the wrong way round."""
    run(batch)  # first call: allocations and kernel choice
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        run(batch)
        best = min(best, time.perf_counter() - started)
    return best


def onnx_tower(
    module: Any,
    torch_tower: Tower,
    *,
    weights: Path,
    name: str,
    input_size: int,
    outputs: list[str],
    runtime: str,
    threads: int | None,
) -> Tower | None:
    """An ONNX Runtime callable for this tower, or None where PyTorch should run it."""
    check_runtime(runtime)
    if runtime == "torch" or not installed():
        return None
    if runtime == "auto":  # timed before, and PyTorch won: no session to build
        for place in _places(weights, name):
            verdict = _read_verdict(place.with_suffix(".json"))
            if verdict is not None and not _onnx_wins(verdict):
                return None
    try:
        path = _exported(module, weights, name, input_size, outputs)
        session = _session(path, threads)
    except Exception as exc:  # the exporter raises many kinds; PyTorch still works
        if runtime == "onnx":
            raise SearchappError(
                f"cannot run {name} on ONNX Runtime ({type(exc).__name__}: {exc}); "
                "use --runtime torch"
            ) from exc
        logging.getLogger(__name__).warning(
            "searchapp: %s stays on PyTorch: its ONNX export failed (%s)", name, exc
        )
        return None
    verdict_path = path.with_suffix(".json")
    run = _runner(session)
    if runtime == "onnx":
        return run
    verdict = _read_verdict(verdict_path)
    if verdict is None:
        sample = np.random.default_rng(0).standard_normal(
            (CALIBRATION_BATCH, 3, input_size, input_size), np.float32
        )
        verdict = {
            "torch_seconds": _timed(torch_tower, sample),
            "onnx_seconds": _timed(run, sample),
        }
        with contextlib.suppress(OSError):
            verdict_path.write_text(json.dumps(verdict))
    return run if _onnx_wins(verdict) else None


def _onnx_wins(verdict: dict[str, float]) -> bool:
    return verdict["onnx_seconds"] < verdict["torch_seconds"]


def _exported(module: Any, weights: Path, name: str, input_size: int, outputs: list[str]) -> Path:
    existing = _existing_export(weights, name)
    if existing is not None:
        return existing
    first, fallback = _places(weights, name)
    try:
        _export(module, input_size, outputs, first)
        return first
    except OSError:
        if first == fallback:
            raise
        _export(module, input_size, outputs, fallback)  # the weights folder was read-only
        return fallback


def _read_verdict(path: Path) -> dict[str, float] | None:
    try:
        data = json.loads(path.read_text())
        return {key: float(data[key]) for key in ("torch_seconds", "onnx_seconds")}
    except (OSError, ValueError, KeyError, TypeError):
        return None
