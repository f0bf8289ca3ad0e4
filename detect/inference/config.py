"""How to predict: the method (which backend) and its settings."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from detect.errors import DetectError


class Method(StrEnum):
    """Which backend predicts: the YOLO detector or a window classifier slid over the image."""

    yolo = "yolo"
    sliding = "sliding"  # crop every window, classify the crops in batches
    conv_sliding = "conv-sliding"  # the classifier as a conv net, one pass per scale (OverFeat)


@dataclass
class PredictConfig:
    """How to predict; the defaults are `detect predict`'s."""

    imgsz: int | None = None  # letterbox side; None: the size the weights were trained at
    conf: float = 0.25  # keep detections scoring at least this (obj * class prob)
    iou: float = 0.45  # NMS IoU threshold (per class)
    max_det: int = 300  # cap per image, highest scores kept
    classes: list[int] | None = None  # keep only these class ids
    multi_label: bool = False  # one row per (box, class) above conf: evaluation wants it
    batch: int = 8  # images per forward pass; larger amortises Python overhead
    method: Method | str = Method.yolo  # a window classifier's weights need a sliding method
    scales: str | Sequence[int] | None = None  # sliding: window sides in px (None: its default)
    stride: int | None = None  # sliding: window step in pixels (None: the classifier's stride)

    def check(self) -> PredictConfig:
        """Raise DetectError for an impossible setting; `method` becomes a Method."""
        if self.method not in tuple(Method):
            names = ", ".join(m.value for m in Method)
            raise DetectError(f"unknown --method {self.method!r} (use {names})")
        self.method = Method(self.method)
        if self.imgsz is not None and (self.imgsz < 32 or self.imgsz % 32):
            raise DetectError(f"--imgsz must be a positive multiple of 32, got {self.imgsz}")
        if not 0.0 <= self.conf <= 1.0:
            raise DetectError(f"--conf must be in [0, 1], got {self.conf}")
        if not 0.0 <= self.iou <= 1.0:
            raise DetectError(f"--iou must be in [0, 1], got {self.iou}")
        if self.max_det < 1:
            raise DetectError(f"--max-det must be >= 1, got {self.max_det}")
        if self.batch < 1:
            raise DetectError(f"--batch must be >= 1, got {self.batch}")
        return self
