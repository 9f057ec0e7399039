"""Attention-guided regions from the bundled ImageNet CNN: an offline detector with no download.

The photo runs through EfficientNet-Lite0 twice, aspect kept. At the training scale (224 px on
the shorter side) it picks the top classes. At a higher resolution (CAM_SIDE) its confidence
collapses (espresso on the scikit-image coffee photo: 0.59 at 224 px, 0.04 at 384), but its
feature map is finer, so that pass draws the maps. A class activation map is the classifier row
dotted with every cell's feature. Each is upsampled, thresholded at a fraction of its peak and
split into connected components; a component's bounding box, padded, becomes a detection
labelled with the class and scored by the class probability times the component's peak. The
shared select() then applies area limits, NMS and the cap. How the thresholds were chosen on
real photos: benchmarks/README.md.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from PIL import Image

from searchapp.detect.base import Detection, DetectorOptions, clip_box, select

CLASS_SIDE = 224  # shorter side for choosing classes: the scale the classifier was trained at
CAM_SIDE = 384  # shorter side for the maps: 12 cells, against 7 at 224 px
MAX_ASPECT = 2.0  # panoramas keep their aspect but not their whole length
TOP_CLASSES = 5
MIN_CLASS_PROB = 0.05  # classes below this are guesses; their maps are noise
THRESHOLD = 0.35  # fraction of a map's peak: lower merges neighbours, higher keeps only parts
MIN_PEAK = 0.5  # a component must reach half the map's peak: weaker ones are side blobs
PAD = 0.1  # each side grows by this fraction: maps light the most telling part (a face), not all
UPSAMPLE = 8  # map cells to pixels of the component image: smoother box edges


class CamDetector:
    name = "cam"

    def __init__(self, options: DetectorOptions, threads: int | None = None) -> None:
        from searchapp.encoders.base import EncoderOptions
        from searchapp.encoders.cnn import EfficientNetLite0Encoder

        self.options = options
        cnn = EfficientNetLite0Encoder(EncoderOptions(threads=threads), options.weights)
        self.model: Any = cnn.model
        self.class_names = cnn.class_names
        classifier = self.model.get_classifier()
        self.weight = classifier.weight.detach()  # (1000, 1280), a torch tensor
        self.bias = classifier.bias.detach()

    def _features(self, image: Image.Image, side: int) -> Any:
        """The feature map (1280, h, w), a torch tensor."""
        import torch

        width, height = image.size
        scale = min(side / min(width, height), side * MAX_ASPECT / max(width, height))
        size = (max(32, round(width * scale)), max(32, round(height * scale)))
        pixels = np.asarray(image.convert("RGB").resize(size, Image.Resampling.BICUBIC))
        x = torch.from_numpy(((pixels.astype(np.float32) - 127.0) / 128.0).transpose(2, 0, 1))
        x = x[None].contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            return self.model.forward_features(x)[0]

    def activation_maps(self, image: Image.Image) -> tuple[list[int], np.ndarray, np.ndarray]:
        """Top classes, their probabilities, and their maps (classes, h, w).

        The two products run in torch, beside the convolutions: numpy's OpenBLAS keeps its
        threads spinning for a while after every call, and took about 100 ms of a core per
        photo from the readers that way."""
        import torch

        with torch.inference_mode():
            pooled = self._features(image, CLASS_SIDE).mean(dim=(1, 2))
            logits = (self.weight @ pooled + self.bias).numpy()
            probs = np.exp(logits - logits.max())
            probs /= probs.sum()
            top = [int(c) for c in np.argsort(-probs)[:TOP_CLASSES] if probs[c] >= MIN_CLASS_PROB]
            features = self._features(image, CAM_SIDE)
            maps = torch.einsum("kc,chw->khw", self.weight[top], features).numpy()
        return top, probs[top], maps

    def detect(self, images: list[Image.Image]) -> list[list[Detection]]:
        return [self._detect_one(image) for image in images]

    def _detect_one(self, image: Image.Image) -> list[Detection]:
        top, probs, maps = self.activation_maps(image)
        names = [self.class_names[klass] for klass in top]
        return detections_from_maps(names, probs, maps, image.size, self.options)


def detections_from_maps(
    names: list[str],
    probs: np.ndarray | list[float],
    maps: np.ndarray,
    size: tuple[int, int],
    options: DetectorOptions,
) -> list[Detection]:
    """Boxes (in pixels of `size`, which the maps cover) from the maps of the top classes.

    Also called by indexing's region stage with the maps of its one pass over the photo and the
    classes stored with the photo's scene."""
    import cv2

    width, height = size
    found: list[Detection] = []
    for name, prob, cam in zip(names, probs, maps, strict=True):
        cam = np.maximum(cam, 0)
        peak = float(cam.max())
        if peak <= 0:
            continue
        h, w = cam.shape
        fine = cv2.resize(cam / peak, (w * UPSAMPLE, h * UPSAMPLE), interpolation=cv2.INTER_LINEAR)
        mask = (fine >= THRESHOLD).astype(np.uint8)
        count, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
        sx, sy = width / fine.shape[1], height / fine.shape[0]
        for component in range(1, count):
            x, y, cw, ch = (int(v) for v in stats[component, :4])
            strength = float(fine[labels == component].max())
            if strength < MIN_PEAK:
                continue
            pad_x, pad_y = cw * PAD, ch * PAD
            box = clip_box(
                ((x - pad_x) * sx, (y - pad_y) * sy, (x + cw + pad_x) * sx, (y + ch + pad_y) * sy),
                (width, height),
            )
            found.append(Detection(box, name, float(prob) * strength))
    return select(found, (width, height), options)
