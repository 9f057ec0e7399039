"""Compact object and tile vectors: a basis fitted on the library, int8 codes in the catalog.

A photo has one scene but about 30 tiles and objects. Kept as float16 at the encoder's width
(2.5 KiB for the CNN's 1280) in the catalog and again in the index file, they made a library with
regions 200-260 KiB a photo. Once a library holds FIT_AT of them, a basis of DIMS directions is
fitted on them (the leading right singular vectors, uncentred, so that inner products keep their
meaning), every stored one is re-encoded, and from then on each is stored as its projection,
normalised, in int8 with one scale per vector (DIMS bytes). Search projects the query onto the
same basis for these kinds; the scene keeps its full vector. benchmarks/region_pooling.py measured
what that costs in crop recall (README: "Regions without the wait").
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass

import numpy as np

CODED_KINDS = ("object", "tile")
DIMS = 256
FIT_AT = 1024  # coded-kind vectors a library holds before its basis is fitted (~30 photos)
FIT_SAMPLE = 20_000  # at most this many vectors fit the basis


@dataclass(frozen=True)
class RegionCodec:
    basis: np.ndarray  # (dims, width) float32, orthonormal rows

    @property
    def dim(self) -> int:
        return int(self.basis.shape[0])

    @classmethod
    def fit(cls, sample: np.ndarray, dims: int = DIMS) -> RegionCodec:
        _, _, vt = np.linalg.svd(np.asarray(sample, np.float32), full_matrices=False)
        # rounded as it is stored, so that this process and the next project alike
        return cls(np.ascontiguousarray(vt[:dims].astype(np.float16), dtype=np.float32))

    def project(self, vectors: np.ndarray) -> np.ndarray:
        """(n, width) -> (n, dim), normalised: cosines in the basis stand for cosines."""
        projected = np.asarray(vectors, np.float32) @ self.basis.T
        norms = np.linalg.norm(projected, axis=1, keepdims=True)
        return (projected / np.maximum(norms, 1e-12)).astype(np.float32)

    def encode(self, vectors: np.ndarray) -> list[bytes]:
        projected = self.project(vectors)
        scale = np.maximum(np.abs(projected).max(axis=1, keepdims=True), 1e-12) / 127.0
        codes = np.clip(np.round(projected / scale), -127, 127).astype(np.int8)
        return [row.tobytes() for row in codes]

    def decode(self, blob: bytes, count: int) -> np.ndarray:
        """`count` codes joined -> (count, dim) float32, normalised (the scale cancels)."""
        codes = np.frombuffer(blob, dtype=np.int8).reshape(count, self.dim).astype(np.float32)
        norms = np.linalg.norm(codes, axis=1, keepdims=True)
        return (codes / np.maximum(norms, 1e-12)).astype(np.float32)

    def to_json(self) -> str:
        basis = base64.b64encode(self.basis.astype(np.float16).tobytes()).decode("ascii")
        return json.dumps({"shape": list(self.basis.shape), "basis": basis})

    @classmethod
    def from_json(cls, text: str) -> RegionCodec:
        data = json.loads(text)
        raw = np.frombuffer(base64.b64decode(data["basis"]), dtype=np.float16)
        return cls(raw.reshape(data["shape"]).astype(np.float32))
