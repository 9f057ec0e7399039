"""CLIP for query processes: text queries without importing torch or open_clip.

A cold `searchapp search "words"` used to import torch (1.3 s) and open_clip (4 s) and build the
whole model before tokenising a few words. The first time a CLIP encoder is loaded in full, it
saves its text tower as .npy files (clip_text.FastTextTower.save) with a record of the encoder's
identity and the checkpoint's size and mtime, under ~/.cache/searchapp/clip-text. A query
process then memory-maps that tower and tokenises with clip_tokenizer: text queries never touch
torch. Anything else (an image query, indexing) loads the full encoder on first use. A changed
checkpoint, a missing or incomplete folder, or `--runtime torch` mean the full encoder, as before.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from searchapp.encoders.base import EncodedBatch, EncoderOptions, l2_normalise
from searchapp.records import EncoderIdentity

RECORD = "encoder.json"


def cache_folder(spec: str, options: EncoderOptions) -> Path:
    """Where the text tower of an encoder name (and explicit weights file) is kept."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    explicit = str(options.clip_weights.absolute()) if options.clip_weights else ""
    key = hashlib.sha256(f"{spec}\n{explicit}".encode()).hexdigest()[:16]
    return Path(base) / "searchapp" / "clip-text" / key


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
        "identity": asdict(encoder.identity),
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
        stat = Path(record["checkpoint"]).stat()
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if (stat.st_size, stat.st_mtime_ns) != (record["size"], record["mtime_ns"]):
        return None  # the weights changed since: the saved tower is not theirs
    return record


def quick_encoder(spec: str, options: EncoderOptions) -> QuickClipEncoder | None:
    """A query encoder from the saved text tower, or None when there is none to trust."""
    from searchapp.encoders.clip_text import FastTextTower
    from searchapp.encoders.clip_tokenizer import ClipTokenizer, vocab_path

    folder = cache_folder(spec, options)
    record = _valid_record(folder)
    vocab = vocab_path()
    if record is None or vocab is None:
        return None
    tower = FastTextTower.load(folder)
    if tower is None:
        return None
    tokenizer = ClipTokenizer(vocab, int(record["context_length"]))
    return QuickClipEncoder(spec, options, record, tower, tokenizer)


class QuickClipEncoder:
    """Text from the saved tower; images load the full encoder on first use."""

    runtime = "numpy"

    def __init__(
        self,
        spec: str,
        options: EncoderOptions,
        record: dict[str, Any],
        tower: Any,
        tokenizer: Any,
    ):
        self.identity = EncoderIdentity(**record["identity"])
        self.input_size = int(record["input_size"])
        self._spec, self._options = spec, options
        self._tower, self._tokenizer = tower, tokenizer
        self._full: Any = None

    @property
    def supports_text(self) -> bool:
        return True

    def encode_text(self, texts: list[str]) -> np.ndarray:
        return l2_normalise(self._tower.encode(self._tokenizer(texts)))

    def _full_encoder(self) -> Any:
        if self._full is None:
            from searchapp.encoders.registry import create_encoder

            options = EncoderOptions(**{**asdict(self._options), "quick_start": False})
            self._full = create_encoder(f"clip:{self._spec}", options)
        return self._full

    def preprocess(self, image: Image.Image) -> np.ndarray:
        return np.asarray(self._full_encoder().preprocess(image))

    def encode(self, batch: np.ndarray) -> EncodedBatch:
        encoded: EncodedBatch = self._full_encoder().encode(batch)
        return encoded
