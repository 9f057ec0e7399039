"""Zero-shot tags for CLIP libraries: each tag's text embedding, averaged over prompt templates,
scored against photo vectors as CLIP's paper classifies ImageNet.

The default vocabulary is ImageNet's 1000 classes with open_clip's seven "simple" templates (the
80 of the paper cost 11 times as many text passes for about a point of accuracy); the names
stored are the ones the CNN's classifier stores, so `--tag`, word search and cluster names read
both kinds of library alike. A user's vocabulary is a text file, one tag per line.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from searchapp.encoders.imagenet import imagenet_class_names

TOP_TAGS = 5  # stored per photo, as the classifier's labels are
LOGIT_SCALE = 100.0  # CLIP's learned temperature, to the precision it is usually quoted
TEXT_BATCH = 256


@dataclass(frozen=True)
class Vocabulary:
    names: tuple[str, ...]  # as stored in the catalog's labels
    prompt_names: tuple[str, ...]  # what goes into the templates
    source: str  # "imagenet" or the file it was read from

    @property
    def digest(self) -> str:
        text = "\n".join(self.names) + "\0" + "\n".join(self.prompt_names)
        return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:16]


def templates() -> list[Callable[[str], str]]:
    from open_clip.zero_shot_metadata import SIMPLE_IMAGENET_TEMPLATES

    return list(SIMPLE_IMAGENET_TEMPLATES)


def imagenet_vocabulary() -> Vocabulary:
    from open_clip.zero_shot_metadata import IMAGENET_CLASSNAMES

    return Vocabulary(tuple(imagenet_class_names()), tuple(IMAGENET_CLASSNAMES), "imagenet")


def read_vocabulary(path: Path) -> Vocabulary:
    """One tag per line; blank lines and lines starting with # are skipped, repeats dropped."""
    lines = path.read_text(encoding="utf-8").splitlines()
    tags = tuple(dict.fromkeys(t.strip() for t in lines if t.strip() and not t.startswith("#")))
    if not tags:
        raise ValueError(f"{path}: no tags in it (one per line)")
    too_long = [t for t in tags if len(t) > 128]
    if too_long:
        raise ValueError(f"{path}: tags are at most 128 characters: {too_long[0][:40]}...")
    return Vocabulary(tags, tags, str(path))


def text_matrix(
    encode_text: Callable[[list[str]], np.ndarray],
    vocabulary: Vocabulary,
    on_progress: Callable[[int, int], None] | None = None,
) -> np.ndarray:
    """(tags, dim) unit rows: each tag's prompts embedded, averaged, normalised."""
    made = templates()
    prompts = [template(name) for name in vocabulary.prompt_names for template in made]
    # shortest first: a batch runs to its longest prompt's end-of-text token, so prompts of like
    # length together pad least (benchmarks/tag_matrix.py times it)
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    # batches of near-equal size: a last batch of one text would go to the query's tower
    batches = np.array_split(np.asarray(order), max(1, -(-len(prompts) // TEXT_BATCH)))
    rows: list[np.ndarray] = []
    done = 0
    if on_progress:
        on_progress(0, len(prompts))
    for batch in batches:
        rows.append(np.asarray(encode_text([prompts[i] for i in batch]), np.float32))
        done += len(batch)
        if on_progress:
            on_progress(done, len(prompts))
    in_order = np.empty((len(prompts), rows[0].shape[1]), np.float32)
    in_order[order] = np.vstack(rows)
    embedded = in_order.reshape(len(vocabulary.names), len(made), -1).mean(axis=1)
    return (embedded / np.linalg.norm(embedded, axis=1, keepdims=True)).astype(np.float32)


def top_tags(
    vectors: np.ndarray, matrix: np.ndarray, names: Sequence[str], top: int = TOP_TAGS
) -> list[list[tuple[str, float]]]:
    """Each vector's most probable tags (softmax over the vocabulary), best first."""
    logits = LOGIT_SCALE * (np.asarray(vectors, np.float32) @ matrix.T)
    logits -= logits.max(axis=1, keepdims=True)
    probs = np.exp(logits)
    probs /= probs.sum(axis=1, keepdims=True)
    best = np.argsort(-probs, axis=1, kind="stable")[:, :top]
    return [
        [(names[j], float(row[j])) for j in picks] for row, picks in zip(probs, best, strict=True)
    ]
