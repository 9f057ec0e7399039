"""The 1000 ImageNet-1k class names, in the classifier's output order.

Shipped as data (imagenet_classes.txt, timm's descriptions, which a test holds equal): word
queries on a CNN library need only the names, and getting them from timm imported torch, 4-9 s of
every such query.
"""

from __future__ import annotations

import functools
from importlib import resources


@functools.lru_cache(maxsize=1)
def imagenet_class_names() -> tuple[str, ...]:
    text = resources.files(__package__).joinpath("imagenet_classes.txt").read_text("utf-8")
    return tuple(text.splitlines())
