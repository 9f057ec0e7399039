"""Encoder registry: `family:spec` names map to factories; unknown names get the list of valid ones.

cnn:efficientnet-lite0              offline, bundled ImageNet weights (no text tower)
clip:<arch>/<pretrained tag>        open_clip, e.g. clip:ViT-B-32/laion2b_s34b_b79k
auto                                CLIP when its weights are at hand, else the CNN
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, replace

from searchapp.encoders.base import EncoderOptions, ImageEncoder
from searchapp.encoders.devices import pick_device
from searchapp.encoders.torch_stack import check_torch_stack
from searchapp.errors import UnknownNameError, WeightsUnavailableError

AUTO = "auto"
DEFAULT_CNN = "cnn:efficientnet-lite0"


def _make_efficientnet_lite0(options: EncoderOptions) -> ImageEncoder:
    from searchapp.encoders.cnn import EfficientNetLite0Encoder

    return EfficientNetLite0Encoder(options)


CNN_MODELS: dict[str, Callable[[EncoderOptions], ImageEncoder]] = {
    "efficientnet-lite0": _make_efficientnet_lite0,
}


def _make_cnn(spec: str, options: EncoderOptions) -> ImageEncoder:
    factory = CNN_MODELS.get(spec)
    if factory is None:
        raise UnknownNameError(
            f"unknown encoder cnn:{spec}; valid: " + ", ".join(f"cnn:{n}" for n in CNN_MODELS)
        )
    return factory(options)


def _full_clip(spec: str, options: EncoderOptions) -> ImageEncoder:
    """The whole open_clip model, loaded late by a query that needs it."""
    check_torch_stack()
    return _make_clip(spec, options)


def _make_clip(spec: str, options: EncoderOptions) -> ImageEncoder:
    if options.quick_start and options.runtime != "torch" and options.device == "cpu":
        from searchapp.encoders.clip_quick import quick_encoder

        # a query process: no torch for text; the full model only if an image query needs it
        full = functools.partial(_full_clip, spec, replace(options, quick_start=False))
        quick = quick_encoder(spec, options, full)
        if quick is not None:
            return quick
    from searchapp.encoders.clip import OpenClipEncoder, parse_spec, resolve_checkpoint

    arch, tag = parse_spec(spec)
    checkpoint = resolve_checkpoint(arch, tag, options)
    if checkpoint is None:
        raise WeightsUnavailableError(
            f"the weights of clip:{spec} are not in the local cache; run once with network "
            "access, or pass --clip-weights FILE"
        )
    return OpenClipEncoder(spec, options, checkpoint)


FAMILIES: dict[str, Callable[[str, EncoderOptions], ImageEncoder]] = {
    "cnn": _make_cnn,
    "clip": _make_clip,
}


TEXT_FAMILIES = frozenset({"clip"})  # families whose models embed text into the image space


def supports_text(name: str) -> bool:
    """Whether an encoder name embeds text, decided without loading the model."""
    return name.partition(":")[0] in TEXT_FAMILIES


# A CLIP library encodes its tiles with the CNN: tiles serve image queries, which need no text
# space, and the CNN encodes a tile for a fraction of a ViT's cost, or pools every tile from one
# pass over the photo (benchmarks/README.md, "Regions without the wait").
TILE_ENCODERS = {"clip": DEFAULT_CNN}


def tile_encoder_name(name: str) -> str | None:
    """The encoder a library of encoder `name` puts its tiles in, where not its own."""
    return TILE_ENCODERS.get(name.partition(":")[0])


def valid_names() -> list[str]:
    from searchapp.encoders.clip import DEFAULT_CLIP

    return [AUTO, *(f"cnn:{n}" for n in CNN_MODELS), f"clip:{DEFAULT_CLIP}", "clip:<arch>/<tag>"]


def split_name(name: str) -> tuple[str, str]:
    family, sep, spec = name.partition(":")
    if not sep or family not in FAMILIES or not spec:
        raise UnknownNameError(f"unknown encoder {name!r}; valid: {', '.join(valid_names())}")
    return family, spec


@dataclass(frozen=True)
class AutoChoice:
    name: str
    reason: str


def choose_auto(options: EncoderOptions) -> AutoChoice:
    """Pick CLIP when its weights can be had without a download, else the offline CNN."""
    from searchapp.encoders.clip import DEFAULT_CLIP, DEFAULT_CLIP_HUB, cached_checkpoint

    name = f"clip:{DEFAULT_CLIP}"
    if options.clip_weights is not None:
        return AutoChoice(name, f"CLIP weights from {options.clip_weights}")
    if cached_checkpoint({"hf_hub": DEFAULT_CLIP_HUB}) is not None:
        return AutoChoice(name, "CLIP weights found in the local cache")
    return AutoChoice(
        DEFAULT_CNN,
        f"offline default; CLIP weights for {DEFAULT_CLIP} are not cached: pass "
        f"--encoder clip:{DEFAULT_CLIP} to download them, or --clip-weights FILE",
    )


def create_encoder(name: str, options: EncoderOptions) -> ImageEncoder:
    family, spec = split_name(name)
    if not options.quick_start:  # a query's quick start may run without torch at all
        check_torch_stack()
    # "auto" becomes the device torch finds; "cpu" is settled without importing torch
    return FAMILIES[family](spec, replace(options, device=pick_device(options.device).name))
