"""The encoder protocol: preprocessing (beside decoding), batched L2-normalised encoding."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
from PIL import Image

from searchapp.records import EncoderIdentity


def user_cache(name: str) -> Path:
    """searchapp's folder `name` in the user's cache: $XDG_CACHE_HOME, else ~/.cache."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "searchapp" / name


@dataclass(frozen=True)
class EncoderOptions:
    clip_weights: Path | None = None  # a local open_clip checkpoint instead of the hub cache
    allow_download: bool = True  # an explicit clip: choice may download; auto never does
    threads: int | None = None  # torch intra-op threads
    runtime: str = "auto"  # image towers: auto (ONNX Runtime where faster), torch or onnx
    quick_start: bool = False  # a query process: an earlier ONNX export over importing torch
    device: str = "cpu"  # a torch device (encoders/devices.py picks it); a GPU runs torch


@dataclass
class EncodedBatch:
    vectors: np.ndarray  # (n, dim) float32, rows L2-normalised
    labels: list[list[tuple[str, float]]] = field(default_factory=list)  # per row, best first
    norms: np.ndarray | None = None  # (n,) each row's length before normalising: `stats` health


class ImageEncoder(Protocol):
    identity: EncoderIdentity
    input_size: int  # side of the square model input; decoding may reduce JPEGs down to it

    def preprocess(self, image: Image.Image) -> np.ndarray:
        """RGB PIL image -> float32 CHW array ready for encode()."""
        ...

    def encode(self, batch: np.ndarray) -> EncodedBatch:
        """(n, 3, s, s) float32 -> normalised vectors, plus class labels if the model has them."""
        ...

    @property
    def supports_text(self) -> bool: ...

    def encode_text(self, texts: list[str]) -> np.ndarray: ...


def keep_freed_memory() -> None:
    """Stop glibc from returning freed activation buffers to the OS after every forward pass.

    Each pass allocates and frees tens of megabytes; with glibc's defaults those go back to the
    kernel and fault in again next pass. On the reference VM that was half the encode time
    (560k page faults per 160 images, 15 ms/image against 7.4 ms with this). A no-op elsewhere.
    """
    import ctypes
    import ctypes.util
    import sys

    if not sys.platform.startswith("linux"):
        return
    try:  # glibc's soname first: find_library forks ldconfig, a copy of this whole process
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c"))
        except OSError:
            return
    mallopt = getattr(libc, "mallopt", None)
    if mallopt is None:
        return  # not glibc (musl has no mallopt)
    m_trim_threshold, m_mmap_threshold = -1, -3
    mallopt(m_mmap_threshold, 32 << 20)  # glibc's ceiling for this setting
    mallopt(m_trim_threshold, 256 << 20)


def normalised(
    raw: np.ndarray, labels: list[list[tuple[str, float]]] | None = None
) -> EncodedBatch:
    """A batch of unit rows from raw features, keeping each row's length."""
    raw = np.asarray(raw, dtype=np.float32)
    return EncodedBatch(l2_normalise(raw), labels or [], np.linalg.norm(raw, axis=1))


def l2_normalise(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return (vectors / np.maximum(norms, 1e-12)).astype(np.float32)


def resize_shorter_and_center_crop(
    image: Image.Image, size: int, resample: Image.Resampling = Image.Resampling.BICUBIC
) -> Image.Image:
    width, height = image.size
    scale = size / min(width, height)
    new_w, new_h = max(size, round(width * scale)), max(size, round(height * scale))
    image = image.resize((new_w, new_h), resample)
    left, top = (new_w - size) // 2, (new_h - size) // 2
    return image.crop((left, top, left + size, top + size))
