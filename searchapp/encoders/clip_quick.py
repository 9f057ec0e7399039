"""CLIP for query processes: text queries without importing torch or open_clip.

A cold `searchapp search "words"` used to import torch (1.3 s) and open_clip (4 s) and build the
whole model before tokenising a few words. The first time a CLIP encoder is loaded in full, it
saves its text tower as .npy files (clip_text.FastTextTower.save) with a record of the encoder's
identity and the checkpoint's size and mtime, under ~/.cache/searchapp/clip-text. A query
process then memory-maps that tower and tokenises with clip_tokenizer: text queries never touch
torch. An image query runs the visual tower's ONNX export (made when the encoder was first
loaded) on open_clip's usual transform redone in PIL and numpy; an unusual transform or no export
loads the full encoder on first use. A changed checkpoint, a missing or incomplete folder, or
`--runtime torch` mean the full encoder, as before.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from searchapp.encoders.base import (
    EncodedBatch,
    EncoderOptions,
    ImageEncoder,
    l2_normalise,
    normalised,
    user_cache,
)
from searchapp.records import EncoderIdentity

RECORD = "encoder.json"
RECORD_VERSION = 2  # 2: with the image preprocessing and the visual tower's export name


def cache_folder(spec: str, options: EncoderOptions) -> Path:
    """Where the text tower of an encoder name (and explicit weights file) is kept."""
    explicit = str(options.clip_weights.absolute()) if options.clip_weights else ""
    key = hashlib.sha256(f"{spec}\n{explicit}".encode()).hexdigest()[:16]
    return user_cache("clip-text") / key


def save_for_queries(encoder: Any, spec: str, options: EncoderOptions, checkpoint: Path) -> None:
    """Save a fully loaded encoder's text tower for later query processes, once."""
    from searchapp.encoders.clip_text import FastTextTower

    folder = cache_folder(spec, options)
    if _valid_record(folder) is not None:
        return
    tower = FastTextTower.build(encoder.model)
    if tower is None:
        return  # another text architecture: queries load the full encoder
    stat = checkpoint.stat()
    record = {
        "version": RECORD_VERSION,
        "identity": asdict(encoder.identity),
        "preprocess": plain_preprocess(encoder.transform),
        "visual_tower": encoder.visual_tower_name,
        "input_size": encoder.input_size,
        "context_length": int(encoder.model.context_length),
        "checkpoint": str(checkpoint.absolute()),
        "size": stat.st_size,
        "mtime_ns": stat.st_mtime_ns,
    }
    with contextlib.suppress(OSError):  # a read-only cache only costs speed
        (folder / RECORD).unlink(missing_ok=True)
        tower.save(folder)
        (folder / RECORD).write_text(json.dumps(record))


def _valid_record(folder: Path) -> dict[str, Any] | None:
    try:
        record: dict[str, Any] = json.loads((folder / RECORD).read_text())
        if record.get("version") != RECORD_VERSION:
            return None  # written by an older searchapp: saved again on the next full load
        stat = Path(record["checkpoint"]).stat()
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if (stat.st_size, stat.st_mtime_ns) != (record["size"], record["mtime_ns"]):
        return None  # the weights changed since: the saved tower is not theirs
    return record


def quick_encoder(
    spec: str, options: EncoderOptions, full: Callable[[], ImageEncoder]
) -> QuickClipEncoder | None:
    """A query encoder from the saved text tower, or None when there is none to trust. `full`
    builds the full encoder, for the image queries the saved towers cannot answer."""
    from searchapp.encoders.clip_text import FastTextTower
    from searchapp.encoders.clip_tokenizer import vocab_path

    folder = cache_folder(spec, options)
    record = _valid_record(folder)
    vocab = vocab_path()
    if record is None or vocab is None:
        return None
    tower = FastTextTower.load(folder)
    if tower is None:
        return None
    return QuickClipEncoder(spec, options, record, tower, vocab, full)


