"""Building a model from its config: the detectors and the window classifier."""

from __future__ import annotations

from typing import Any

from torch import nn

from detect.errors import DetectError
from detect.models.common import Detector
from detect.models.config import ModelConfig
from detect.models.tiny import TinyYolo
from detect.models.window import build_window_model
from detect.models.yolov2 import YoloV2

_DETECTORS = {"tiny": TinyYolo, "yolov2": YoloV2}


def build_model(cfg: ModelConfig) -> Detector:
    """A freshly initialised detector for `cfg` ("tiny" or "yolov2"); DetectError if invalid."""
    cfg.check()
    if cfg.arch not in _DETECTORS:
        raise DetectError(f"unknown detector {cfg.arch!r} (use tiny or yolov2)")
    return _DETECTORS[cfg.arch](cfg)


def build_from_config(config: dict[str, Any]) -> nn.Module:
    """The model a stored config (a weights file's "config") describes: a detector, or the
    window classifier when its "arch" is "window". DetectError for a bad config."""
    if not isinstance(config, dict):
        raise DetectError("config is not a JSON object")
    if config.get("arch") == "window":
        return build_window_model(config)
    return build_model(ModelConfig.from_dict(config))
