"""COCO detectors from torchvision (`torchvision:<name>`), the COCO class as the label.

Weights come from torchvision's weight enum through the torch hub cache
(`$TORCH_HOME/hub/checkpoints/<file>`, the file the enum's URL names), or from
`--detector-weights FILE`, a state dict in torchvision's own layout.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from searchapp.detect.base import Detection, DetectorOptions, clip_box, select
from searchapp.errors import UnknownNameError, WeightsUnavailableError

# photos a detector pass: the model scales each to about 800x1067 px, and a ResNet-50 FPN's
# activations then take hundreds of MB a photo (an index batch of 256 in one pass needs tens
# of GB, on a GPU or off it)
DETECT_PASS = 4


def detector_names() -> list[str]:
    import torchvision.models.detection as detection
    from torchvision.models import list_models

    # keypoint R-CNN knows only "person": not a general detector
    return [name for name in list_models(module=detection) if not name.startswith("keypoint")]


def cached_weights_path(weights: Any) -> Path:
    import torch

    return Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.url).name


def _state_dict(name: str, weights: Any, options: DetectorOptions) -> dict[str, Any]:
    import torch

    path = options.weights or cached_weights_path(weights)
    if not path.is_file() and options.allow_download:
        try:
            return dict(weights.get_state_dict(progress=False, check_hash=True))
        except Exception as exc:  # network errors come in many types; the advice is one
            raise WeightsUnavailableError(
                f"could not download the COCO weights of torchvision:{name} ({exc}); put "
                f"{Path(weights.url).name} at {path}, or pass --detector-weights FILE"
            ) from exc
    if not path.is_file():
        raise WeightsUnavailableError(
            f"the COCO weights of torchvision:{name} are not at {path}; download "
            f"{weights.url} there, pass --detector-weights FILE, or use --detector cam (offline)"
        )
    try:
        return dict(torch.load(path, map_location="cpu", weights_only=True))
    except Exception as exc:  # a truncated or foreign file: say which, and what to do
        raise WeightsUnavailableError(
            f"{path} is not a readable torchvision:{name} checkpoint ({exc}); download it again"
        ) from exc


class TorchvisionDetector:
    def __init__(self, name: str, options: DetectorOptions) -> None:
        from torchvision.models import get_model, get_model_weights

        if name not in detector_names():
            raise UnknownNameError(
                f"unknown detector torchvision:{name}; valid: "
                + ", ".join(f"torchvision:{n}" for n in detector_names())
            )
        self.name = f"torchvision:{name}"
        self.options = options
        weights = get_model_weights(name).DEFAULT
        self.categories: list[str] = list(weights.meta["categories"])
        model: Any = get_model(
            name, weights=None, weights_backbone=None, num_classes=len(self.categories)
        )
        try:
            model.load_state_dict(_state_dict(name, weights, options))
        except RuntimeError as exc:
            raise WeightsUnavailableError(
                f"{options.weights or cached_weights_path(weights)} does not fit "
                f"torchvision:{name} ({str(exc).splitlines()[0]})"
            ) from exc
        from searchapp.encoders.devices import Passes, pick_device

        self.device = pick_device(options.device).name
        self.model = model.eval().to(self.device)
        self.passes = Passes(DETECT_PASS, f"{self.name} on {self.device}", self.device)

    def detect(self, images: list[Image.Image]) -> list[list[Detection]]:
        import torch

        def one_pass(some: list[Image.Image]) -> list[dict[str, Any]]:
            tensors = [
                torch.from_numpy(np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0)
                .permute(2, 0, 1)
                .to(self.device)
                for image in some
            ]
            with torch.inference_mode():
                return [{k: v.cpu() for k, v in out.items()} for out in self.model(tensors)]

        outputs = [out for part in self.passes.run(one_pass, images) for out in part]
        results = []
        for image, output in zip(images, outputs, strict=True):
            found = [
                Detection(clip_box(box, image.size), self.categories[int(label)], float(score))
                for box, label, score in zip(
                    output["boxes"].numpy(),
                    output["labels"].numpy(),
                    output["scores"].numpy(),
                    strict=True,
                )
                if score >= self.options.min_score
            ]
            results.append(select(found, image.size, self.options))
        return results
