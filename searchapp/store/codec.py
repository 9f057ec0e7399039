"""Compact object and tile vectors: a basis fitted on the library, int8 codes in the catalog.

A photo has one scene but about 30 tiles and objects. Kept as float16 at the encoder's width
(2.5 KiB for the CNN's 1280) in the catalog and again in the index file, they made a library with
regions 200-260 KiB a photo. Once a library holds FIT_AT of them, a basis of DIMS directions is
fitted on them (the leading right singular vectors, uncentred, so that inner products keep their
meaning), every stored one is re-encoded, and from then on each is stored as its projection,
normalised, in int8 with one scale per vector (DIMS bytes). Search projects the query onto the
same basis for these kinds; the scene keeps its full vector. benchmarks/region_pooling.py measured
what that costs in crop recall (README: "Regions without the wait").

The basis itself is kept as int8 rows with one scale each (a third of a MB for the CNN, which
a library of a hundred photos would otherwise feel), and with the range of each direction over
the fitting sample, which the index files use to keep these kinds at 8 bits a component too.
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


RANGE_MARGIN = 0.1  # each direction's range grows by this share of it on both sides


@dataclass(frozen=True)
class RegionCodec:
    basis: np.ndarray  # (dims, width) float32, near-orthonormal rows (int8-rounded)
    # (2, dims) float32: low and high of each direction's component; None for a basis fitted
    # before ranges were kept, whose kinds then stay fp16 in the index files
    ranges: np.ndarray | None

    @property
    def dim(self) -> int:
        return int(self.basis.shape[0])

    @classmethod
    def fit(cls, sample: np.ndarray, dims: int = DIMS) -> RegionCodec:
        # the right singular vectors, as eigenvectors of the Gram matrix: a third of the SVD's
        # time on the thousands of rows a fit takes, with the same directions (signs aside)
        rows = np.asarray(sample, np.float64)
        values, vectors = np.linalg.eigh(rows.T @ rows)
        leading = vectors[:, np.argsort(-values)[: min(dims, len(rows))]].T
        # rounded as it is stored, so that this process and the next project alike
        codes, scales = _int8_rows(leading)
        basis = np.ascontiguousarray(codes * scales[:, None], dtype=np.float32)
        projected = cls(basis, None).project(sample)
        low, high = projected.min(axis=0), projected.max(axis=0)
        margin = RANGE_MARGIN * (high - low)
        ranges = np.stack([np.maximum(low - margin, -1.0), np.minimum(high + margin, 1.0)])
        return cls(basis, ranges.astype(np.float32))

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
        codes, scales = _int8_rows(self.basis)
        data = {
            "shape": list(self.basis.shape),
            "basis_int8": _text(codes),
            "scales": _text(scales.astype(np.float32)),
        }
        if self.ranges is not None:
            data["ranges"] = _text(self.ranges.astype(np.float32))
        return json.dumps(data)

    @classmethod
    def from_json(cls, text: str) -> RegionCodec:
        data = json.loads(text)
        shape = data["shape"]
        if "basis" in data:  # fitted before the int8 basis (float16, no ranges)
            raw = np.frombuffer(base64.b64decode(data["basis"]), dtype=np.float16)
            return cls(raw.reshape(shape).astype(np.float32), None)
        codes = np.frombuffer(base64.b64decode(data["basis_int8"]), np.int8).reshape(shape)
        scales = np.frombuffer(base64.b64decode(data["scales"]), np.float32)
        ranges = None
        if "ranges" in data:
            ranges = np.frombuffer(base64.b64decode(data["ranges"]), np.float32).reshape(2, -1)
        basis = codes.astype(np.float32) * scales[:, None]
        return cls(np.ascontiguousarray(basis, dtype=np.float32), ranges)


def _int8_rows(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each row as int8 codes and its scale (max-abs / 127)."""
    rows = np.asarray(rows, np.float32)
    scales = np.maximum(np.abs(rows).max(axis=1), 1e-12) / 127.0
    codes = np.clip(np.round(rows / scales[:, None]), -127, 127).astype(np.int8)
    return codes, scales.astype(np.float32)


def _text(array: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(array).tobytes()).decode("ascii")
