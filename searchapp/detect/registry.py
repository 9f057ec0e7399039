"""Detector registry: `--detector NAME` maps to a factory; unknown names get the valid list.

cam                         offline: class activation maps of the bundled ImageNet CNN (default)
torchvision:<name>          a COCO detector, e.g. torchvision:fasterrcnn_mobilenet_v3_large_fpn
none                        no object regions
"""

from __future__ import annotations

from collections.abc import Callable

from searchapp.detect.base import Detector, DetectorOptions
from searchapp.errors import UnknownNameError

NONE = "none"


def _make_cam(spec: str, options: DetectorOptions, threads: int | None) -> Detector:
    from searchapp.detect.cam import CamDetector

    if spec:
        raise UnknownNameError(f"the cam detector takes no model name (got cam:{spec})")
    return CamDetector(options, threads)


def _make_torchvision(spec: str, options: DetectorOptions, threads: int | None) -> Detector:
    from searchapp.detect.torchvision_detector import TorchvisionDetector

    if not spec:
        raise UnknownNameError(
            "name the model: torchvision:<name>, e.g. torchvision:fasterrcnn_mobilenet_v3_large_fpn"
        )
    return TorchvisionDetector(spec, options)


FAMILIES: dict[str, Callable[[str, DetectorOptions, int | None], Detector]] = {
    "cam": _make_cam,
    "torchvision": _make_torchvision,
}


def check_name(name: str) -> str:
    """The name if its family is known (cheap: no model is imported), else UnknownNameError."""
    family = name.partition(":")[0]
    if name != NONE and family not in FAMILIES:
        raise UnknownNameError(f"unknown detector {name!r}; valid: cam, torchvision:<name>, {NONE}")
    return name


def create_detector(
    name: str, options: DetectorOptions, threads: int | None = None
) -> Detector | None:
    """The detector, or None for `none`."""
    if check_name(name) == NONE:
        return None
    family, _, spec = name.partition(":")
    return FAMILIES[family](spec, options, threads)
