"""Encoders: real CNN weights classify real photos; CLIP plumbing matches open_clip exactly;
weights load through the same cache layout a user's machine has."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from searchapp.encoders.base import EncoderOptions
from searchapp.encoders.registry import choose_auto, create_encoder, split_name
from searchapp.errors import UnknownNameError, WeightsUnavailableError
from tests.conftest import sample_image


def top5(encoder, name: str) -> list[str]:  # type: ignore[no-untyped-def]
    probs = encoder.classify(encoder.preprocess(sample_image(name))[None])[0]
    return [encoder.class_names[i] for i in np.argsort(-probs)[:5]]


def test_cnn_real_weights_recognise_the_cat(cnn_encoder) -> None:  # type: ignore[no-untyped-def]
    classes = top5(cnn_encoder, "chelsea")
    assert any(name in classes for name in ("tabby", "tiger cat", "Egyptian cat", "Persian cat"))


def test_cnn_real_weights_recognise_the_coffee(cnn_encoder) -> None:  # type: ignore[no-untyped-def]
    classes = top5(cnn_encoder, "coffee")
    assert "espresso" in classes or "cup" in classes


def test_cnn_vectors_are_normalised_with_labels(cnn_encoder) -> None:  # type: ignore[no-untyped-def]
    batch = np.stack([cnn_encoder.preprocess(sample_image(n)) for n in ("chelsea", "rocket")])
    encoded = cnn_encoder.encode(batch)
    assert encoded.vectors.shape == (2, 1280)
    np.testing.assert_allclose(np.linalg.norm(encoded.vectors, axis=1), 1.0, atol=1e-5)
    assert len(encoded.labels[0]) == 5 and encoded.labels[0][0][1] >= encoded.labels[0][1][1]
    assert cnn_encoder.identity.dim == 1280


def test_cnn_checkpoint_with_wrong_shapes_is_refused() -> None:
    import torch

    from searchapp.encoders.cnn import map_state_dict

    target = {"a.weight": torch.zeros(3, 3), "b.bias": torch.zeros(3)}
    with pytest.raises(WeightsUnavailableError, match="shape"):
        map_state_dict({"x.weight": torch.zeros(3, 3), "y.bias": torch.zeros(4)}, target)


@pytest.mark.parametrize("name", ["nope", "cnn:resnet9000", "clip:", "sift:x", "cnn"])
def test_unknown_encoder_names_list_the_valid_ones(name: str) -> None:
    with pytest.raises(UnknownNameError) as caught:
        create_encoder(name, EncoderOptions())
    assert "cnn:efficientnet-lite0" in str(caught.value)


def test_unknown_clip_tag_lists_the_known_tags() -> None:
    with pytest.raises(UnknownNameError, match="laion2b_s34b_b79k"):
        create_encoder("clip:ViT-B-32/no-such-tag", EncoderOptions(allow_download=False))


def test_split_name() -> None:
    assert split_name("clip:ViT-B-32/laion2b_s34b_b79k") == ("clip", "ViT-B-32/laion2b_s34b_b79k")


def test_clip_parity_with_open_clip_pipeline(tiny_clip_checkpoint: Path) -> None:
    import open_clip
    import torch

    ours = create_encoder("clip:tiny-test", EncoderOptions(clip_weights=tiny_clip_checkpoint))
    model, _, preprocess = open_clip.create_model_and_transforms(
        "tiny-test", pretrained=str(tiny_clip_checkpoint)
    )
    model.eval()
    images = [sample_image("chelsea"), sample_image("astronaut").resize((300, 170))]
    with torch.no_grad():
        reference = model.encode_image(torch.stack([preprocess(im) for im in images]))
        reference = torch.nn.functional.normalize(reference, dim=-1).numpy()
        text_reference = torch.nn.functional.normalize(
            model.encode_text(open_clip.get_tokenizer("tiny-test")(["a cat"])), dim=-1
        ).numpy()
    vectors = ours.encode(np.stack([ours.preprocess(im) for im in images])).vectors
    np.testing.assert_allclose(vectors, reference, atol=1e-5)
    np.testing.assert_allclose(ours.encode_text(["a cat"]), text_reference, atol=1e-5)
    assert ours.identity.dim == 32 and ours.input_size == 64


def test_missing_clip_weights_file_names_the_flag(tmp_path: Path) -> None:
    with pytest.raises(WeightsUnavailableError, match="--clip-weights"):
        create_encoder("clip:ViT-B-32", EncoderOptions(clip_weights=tmp_path / "nope.pt"))


def test_auto_without_cached_clip_picks_the_offline_cnn(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "empty"))
    monkeypatch.setenv("HOME", str(tmp_path))
    choice = choose_auto(EncoderOptions(allow_download=False))
    assert choice.name == "cnn:efficientnet-lite0"
    assert "--clip-weights" in choice.reason


def test_the_default_clip_entry_is_open_clips_own() -> None:
    """choose_auto looks the default up without importing open_clip, from a copied entry."""
    import open_clip
    from open_clip.pretrained import HF_SAFE_WEIGHTS_NAME, HF_WEIGHTS_NAME

    from searchapp.encoders.clip import DEFAULT_CLIP, DEFAULT_CLIP_HUB, HUB_FILENAMES, parse_spec

    cfg = open_clip.get_pretrained_cfg(*parse_spec(DEFAULT_CLIP))
    assert cfg["hf_hub"].strip("/") == DEFAULT_CLIP_HUB and not cfg.get("url")
    assert HUB_FILENAMES == (HF_SAFE_WEIGHTS_NAME, HF_WEIGHTS_NAME)


def test_choosing_the_encoder_of_a_new_library_imports_no_model_code(tmp_path: Path) -> None:
    script = (
        "import sys\n"
        "from searchapp.encoders.base import EncoderOptions\n"
        "from searchapp.encoders.registry import choose_auto\n"
        "choose_auto(EncoderOptions(allow_download=False))\n"
        "print(sorted(m for m in ('torch', 'open_clip', 'timm') if m in sys.modules))\n"
    )
    env = {**os.environ, "HF_HUB_CACHE": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["[]"]


def write_hub_checkpoint(cache: Path, state: dict) -> Path:  # type: ignore[type-arg]
    """Lay a checkpoint out exactly as huggingface_hub caches laion's ViT-B-32 weights."""
    from safetensors.torch import save_file

    repo = cache / "models--laion--CLIP-ViT-B-32-laion2B-s34B-b79K"
    revision = "0123456789abcdef0123456789abcdef01234567"
    snapshot = repo / "snapshots" / revision
    snapshot.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(revision)
    path = snapshot / "open_clip_model.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    return path


