"""Grid/anchor detectors: `build_model(cfg)` -> Detector (see detect.models.common)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from detect.models.config import ModelConfig, default_anchors, split_anchors

if TYPE_CHECKING:
    from torch import nn

    from detect.models.common import Detector

__all__ = ["ModelConfig", "build_model", "default_anchors", "split_anchors"]


def build_model(cfg: ModelConfig) -> Detector | nn.Module:
    """A freshly initialised model for `cfg` ("tiny", "yolov2", or "window")."""
    if cfg.arch == "window":
        # Built by its own module (another issue); imported lazily so it is optional here.
        from detect.models.window import build_window_model

        return build_window_model(cfg)
    cfg.validate()
    if cfg.arch == "yolov2":
        from detect.models.yolov2 import YoloV2

        return YoloV2(cfg)
    from detect.models.tiny import TinyYolo

    return TinyYolo(cfg)
