"""Attention-guided regions from the bundled ImageNet CNN: an offline detector with no download.

The photo runs through EfficientNet-Lite0 twice, aspect kept, when no classes are given. At the
training scale (224 px on the shorter side) it picks the top classes. At a higher resolution
(CAM_SIDE) its confidence collapses (espresso on the scikit-image coffee photo: 0.59 at 224 px,
0.04 at 384), but its feature map is finer, so that pass draws the maps. A class activation map
is the classifier row dotted with every cell's feature. Each is upsampled, thresholded at a
fraction of its peak and split into connected components; a component's bounding box, padded,
becomes a detection labelled with the class and scored by the class probability times the
component's peak. The shared select() then applies area limits, NMS and the cap. How the
thresholds were chosen on real photos: benchmarks/README.md. Indexing passes the classes the
same CNN stored with the photo's scene instead, so that only the map pass runs. Those come from
the scene's view (224 px, centre-cropped), not the whole photo: 2.9 objects a photo on the
shared photos against 2.4 with the detector's own class pass. Both passes go through
encoders/feature_maps.py, on ONNX Runtime (21 ms a photo at 384 px against 58 in PyTorch).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from PIL import Image

from searchapp.detect.base import Detection, DetectorOptions, clip_box, select
from searchapp.encoders.feature_maps import FeatureMaps, pass_input

CLASS_SIDE = 224  # shorter side for choosing classes: the scale the classifier was trained at
CAM_SIDE = 384  # shorter side for the maps: 12 cells, against 7 at 224 px
TOP_CLASSES = 5
MIN_CLASS_PROB = 0.05  # classes below this are guesses; their maps are noise
THRESHOLD = 0.35  # fraction of a map's peak: lower merges neighbours, higher keeps only parts
MIN_PEAK = 0.5  # a component must reach half the map's peak: weaker ones are side blobs
PAD = 0.1  # each side grows by this fraction: maps light the most telling part (a face), not all
UPSAMPLE = 8  # map cells to pixels of the component image: smoother box edges

Labels = list[tuple[str, float]]  # class names and probabilities, best first


def chosen_classes(labels: Labels) -> Labels:
    """The classes worth a map: the top few, above the guessing floor."""
    return [(name, prob) for name, prob in labels[:TOP_CLASSES] if prob >= MIN_CLASS_PROB]


def class_indexes(
    labels: Labels, class_names: Sequence[str], logits: Callable[[list[int]], np.ndarray]
) -> list[int]:
    """The class of each stored label. ImageNet names two classes "crane" (a bird and a
    machine): such a name goes to the class the photo's cells score higher (`logits`)."""
    indexes = []
    for name, _ in labels:
        matches = [i for i, known in enumerate(class_names) if known == name]
        indexes.append(matches[int(np.argmax(logits(matches)))] if len(matches) > 1 else matches[0])
    return indexes


class CamDetector:
    name = "cam"

    def __init__(self, options: DetectorOptions, threads: int | None = None) -> None:
        from searchapp.encoders.base import EncoderOptions
        from searchapp.encoders.cnn import EfficientNetLite0Encoder
        from searchapp.encoders.devices import pick_device

        self.options = options
        # its own PyTorch model, without the 224 px tower's session (no crops are encoded here)
        device = pick_device(options.device).name  # "auto" settled as the encoder's is
        torch_only = EncoderOptions(threads=threads, runtime="torch", device=device)
        cnn = EfficientNetLite0Encoder(torch_only, options.weights)
        # both passes, on ONNX Runtime where it exports (on the CPU), else PyTorch's device
        self.maps = FeatureMaps(cnn.model, device=device)
        self.class_names = cnn.class_names
        self.weight = cnn.classifier_weight  # (1000, 1280)
        self.bias = cnn.classifier_bias

    def classes(self, image: Image.Image) -> Labels:
        """The photo's top classes, from a pass at the classifier's scale. Indexing has them
        already, stored with the scene by the same CNN, and passes them to detect()."""
        pooled = self.maps(pass_input(image, CLASS_SIDE)).mean(axis=(1, 2))
        logits = self.weight @ pooled + self.bias
        probs = np.exp(logits - logits.max())
        probs /= probs.sum()
        top = np.argsort(-probs)[:TOP_CLASSES]
        return [(self.class_names[int(c)], float(probs[c])) for c in top]

    def activation_maps(self, image: Image.Image, labels: Labels) -> np.ndarray:
        """The maps (classes, h, w) of the chosen classes among `labels`."""
        features = self.maps(pass_input(image, CAM_SIDE))
        mean = features.mean(axis=(1, 2))
        top = class_indexes(
            chosen_classes(labels), self.class_names, lambda k: self.weight[k] @ mean + self.bias[k]
        )
        return np.einsum("kc,chw->khw", self.weight[top], features)

    def detect(
        self, images: list[Image.Image], labels: list[Labels | None] | None = None
    ) -> list[list[Detection]]:
        """Boxes per image; `labels`, where known, spare the class pass."""
        known: list[Labels | None] = list(labels) if labels else [None] * len(images)
        return [self._detect_one(image, given) for image, given in zip(images, known, strict=True)]

    def _detect_one(self, image: Image.Image, labels: Labels | None) -> list[Detection]:
        chosen = chosen_classes(labels if labels is not None else self.classes(image))
        maps = self.activation_maps(image, chosen)
        names = [name for name, _ in chosen]
        probs = [prob for _, prob in chosen]
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