def test_clip_default_loads_from_the_hugging_face_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The real ViT-B-32 architecture, random weights, through the cache a user's machine has."""
    import open_clip
    import torch

    torch.manual_seed(1)
    model = open_clip.create_model("ViT-B-32", pretrained=None).eval()
    write_hub_checkpoint(tmp_path / "hub", model.state_dict())
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "hub"))

    choice = choose_auto(EncoderOptions(allow_download=False))
    assert choice.name == "clip:ViT-B-32/laion2b_s34b_b79k"
    encoder = create_encoder(choice.name, EncoderOptions(allow_download=False))
    assert encoder.identity.dim == 512 and encoder.supports_text
    image = sample_image("coffee")
    with torch.no_grad():
        reference = model.encode_image(torch.from_numpy(encoder.preprocess(image))[None])
    np.testing.assert_allclose(
        encoder.encode(encoder.preprocess(image)[None]).vectors,
        torch.nn.functional.normalize(reference, dim=-1).numpy(),
        atol=1e-5,
    )


def test_truncated_text_tower_equals_the_full_one(tiny_clip_checkpoint: Path) -> None:
    import open_clip
    import torch

    from searchapp.encoders.clip import encode_text_truncated, truncatable

    model = open_clip.create_model("tiny-test", pretrained=str(tiny_clip_checkpoint)).eval()
    assert truncatable(model)
    tokens = open_clip.get_tokenizer("tiny-test")(
        ["cat", "a red bicycle by a canal", "a photo of a dog on the beach at sunset, " * 3]
    )
    with torch.no_grad():
        full = model.encode_text(tokens)
        short = encode_text_truncated(model, tokens)
    assert int(tokens.argmax(dim=-1).max()) + 1 < tokens.shape[1]  # it really was shorter
    np.testing.assert_allclose(short.numpy(), full.numpy(), atol=1e-5)


@pytest.mark.parametrize("quick_gelu", [False, True])
def test_fast_text_tower_equals_open_clip(tiny_clip_checkpoint: Path, quick_gelu: bool) -> None:
    import open_clip
    import torch

    from searchapp.encoders.clip_text import FastTextTower

    model = open_clip.create_model(
        "tiny-test", pretrained=str(tiny_clip_checkpoint), force_quick_gelu=quick_gelu
    ).eval()
    tower = FastTextTower.build(model)
    assert tower is not None
    texts = ["cat", "a red bicycle by a canal", "a photo of a dog on the beach at sunset, " * 3]
    tokens = open_clip.get_tokenizer("tiny-test")(texts)
    with torch.no_grad():
        reference = model.encode_text(tokens).numpy()
    np.testing.assert_allclose(tower.encode(tokens.numpy()), reference, atol=1e-5)


def test_fast_text_tower_declines_other_shapes() -> None:
    from searchapp.encoders.clip_text import FastTextTower

    class NotClip:
        pass

    assert FastTextTower.build(NotClip()) is None


def test_an_offline_download_fails_at_once_without_retrying(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """huggingface_hub retries a failed connection for minutes; with no DNS there is no point."""
    import socket

    import open_clip.pretrained

    from searchapp.encoders import clip

    def no_dns(*args: object, **kwargs: object) -> None:
        raise socket.gaierror(-2, "Name or service not known")

    def must_not_run(cfg: object) -> None:
        raise AssertionError("no download may be attempted without a network")

    monkeypatch.setattr(socket, "getaddrinfo", no_dns)
    monkeypatch.setattr(open_clip.pretrained, "download_pretrained", must_not_run)
    cfg = clip.pretrained_cfg("ViT-B-32", "laion2b_s34b_b79k")
    with pytest.raises(WeightsUnavailableError, match="cannot be resolved: no network"):
        clip.download_checkpoint(cfg, "ViT-B-32", "laion2b_s34b_b79k")


def test_a_mismatched_torch_and_torchvision_is_one_message_with_the_fix(monkeypatch) -> None:
    import builtins

    from searchapp.encoders.base import EncoderOptions
    from searchapp.encoders.registry import create_encoder
    from searchapp.encoders.torch_stack import TorchStackError

    real_import = builtins.__import__

    def broken(name, *args, **kwargs):  # type: ignore[no-untyped-def]
        if name == "torchvision":
            raise RuntimeError("operator torchvision::nms does not exist")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", broken)
    with pytest.raises(TorchStackError, match="torchvision::nms does not exist") as caught:
        create_encoder("cnn:efficientnet-lite0", EncoderOptions())
    assert "pip install torch==" in str(caught.value) and "torchvision" in str(caught.value)
    assert caught.value.exit_code == 6
