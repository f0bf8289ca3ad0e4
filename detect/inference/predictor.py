"""`Predictor`: a model ready to predict, whatever its method, with running time counters."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from detect.errors import DetectError
from detect.inference.backends import SlidingBackend, YoloBackend, model_stride
from detect.inference.loading import load_model, model_device, model_imgsz, model_names, unwrap
from detect.inference.torchfree import (
    Backend,
    ExportedPredictor,
    Times,
    check_batch,
    check_classes,
    wrap_backend,
)
from detect.runtime import ExportedModel
from detect.settings import Method, PredictConfig


class Predictor:
    """A model (in memory, or a weights path loaded onto `device`) and the backend its method
    needs: `Predictor(model, PredictConfig(method=...))(images)`. An exported model (`.onnx`
    file or OpenVINO folder of `detect export`) runs on the CPU through detect.runtime with the
    class names and input size it carries; `cfg.tile` wraps the backend in tiled inference.

    `predictor(images)` takes BGR uint8 images of any sizes and returns one float32
    ndarray[K, 6] per image: rows (x1, y1, x2, y2, score, class), boxes in original pixels, by
    decreasing score. `times` accumulates seconds of pre-processing, inference and
    post-processing, `images` the number of images seen. A model in memory is left on its
    device, its train/eval mode restored after each call.

    `cfg.augment` predicts each image at several sides and mirrored, boxes merged
    (`detect.inference.tta`); `cfg.half` runs the weights and inputs in fp16 on CUDA (decode
    output and NMS in float32).

    Raises DetectError for bad settings, a `--classes` id the model lacks, weights that do
    not fit the method (a window classifier needs a sliding method, a detector `yolo`), or
    `half` off CUDA or on a model in memory.
    """

    def __init__(
        self,
        model_or_weights: Any,
        cfg: PredictConfig | None = None,
        device: str | torch.device = "cpu",
    ) -> None:
        self.cfg = (cfg or PredictConfig()).check()
        self.model, self.meta = load_model(model_or_weights, device)
        self.exported = isinstance(self.model, ExportedModel)
        self.net = unwrap(self.model)
        self.device = torch.device("cpu") if self.exported else model_device(self.net)
        self.names = model_names(self.net, self.meta)
        check_classes(self.cfg, self.names)
        self.imgsz = self.cfg.imgsz or model_imgsz(self.net, self.meta)
        self.backend: Backend
        self.times: Times = {"pre": 0.0, "inference": 0.0, "post": 0.0}
        self.images = 0
        if self.exported:  # the torch-free predictor's checks and backend
            self.backend = ExportedPredictor(self.model, self.cfg).backend
            return
        arch = getattr(getattr(self.net, "cfg", None), "arch", None)
        method = self.cfg.method
        if method == Method.yolo and arch == "window":
            raise DetectError(
                "these weights are a window classifier: use --method sliding or conv-sliding"
            )
        if method != Method.yolo and arch not in (None, "window"):
            raise DetectError(
                f"--method {method} needs window classifier weights "
                f"(e.g. weights/shapes-window.safetensors), got a '{arch}' detector"
            )
        if method == Method.yolo:
            if isinstance(model_or_weights, (str, Path)):
                fuse = getattr(self.net, "fuse", None)
                if callable(fuse):  # our own copy: fold BN into the convs (fewer kernels)
                    fuse()
            if self.cfg.half:
                if self.device.type != "cuda":
                    raise DetectError(
                        f"--half needs a CUDA device (fp16 here on {self.device.type} would be "
                        "slower, not faster); drop it or use --device cuda"
                    )
                if not isinstance(model_or_weights, (str, Path)):
                    raise DetectError("--half takes a weights path (a model in memory is kept)")
                self.net.half()  # our own copy

            def make(side: int) -> YoloBackend:
                return YoloBackend(self.net, self.cfg, side, self.device)

            self.backend = wrap_backend(make, self.cfg, self.imgsz, model_stride(self.net))
        else:
            self.backend = SlidingBackend(self.net, self.cfg, self.device)

    @property
    def runtime(self) -> str:
        """What runs the model: "pytorch", "onnxruntime" or "openvino"."""
        return self.model.backend if self.exported else "pytorch"

    def __call__(self, images: Sequence[np.ndarray]) -> list[np.ndarray]:
        check_batch(images)
        if not len(images):
            return []
        if self.exported:
            out = self.backend(images, self.times)
            self.images += len(images)
            return out
        was_training = self.net.training
        self.net.eval()
        try:
            with torch.inference_mode():
                out = self.backend(images, self.times)
        finally:
            self.net.train(was_training)
        self.images += len(images)
        return out

    def ms_per_image(self) -> dict[str, float]:
        n = max(self.images, 1)
        return {k: 1000.0 * v / n for k, v in self.times.items()}
