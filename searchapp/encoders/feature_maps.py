"""The CNN's last feature map over a whole photo: the pooled region pass and the CAM detector's.

Both run the photo once at a given shorter side, aspect kept. ONNX Runtime runs that pass in
about half PyTorch's time on one thread (44 against 90 ms at 448 x 597 px, cells within 6e-5)
when the graph is exported for one input size, which lets it fold every shape: each size gets
its own session, exported in memory on first use (0.3 s). Sizes are snapped to whole cells (32
px), which leaves a handful of sizes in a library: the two orientations of each aspect ratio.
Each session runs on one thread; the region stage's readers run one photo each at once.

A session holds about 90 MB once it has run (the graph optimised for its size, its buffers), so
only the first MAX_SESSIONS sizes a process meets get one, and any other size runs in PyTorch: a
camera's photos come in two to four sizes, and a folder of every shape stays within memory. (One
session with dynamic height and width gives the same cells, but measured 1.5x slower than a
session of fixed size, no faster than PyTorch.)
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import numpy as np
from PIL import Image

from searchapp.encoders.devices import TORCH_PASS
from searchapp.encoders.onnx_runtime import installed, shaped_session

CELL = 32  # input pixels per cell of the last feature map
MAX_ASPECT = 2.0  # a panorama keeps its aspect up to this, then is scaled, never cropped
_EXPORT = threading.Lock()
MAX_SESSIONS = 4  # input sizes that get an ONNX Runtime session, per model and process


def pass_size(width: int, height: int, side: int) -> tuple[int, int]:
    """The input size for a photo at `side` px on its shorter side, in whole cells."""
    scale = min(side / min(width, height), side * MAX_ASPECT / max(width, height))
    return (
        max(CELL, CELL * round(width * scale / CELL)),
        max(CELL, CELL * round(height * scale / CELL)),
    )


def pass_input(image: Image.Image, side: int) -> np.ndarray:
    """The pass's input (3, h, w): the photo resized to pass_size(), as the CNN normalises."""
    size = pass_size(*image.size, side)
    pixels = np.asarray(image.convert("RGB").resize(size, Image.Resampling.BICUBIC), np.float32)
    return np.ascontiguousarray(((pixels - 127.0) / 128.0).transpose(2, 0, 1))


class FeatureMaps:
    """model.forward_features for one image at a time, on ONNX Runtime where it exports."""

    def __init__(self, model: Any, runtime: str = "auto", device: str = "cpu"):
        self.model = model
        self.device = device
        self.use_onnx = runtime != "torch" and device == "cpu" and installed()
        self._sessions: dict[tuple[int, ...], Any] = {}

    def __call__(self, pixels: np.ndarray) -> np.ndarray:
        """(3, h, w) input -> (channels, h/32, w/32) float32."""
        batch = np.ascontiguousarray(pixels[None], dtype=np.float32)
        session = self._session(batch.shape) if self.use_onnx else None
        if session is not None:
            return np.asarray(session.run(None, {"pixels": batch})[0][0])
        import torch

        # one PyTorch pass at a time: each runs on all of its threads, and readers call this
        with TORCH_PASS, torch.inference_mode():
            x = torch.from_numpy(batch).to(self.device)
            features = self.model.forward_features(x.contiguous(memory_format=torch.channels_last))
            return np.asarray(features[0].float().cpu().numpy())

    def _session(self, shape: tuple[int, ...]) -> Any:
        # one export at a time in the process (the exporter keeps global state), and one per
        # size, whichever reader asks first
        with _EXPORT:
            if shape not in self._sessions:
                if len(self._sessions) >= MAX_SESSIONS:
                    return None
                try:
                    self._sessions[shape] = shaped_session(_Features(self.model), shape, 1)
                except Exception as exc:  # the exporter raises many kinds; PyTorch still works
                    logging.getLogger(__name__).warning(
                        "searchapp: the region pass stays on PyTorch: its ONNX export at %s "
                        "failed (%s)",
                        shape,
                        exc,
                    )
                    self.use_onnx = False
                    return None
            return self._sessions[shape]


def _Features(model: Any) -> Any:
    import torch

    class Features(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, pixels: Any) -> Any:
            return self.model.forward_features(pixels)

    return Features().eval()
