"""The zero-shot tags' text side: what a CLIP library's first index run spends embedding its
vocabulary (ImageNet's 1,000 classes in open_clip's 7 simple templates: 7,000 prompts), side by
side in one process:

- before: the prompts in their file order, on the numpy text tower (clip_text.py), which an
  OpenClipEncoder used for every text before 2026-12-03;
- torch, file order: torch's truncated forward, the prompts in their file order (the sort's
  share alone);
- ours: `zero_shot.text_matrix(encoder.encode_text, ...)` as the index run calls it, prompts
  shortest first, many texts at once on torch's truncated forward.

Then the two towers by count of texts (1, 8, 32; median of 7 calls), which decide which
tower a call of how many texts takes.

Random ViT-B-32 weights (no download here; the speed is the real model's). Also checks that the
two matrices agree. Writes results/tag_matrix.json.

    python benchmarks/tag_matrix.py [--tags N]   # the first N ImageNet tags (0: all 1,000)
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from bench_results import random_vit_b32, scratch_folder, write_result

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tags", type=int, default=0, help="the first N ImageNet tags (0: all)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/tag_matrix.json")
    args = parser.parse_args()

    from searchapp.encoders import zero_shot
    from searchapp.encoders.base import EncoderOptions
    from searchapp.encoders.clip_text import FastTextTower
    from searchapp.encoders.registry import create_encoder

    weights = Path(random_vit_b32(scratch_folder("searchapp-tags-")))
    encoder = create_encoder("clip:ViT-B-32", EncoderOptions(clip_weights=weights))
    vocabulary = zero_shot.imagenet_vocabulary()
    if args.tags:
        names = vocabulary.names[: args.tags]
        vocabulary = zero_shot.Vocabulary(names, vocabulary.prompt_names[: args.tags], "first")
    prompts = len(vocabulary.names) * len(zero_shot.templates())
    tower = FastTextTower.build(encoder.model)
    assert tower is not None

    def torch_tower(texts: list[str]) -> np.ndarray:  # encode_text's path for many texts
        import torch

        from searchapp.encoders.clip import encode_text_truncated

        with torch.inference_mode():
            return encode_text_truncated(encoder.model, encoder.tokenizer(texts)).numpy()

    def numpy_tower(texts: list[str]) -> np.ndarray:
        features = tower.encode(encoder.tokenizer(texts).numpy())
        return features / np.linalg.norm(features, axis=1, keepdims=True)

    timings = {}
    started = time.perf_counter()
    ours = zero_shot.text_matrix(encoder.encode_text, vocabulary)
    timings["ours"] = time.perf_counter() - started
    print(f"ours: {prompts} prompts in {timings['ours']:.1f} s", flush=True)
    started = time.perf_counter()
    _file_order_matrix(encoder.encode_text, vocabulary, zero_shot)
    timings["torch_file_order"] = time.perf_counter() - started
    print(f"torch, file order: {timings['torch_file_order']:.1f} s", flush=True)
    started = time.perf_counter()
    before = _file_order_matrix(numpy_tower, vocabulary, zero_shot)
    timings["before"] = time.perf_counter() - started
    print(f"before: {prompts} prompts in {timings['before']:.1f} s", flush=True)
    difference = float(np.abs(ours - before).max())
    by_count = {}
    for count in (1, 8, 32):
        texts = ["a red bicycle by a canal"] * count
        by_count[count] = {
            "numpy_ms": _median_ms(lambda t=texts: numpy_tower(t)),
            "torch_ms": _median_ms(lambda t=texts: torch_tower(t)),
        }
        print(f"{count} texts: numpy {by_count[count]['numpy_ms']} ms, torch "
              f"{by_count[count]['torch_ms']} ms", flush=True)  # fmt: skip
    print(f"ours {timings['before'] / timings['ours']:.1f}x faster; matrices differ by "
          f"{difference:.1e} at most")  # fmt: skip
    write_result(
        args.out,
        {
            "what": "zero-shot tag matrix, ImageNet vocabulary, random ViT-B-32, CPU",
            "tags": len(vocabulary.names),
            "prompts": prompts,
            "before_seconds": round(timings["before"], 1),
            "torch_file_order_seconds": round(timings["torch_file_order"], 1),
            "ours_seconds": round(timings["ours"], 1),
            "speedup": round(timings["before"] / timings["ours"], 2),
            "max_abs_difference": difference,
            "texts_by_count": by_count,
        },
    )
    return 0


def _median_ms(call) -> float:  # type: ignore[no-untyped-def]
    call()  # warm-up
    times = []
    for _ in range(7):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return round(float(np.median(times)) * 1000, 1)


def _file_order_matrix(encode_text, vocabulary, zero_shot):  # type: ignore[no-untyped-def]
    """text_matrix as it was: prompts in the file's order, TEXT_BATCH at a time."""
    made = zero_shot.templates()
    prompts = [template(name) for name in vocabulary.prompt_names for template in made]
    rows = [
        encode_text(prompts[start : start + zero_shot.TEXT_BATCH])
        for start in range(0, len(prompts), zero_shot.TEXT_BATCH)
    ]
    embedded = np.vstack(rows).reshape(len(vocabulary.names), len(made), -1).mean(axis=1)
    return embedded / np.linalg.norm(embedded, axis=1, keepdims=True)


if __name__ == "__main__":
    raise SystemExit(main())
