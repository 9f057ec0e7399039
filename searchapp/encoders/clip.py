"""open_clip encoders: `clip:<arch>/<pretrained tag>`, weights from the Hugging Face cache, a
download (huggingface_hub draws its progress bar), or a local checkpoint (`--clip-weights FILE`).

Preprocessing is open_clip's own transform for the tag, so our vectors equal
`model.encode_image(preprocess(img))`, normalised.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np
from PIL import Image

from searchapp.encoders.base import (
    EncodedBatch,
    EncoderOptions,
    keep_freed_memory,
    l2_normalise,
    normalised,
)
from searchapp.encoders.clip_quick import save_for_queries
from searchapp.encoders.devices import CPU_MICRO_BATCH, Passes, micro_batch
from searchapp.encoders.onnx_runtime import onnx_tower
from searchapp.errors import UnknownNameError, WeightsUnavailableError
from searchapp.records import EncoderIdentity

DEFAULT_CLIP = "ViT-B-32/laion2b_s34b_b79k"
# texts the numpy text tower takes (clip_text.py): a query's one, where it measured faster on
# this project's AMD machine; torch's truncated forward runs many at once far faster
# (benchmarks/tag_matrix.py on an Intel one: 8 texts 31 ms against 107, the zero-shot tags'
# 7,000 prompts 23 s against 250; one text there 14 against 21)
FAST_TEXT_ROWS = 1
# open_clip's table entry for DEFAULT_CLIP and its hub file names, copied: choosing the encoder
# of a new library should not import open_clip and torch only to look up one repository name.
# tests/unit/test_encoders.py holds both to open_clip's own.
DEFAULT_CLIP_HUB = "laion/CLIP-ViT-B-32-laion2B-s34B-b79K"
HUB_FILENAMES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")


def parse_spec(spec: str) -> tuple[str, str | None]:
    """'ViT-B-32/laion2b_s34b_b79k' -> ('ViT-B-32', 'laion2b_s34b_b79k'); the tag is optional."""
    arch, _, tag = spec.partition("/")
    return arch, (tag or None)


def _check_arch(arch: str) -> None:
    import open_clip

    if arch not in open_clip.list_models():
        known = ", ".join(sorted(open_clip.list_models())[:12])
        raise UnknownNameError(f"unknown CLIP architecture {arch!r}; some known ones: {known}, ...")


def pretrained_cfg(arch: str, tag: str | None) -> dict[str, Any]:
    import open_clip

    if tag is None:
        return {}
    cfg = open_clip.get_pretrained_cfg(arch, tag)
    if not cfg:
        tags = ", ".join(open_clip.list_pretrained_tags_by_model(arch)) or "none"
        raise UnknownNameError(f"unknown pretrained tag {tag!r} for {arch}; known tags: {tags}")
    return dict(cfg)


def cached_checkpoint(cfg: dict[str, Any]) -> Path | None:
    """The checkpoint of a tag if it is already in the local cache; never touches the network."""
    hub_id = (cfg.get("hf_hub") or "").strip("/")
    if hub_id:
        from huggingface_hub import try_to_load_from_cache

        for filename in HUB_FILENAMES:
            found = try_to_load_from_cache(hub_id, filename)
            if isinstance(found, str) and os.path.isfile(found):
                return Path(found)
    url = cfg.get("url") or ""
    if url:
        candidate = Path(os.path.expanduser("~/.cache/clip")) / os.path.basename(url)
        if candidate.is_file():
            return candidate
    return None


def _download_host(cfg: dict[str, Any]) -> str:
    if cfg.get("hf_hub"):
        from huggingface_hub import constants

        return urlparse(constants.ENDPOINT).hostname or ""  # HF_ENDPOINT may name a mirror
    return urlparse(cfg.get("url") or "").hostname or ""


def _resolves(host: str) -> bool:
    try:
        socket.getaddrinfo(host, 443)
    except OSError:
        return False
    return True


def download_checkpoint(cfg: dict[str, Any], arch: str, tag: str) -> Path:
    from open_clip.pretrained import download_pretrained

    hub = (cfg.get("hf_hub") or cfg.get("url") or "").strip("/")

    def unavailable(why: str) -> WeightsUnavailableError:
        return WeightsUnavailableError(
            f"the weights of clip:{arch}/{tag} are not in the local cache and could not be "
            f"downloaded from {hub} ({why}). Connect to the internet once, or "
            "pass --clip-weights FILE with a local open_clip checkpoint, or use "
            "--encoder cnn:efficientnet-lite0 (offline)"
        )

    host = _download_host(cfg)
    if not _resolves(host):  # offline: huggingface_hub would retry for minutes before failing
        raise unavailable(f"{host} cannot be resolved: no network?")
    try:
        return Path(download_pretrained(cfg))
    except Exception as exc:
        raise unavailable(type(exc).__name__) from exc


def resolve_checkpoint(arch: str, tag: str | None, options: EncoderOptions) -> Path | None:
    """Where the weights come from, or None when they cannot be had without a download."""
    if options.clip_weights is not None:
        if not options.clip_weights.is_file():
            raise WeightsUnavailableError(
                f"--clip-weights {options.clip_weights}: no such file; pass the path of an "
                "open_clip checkpoint (.safetensors, .bin or .pt)"
            )
        return options.clip_weights
    if tag is None:
        raise UnknownNameError(
            f"clip:{arch} needs a pretrained tag (clip:{arch}/<tag>) or --clip-weights FILE"
        )
    cfg = pretrained_cfg(arch, tag)
    found = cached_checkpoint(cfg)
    if found is None and options.allow_download:
        found = download_checkpoint(cfg, arch, tag)
    return found


class OpenClipEncoder:
    def __init__(self, spec: str, options: EncoderOptions, checkpoint: Path):
        import open_clip
        import torch

        if options.threads:
            torch.set_num_threads(options.threads)
        keep_freed_memory()
        arch, tag = parse_spec(spec)
        _check_arch(arch)
        cfg = pretrained_cfg(arch, tag)
        extra: dict[str, Any] = {}
        for ours, theirs in (
            ("image_mean", "mean"),
            ("image_std", "std"),
            ("image_interpolation", "interpolation"),
            ("image_resize_mode", "resize_mode"),
        ):
            if cfg.get(theirs) is not None:
                extra[ours] = cfg[theirs]
        model, _, preprocess = open_clip.create_model_and_transforms(
            arch,
            pretrained=str(checkpoint),
            force_quick_gelu=bool(cfg.get("quick_gelu", False)),
            **extra,
        )
        self.model = model.eval()  # on the CPU until its exports are made, then the device's
        self.device = "cpu"
        self._passes = Passes(CPU_MICRO_BATCH, f"clip:{arch}")
        image_size = self.model.visual.image_size
        self.input_size = int(image_size[0] if isinstance(image_size, tuple | list) else image_size)
        self.visual_tower_name = f"clip-{arch}-visual"
        self._onnx = onnx_tower(
            self.model.visual,
            lambda batch: [self._torch_encode(batch)],
            weights=checkpoint,
            name=self.visual_tower_name,
            input_size=self.input_size,
            outputs=["features"],
            # ONNX Runtime's sessions here run on the CPU: a GPU runs the model in PyTorch
            runtime=options.runtime if options.device == "cpu" else "torch",
            threads=options.threads,
        )
        self.runtime = "onnx" if self._onnx else "torch"
        self._fast_text: Any = None
        self.transform = preprocess
        self.tokenizer = open_clip.get_tokenizer(arch)
        dim = (
            int(self.model.text_projection.shape[1])
            if hasattr(self.model, "text_projection")
            else 0
        )
        dim = dim or int(self._probe_dim())
        weights = tag or "custom"
        if options.clip_weights is not None:
            weights = f"{weights} from {options.clip_weights.name}"
        self.identity = EncoderIdentity(
            name=f"clip:{arch}/{tag}" if tag else f"clip:{arch}",
            weights=weights,
            dim=dim,
            preprocess=f"open_clip {self.input_size}px {cfg.get('resize_mode', 'shortest')}",
        )
        save_for_queries(self, spec, options, checkpoint)  # exported from the CPU's copy
        self.device = options.device
        self.model.to(self.device)
        # a GPU's pass: 64 images, fewer where a bigger model does not fit
        self._passes = Passes(
            micro_batch(self.device) or CPU_MICRO_BATCH,
            f"clip:{arch} on {self.device}",
            self.device,
        )

    def _probe_dim(self) -> int:
        import torch

        with torch.inference_mode():
            dummy = torch.zeros(1, 3, self.input_size, self.input_size)
            return int(self.model.encode_image(dummy).shape[1])

    def preprocess(self, image: Image.Image) -> np.ndarray:
        return np.ascontiguousarray(self.transform(image.convert("RGB")).numpy())

    def encode(self, batch: np.ndarray) -> EncodedBatch:
        if self._onnx is not None:
            return normalised(self._onnx(batch)[0])
        return normalised(self._torch_encode(batch))

    def _torch_encode(self, batch: np.ndarray) -> np.ndarray:
        import torch

        def one_pass(chunk: np.ndarray) -> np.ndarray:
            with torch.inference_mode():
                pixels = torch.from_numpy(np.ascontiguousarray(chunk)).to(self.device)
                return np.asarray(self.model.encode_image(pixels).float().cpu().numpy())

        parts = self._passes.run(one_pass, batch)
        return np.concatenate(parts) if parts else np.zeros((0, self.identity.dim), np.float32)

    @property
    def supports_text(self) -> bool:
        return True

    def encode_text(self, texts: list[str]) -> np.ndarray:
        import torch

        from searchapp.encoders.clip_text import FastTextTower

        few = len(texts) <= FAST_TEXT_ROWS
        if few and self._fast_text is None:  # built on the first query: indexing never pays
            on_cpu = self.device == "cpu"  # numpy runs on the CPU
            self._fast_text = (on_cpu and FastTextTower.build(self.model)) or False
        tokens = self.tokenizer(texts)
        if few and self._fast_text:
            return l2_normalise(self._fast_text.encode(tokens.numpy()))
        tokens = tokens.to(self.device)
        with torch.inference_mode():
            if truncatable(self.model):
                features = encode_text_truncated(self.model, tokens)
            else:
                features = self.model.encode_text(tokens)
        return l2_normalise(features.float().cpu().numpy())


def truncatable(model: Any) -> bool:
    """Whether the text tower is the classic causal one, pooled at the end-of-text token."""
    return (
        getattr(model, "attn_mask", None) is not None
        and getattr(model, "text_pool_type", "argmax") == "argmax"
        and hasattr(model, "token_embedding")
        and hasattr(model, "positional_embedding")
        and hasattr(model, "transformer")
    )


def encode_text_truncated(model: Any, tokens: Any) -> Any:
    """open_clip's encode_text, run only up to the last end-of-text token of the batch.

    The attention mask is causal, so a position never sees what comes after it; the pooled
    feature is read at the end-of-text token (the highest token id), so the padding behind it
    cannot change the result. A short query runs on ~8 positions instead of 77. Parity with
    model.encode_text is tested to 1e-5.
    """
    import torch

    eot = tokens.argmax(dim=-1)
    length = int(eot.max()) + 1
    tokens = tokens[:, :length]
    cast_dtype = model.transformer.get_cast_dtype()
    x = model.token_embedding(tokens).to(cast_dtype)
    x = x + model.positional_embedding[:length].to(cast_dtype)
    x = model.transformer(x, attn_mask=model.attn_mask[:length, :length])
    x = model.ln_final(x)
    x = x[torch.arange(x.shape[0], device=x.device), eot]
    projection = model.text_projection
    if projection is None:
        return x
    if isinstance(projection, torch.nn.Linear):
        return projection(x)
    return x @ projection