def plain_preprocess(transform: Any) -> dict[str, Any] | None:
    """open_clip's image transform as plain numbers, when it is the usual one: resize the
    shorter side (bicubic), centre crop, to RGB, to [0, 1], normalise. None for anything else,
    whose image queries then load the full encoder."""
    steps = getattr(transform, "transforms", [])
    names = [type(step).__name__ for step in steps]
    if names != ["Resize", "CenterCrop", "MaybeConvertMode", "MaybeToTensor", "Normalize"]:
        return None
    resize, crop, _, _, normalise = steps
    if not isinstance(resize.size, int) or resize.max_size is not None:
        return None
    if str(resize.interpolation.value) != "bicubic" or tuple(crop.size) != (resize.size,) * 2:
        return None
    return {"size": resize.size, "mean": list(normalise.mean), "std": list(normalise.std)}


def preprocess_plain(image: Image.Image, recipe: dict[str, Any]) -> np.ndarray:
    """The transform plain_preprocess read, in PIL and numpy, rounding as torchvision does:
    the longer side floored, the crop offset rounded half to even."""
    size = int(recipe["size"])
    image = image.convert("RGB")
    width, height = image.size
    if width <= height:
        new_w, new_h = size, int(size * height / width)
    else:
        new_w, new_h = int(size * width / height), size
    image = image.resize((new_w, new_h), Image.Resampling.BICUBIC)
    left, top = round((new_w - size) / 2.0), round((new_h - size) / 2.0)
    image = image.crop((left, top, left + size, top + size))
    pixels = np.asarray(image, dtype=np.float32) / 255.0
    mean = np.asarray(recipe["mean"], dtype=np.float32)
    std = np.asarray(recipe["std"], dtype=np.float32)
    return np.ascontiguousarray(((pixels - mean) / std).transpose(2, 0, 1))


class QuickClipEncoder:
    """Text from the saved tower; images from the visual tower's ONNX export where there is
    one, else from the full encoder, loaded on first use."""

    runtime = "numpy"

    def __init__(
        self,
        spec: str,
        options: EncoderOptions,
        record: dict[str, Any],
        tower: Any,
        vocab: Path,
        full: Callable[[], ImageEncoder],
    ):
        self.identity = EncoderIdentity(**record["identity"])
        self.input_size = int(record["input_size"])
        self._spec, self._options = spec, options
        self._tower, self._vocab = tower, vocab
        self._record, self._recipe = record, record.get("preprocess")
        self._make_full = full
        self._full: Any = None
        self._visual_tower: Any = None

    @property
    def supports_text(self) -> bool:
        return True

    @functools.cached_property
    def _tokenizer(self) -> Any:
        """Built on the first text query: reading the 49k merges costs an image query 0.24 s."""
        from searchapp.encoders.clip_tokenizer import ClipTokenizer

        return ClipTokenizer(self._vocab, int(self._record["context_length"]))

    def encode_text(self, texts: list[str]) -> np.ndarray:
        return l2_normalise(self._tower.encode(self._tokenizer(texts)))

    def _full_encoder(self) -> Any:
        if self._full is None:
            self._full = self._make_full()
        return self._full

    def _visual(self) -> Any:
        """The image tower from its ONNX export, if there is one and the transform is plain."""
        if self._visual_tower is None:
            from searchapp.encoders.onnx_runtime import exported_tower

            tower = None
            if self._recipe is not None and self._record.get("visual_tower"):
                checkpoint = Path(self._record["checkpoint"])
                name = str(self._record["visual_tower"])
                tower = exported_tower(checkpoint, name, self._options.threads)
            self._visual_tower = tower or False
        return self._visual_tower

    def preprocess(self, image: Image.Image) -> np.ndarray:
        if self._recipe is not None and self._visual():
            return preprocess_plain(image, self._recipe)
        return np.asarray(self._full_encoder().preprocess(image))

    def encode(self, batch: np.ndarray) -> EncodedBatch:
        visual = self._visual()
        if visual:
            return normalised(visual(batch)[0])
        encoded: EncodedBatch = self._full_encoder().encode(batch)
        return encoded
