"""A faster text tower for open_clip's classic CLIP models, for the query path.

Two things make a text query slow on a CPU: open_clip runs all 77 context positions, and PyTorch's
GEMMs on a handful of rows are far from memory speed on some CPUs (5-6 GB/s on this project's
2-core AMD machine, against 12-16 GB/s for numpy's OpenBLAS on the same shapes). A query is
weight-bandwidth bound: every query streams all ~150 MB of fp32 text weights.

So this module (1) stops at the last end-of-text token: the attention is causal and the pooled
feature is read at that token, so nothing after it can matter; and (2) runs the same fp32
arithmetic with the weights pre-transposed into contiguous numpy arrays and the GEMMs on numpy's
BLAS; GELU is computed in numpy too, so a tower saved as .npy files (`save`, `load`) runs in
a query process that never imports torch. Parity with model.encode_text is tested to 1e-5.
Models of another shape return None from `build` and use open_clip's own forward.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np


def _array(tensor: Any) -> np.ndarray:
    return np.ascontiguousarray(tensor.detach().float().cpu().numpy())


def _layer_norm(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, eps: float) -> np.ndarray:
    mean = x.mean(axis=-1, keepdims=True)
    centred = x - mean
    variance = (centred * centred).mean(axis=-1, keepdims=True)
    return centred / np.sqrt(variance + eps) * weight + bias


@dataclass
class _Block:
    ln1: tuple[np.ndarray, np.ndarray, float]
    qkv_t: np.ndarray  # (d, 3d)
    qkv_b: np.ndarray
    out_t: np.ndarray
    out_b: np.ndarray
    ls1: np.ndarray | None
    ln2: tuple[np.ndarray, np.ndarray, float]
    fc_t: np.ndarray
    fc_b: np.ndarray
    proj_t: np.ndarray
    proj_b: np.ndarray
    ls2: np.ndarray | None


def _erf(x: np.ndarray) -> np.ndarray:
    """erf to a relative error under 1.2e-7 (the Chebyshev fit of Numerical Recipes' erfc),
    in float64: numpy has no erf, and this keeps the tower free of torch and scipy."""
    z = np.abs(x)
    t = 1.0 / (1.0 + 0.5 * z)
    poly = -z * z - 1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 + t * (
        -0.18628806 + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (
            -0.82215223 + t * 0.17087277))))))))  # fmt: skip
    erfc = t * np.exp(poly)
    return np.where(x >= 0, 1.0 - erfc, erfc - 1.0)


def _gelu(x: np.ndarray) -> np.ndarray:
    wide = x.astype(np.float64)
    return (0.5 * wide * (1.0 + _erf(wide / math.sqrt(2.0)))).astype(np.float32)


def _gelu_tanh(x: np.ndarray) -> np.ndarray:
    wide = x.astype(np.float64)
    inner = math.sqrt(2.0 / math.pi) * (wide + 0.044715 * wide**3)
    return (0.5 * wide * (1.0 + np.tanh(inner))).astype(np.float32)


def _quick_gelu(x: np.ndarray) -> np.ndarray:
    return x * (1.0 / (1.0 + np.exp(-1.702 * x)))


ACTIVATIONS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "gelu": _gelu,
    "gelu_tanh": _gelu_tanh,
    "quick_gelu": _quick_gelu,
}


def _activation_name(module: Any) -> str | None:
    """The ACTIVATIONS name equal to the block's activation module, or None if unknown."""
    name = type(module).__name__
    if name == "GELU":
        return "gelu_tanh" if module.approximate == "tanh" else "gelu"
    if name == "QuickGELU":
        return "quick_gelu"
    return None


def _layer_scale(module: Any) -> tuple[bool, np.ndarray | None]:
    name = type(module).__name__
    if name == "Identity":
        return True, None
    if name == "LayerScale" and not getattr(module, "inplace", False):
        return True, _array(module.gamma)
    return False, None


def _norm(module: Any) -> tuple[np.ndarray, np.ndarray, float] | None:
    if type(module).__name__ not in ("LayerNorm", "LayerNormFp32") or module.weight is None:
        return None
    bias = module.bias if module.bias is not None else module.weight * 0
    return _array(module.weight), _array(bias), float(module.eps)


Norm = tuple[np.ndarray, np.ndarray, float]


def _projection(model: Any) -> tuple[np.ndarray | None, np.ndarray | None]:
    projection = model.text_projection
    if projection is None:
        return None, None
    if hasattr(projection, "weight"):
        bias = _array(projection.bias) if projection.bias is not None else None
        return _array(projection.weight.t()), bias
    return _array(projection), None


@dataclass
class FastTextTower:
    embedding: np.ndarray
    positional: np.ndarray
    mask: np.ndarray
    blocks: list[_Block]
    heads: int
    activation_name: str
    ln_final: Norm
    projection: np.ndarray | None
    projection_bias: np.ndarray | None

    @property
    def activation(self) -> Callable[[np.ndarray], np.ndarray]:
        return ACTIVATIONS[self.activation_name]

    @classmethod
    def build(cls, model: Any) -> FastTextTower | None:
        """The fast tower for a classic causal CLIP text transformer, else None."""
        required = ("token_embedding", "positional_embedding", "transformer", "ln_final")
        if not all(hasattr(model, name) for name in required):
            return None
        if getattr(model, "attn_mask", None) is None:
            return None
        ln_final = _norm(model.ln_final)
        if getattr(model, "text_pool_type", "argmax") != "argmax" or ln_final is None:
            return None
        blocks: list[_Block] = []
        heads, activation = 0, None
        for block in model.transformer.resblocks:
            attn: Any = getattr(block, "attn", None)
            mlp: Any = getattr(block, "mlp", None)
            if type(attn).__name__ != "MultiheadAttention" or not attn.batch_first:
                return None
            if attn.in_proj_weight is None or hasattr(block, "ln_1_kv"):
                return None
            linear = ("Linear",)
            if (
                mlp is None
                or len(mlp) != 3
                or (type(mlp[0]).__name__, type(mlp[2]).__name__) != (linear * 2)
            ):
                return None
            ok1, ls1 = _layer_scale(block.ls_1)
            ok2, ls2 = _layer_scale(block.ls_2)
            ln1, ln2 = _norm(block.ln_1), _norm(block.ln_2)
            activation = _activation_name(mlp[1])
            if not (ok1 and ok2) or ln1 is None or ln2 is None or activation is None:
                return None
            heads = attn.num_heads
            dim = attn.embed_dim
            zeros = np.zeros(3 * dim, dtype=np.float32)
            blocks.append(
                _Block(
                    ln1=ln1,
                    qkv_t=_array(attn.in_proj_weight.t()),
                    qkv_b=_array(attn.in_proj_bias) if attn.in_proj_bias is not None else zeros,
                    out_t=_array(attn.out_proj.weight.t()),
                    out_b=_array(attn.out_proj.bias),
                    ls1=ls1,
                    ln2=ln2,
                    fc_t=_array(mlp[0].weight.t()),
                    fc_b=_array(mlp[0].bias),
                    proj_t=_array(mlp[2].weight.t()),
                    proj_b=_array(mlp[2].bias),
                    ls2=ls2,
                )
            )
        if not blocks or activation is None:
            return None
        projection, projection_bias = _projection(model)
        return cls(
            embedding=_array(model.token_embedding.weight),
            positional=_array(model.positional_embedding),
            mask=_array(model.attn_mask),
            blocks=blocks,
            heads=heads,
            activation_name=activation,
            ln_final=ln_final,
            projection=projection,
            projection_bias=projection_bias,
        )

    # ---- a folder of .npy files, memory-mapped back by query processes ---------------------

    def save(self, folder: Path) -> None:
        """Write the tower as .npy files and a manifest, the manifest last: a folder without
        one is incomplete and never loaded."""
        folder.mkdir(parents=True, exist_ok=True)
        arrays: dict[str, np.ndarray | None] = {
            "embedding": self.embedding,
            "positional": self.positional,
            "mask": self.mask,
            "ln_final.w": self.ln_final[0],
            "ln_final.b": self.ln_final[1],
            "projection": self.projection,
            "projection_bias": self.projection_bias,
        }
        eps: dict[str, float] = {"ln_final": self.ln_final[2]}
        for i, block in enumerate(self.blocks):
            for field in fields(block):
                value = getattr(block, field.name)
                if isinstance(value, tuple):  # a norm: weight, bias, eps
                    arrays[f"b{i}.{field.name}.w"], arrays[f"b{i}.{field.name}.b"] = value[:2]
                    eps[f"b{i}.{field.name}"] = value[2]
                else:
                    arrays[f"b{i}.{field.name}"] = value
        for name, array in arrays.items():
            if array is not None:
                np.save(folder / f"{name}.npy", np.ascontiguousarray(array))
        manifest = {
            "heads": self.heads,
            "activation": self.activation_name,
            "blocks": len(self.blocks),
            "eps": eps,
            "arrays": sorted(name for name, array in arrays.items() if array is not None),
        }
        partial = folder / "manifest.json.partial"
        partial.write_text(json.dumps(manifest))
        partial.replace(folder / "manifest.json")

    @classmethod
    def load(cls, folder: Path) -> FastTextTower | None:
        """The tower saved in `folder`, memory-mapped, or None if it is incomplete."""
        try:
            manifest = json.loads((folder / "manifest.json").read_text())
            present = set(manifest["arrays"])

            def get(name: str) -> np.ndarray | None:
                if name not in present:
                    return None
                return np.load(folder / f"{name}.npy", mmap_mode="r")

            def norm(name: str) -> Norm:
                weight, bias = get(f"{name}.w"), get(f"{name}.b")
                assert weight is not None and bias is not None
                return weight, bias, float(manifest["eps"][name])

            blocks = []
            for i in range(int(manifest["blocks"])):
                values: dict[str, Any] = {}
                for field in fields(_Block):
                    key = f"b{i}.{field.name}"
                    values[field.name] = norm(key) if key in manifest["eps"] else get(key)
                blocks.append(_Block(**values))
            embedding, positional, mask = get("embedding"), get("positional"), get("mask")
            assert embedding is not None and positional is not None and mask is not None
            if manifest["activation"] not in ACTIVATIONS:
                return None
            return cls(
                embedding=embedding,
                positional=positional,
                mask=mask,
                blocks=blocks,
                heads=int(manifest["heads"]),
                activation_name=manifest["activation"],
                ln_final=norm("ln_final"),
                projection=get("projection"),
                projection_bias=get("projection_bias"),
            )
        except (OSError, ValueError, KeyError, AssertionError):
            return None

    def _attention(self, x: np.ndarray, block: _Block, mask: np.ndarray) -> np.ndarray:
        batch, length, dim = x.shape
        head_dim = dim // self.heads
        qkv = x @ block.qkv_t + block.qkv_b
        qkv = qkv.reshape(batch, length, 3, self.heads, head_dim).transpose(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]  # (batch, heads, length, head_dim)
        # a Python float scale: a numpy float64 scalar would promote everything after it to
        # float64 and make every later GEMM convert its weights
        scores = (q @ k.transpose(0, 1, 3, 2)) * (1.0 / math.sqrt(head_dim)) + mask
        scores = np.exp(scores - scores.max(axis=-1, keepdims=True))
        scores /= scores.sum(axis=-1, keepdims=True)
        out = (scores @ v).transpose(0, 2, 1, 3).reshape(batch, length, dim)
        return out @ block.out_t + block.out_b

    def encode(self, tokens: np.ndarray) -> np.ndarray:
        """(batch, 77) int token ids -> (batch, dim) unnormalised text features."""
        return self._encode(tokens)

    def _encode(self, tokens: np.ndarray) -> np.ndarray:
        eot = tokens.argmax(axis=-1)
        length = int(eot.max()) + 1
        tokens = tokens[:, :length]
        x = self.embedding[tokens] + self.positional[:length]
        mask = self.mask[:length, :length]
        for block in self.blocks:
            attended = self._attention(_layer_norm(x, *block.ln1), block, mask)
            x = x + (attended * block.ls1 if block.ls1 is not None else attended)
            hidden = self.activation(_layer_norm(x, *block.ln2) @ block.fc_t + block.fc_b)
            mlp_out = hidden @ block.proj_t + block.proj_b
            x = x + (mlp_out * block.ls2 if block.ls2 is not None else mlp_out)
        assert self.ln_final is not None and x.dtype == np.float32
        pooled = _layer_norm(x, *self.ln_final)[np.arange(x.shape[0]), eot]
        if self.projection is None:
            return pooled.astype(np.float32)
        projected = pooled @ self.projection
        if self.projection_bias is not None:
            projected = projected + self.projection_bias
        return projected.astype(np.float32)
