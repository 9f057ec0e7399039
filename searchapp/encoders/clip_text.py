"""A faster text tower for open_clip's classic CLIP models, for the query path.

Two things make a text query slow on a CPU: open_clip runs all 77 context positions, and PyTorch's
GEMMs on a handful of rows are far from memory speed on some CPUs (5-6 GB/s on this project's
2-core AMD machine, against 12-16 GB/s for numpy's OpenBLAS on the same shapes). A query is
weight-bandwidth bound: every query streams all ~150 MB of fp32 text weights.

So this module (1) stops at the last end-of-text token: the attention is causal and the pooled
feature is read at that token, so nothing after it can matter; and (2) runs the same fp32
arithmetic with the weights pre-transposed into contiguous numpy arrays and the GEMMs on numpy's
BLAS. Elementwise GELU stays on torch, single-threaded while the tower runs. Parity with
model.encode_text is tested to 1e-5.
Models of another shape return None from `build` and use open_clip's own forward.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
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


def _activation(module: Any) -> Any:
    """A numpy -> numpy function equal to the block's activation, or None if unknown."""
    import torch

    name = type(module).__name__
    if name == "GELU":
        approximate = module.approximate

        def gelu(x: np.ndarray) -> np.ndarray:
            return torch.nn.functional.gelu(torch.from_numpy(x), approximate=approximate).numpy()

        return gelu
    if name == "QuickGELU":
        return lambda x: x * (1.0 / (1.0 + np.exp(-1.702 * x)))
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


class FastTextTower:
    def __init__(self, model: Any, blocks: list[_Block], heads: int, activation: Any):
        self.embedding = _array(model.token_embedding.weight)
        self.positional = _array(model.positional_embedding)
        self.mask = _array(model.attn_mask)
        self.blocks = blocks
        self.heads = heads
        self.activation = activation
        self.ln_final = _norm(model.ln_final)
        projection = model.text_projection
        if projection is None:
            self.projection: np.ndarray | None = None
            self.projection_bias: np.ndarray | None = None
        elif hasattr(projection, "weight"):
            self.projection = _array(projection.weight.t())
            self.projection_bias = _array(projection.bias) if projection.bias is not None else None
        else:
            self.projection = _array(projection)
            self.projection_bias = None

    @classmethod
    def build(cls, model: Any) -> FastTextTower | None:
        """The fast tower for a classic causal CLIP text transformer, else None."""
        required = ("token_embedding", "positional_embedding", "transformer", "ln_final")
        if not all(hasattr(model, name) for name in required):
            return None
        if getattr(model, "attn_mask", None) is None:
            return None
        if getattr(model, "text_pool_type", "argmax") != "argmax" or _norm(model.ln_final) is None:
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
            activation = _activation(mlp[1])
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
        if not blocks:
            return None
        return cls(model, blocks, heads, activation)

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
        import torch

        # torch's OpenMP threads, spinning after each GELU, would fight OpenBLAS's threads for
        # the cores (measured 10x slower on 2 cores); torch's share here is tiny, so give it one
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return self._encode(tokens)
        finally:
            torch.set_num_threads(threads)

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
