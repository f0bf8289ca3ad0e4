"""Building a model from its config: a detector from the parts its architecture row names
(detect.archs), or the window classifier."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

from detect.archs import get_arch
from detect.errors import DetectError
from detect.models.common import Backbone, Detector
from detect.models.config import ModelConfig
from detect.models.efficientnet import EfficientNetLite
from detect.models.tiny import FPN, DecoupledHead, TinyBackbone
from detect.models.window import build_window_model
from detect.models.yolov2 import Darknet19, Passthrough

# The parts an architecture row names. A backbone takes the config (width, depth, act).
BACKBONES: dict[str, Callable[[ModelConfig], Backbone]] = {
    "tiny": lambda cfg: TinyBackbone(cfg.width, cfg.depth, cfg.act),
    "darknet19": lambda cfg: Darknet19(),
    **{
        f"efficientnet-{v}": (lambda cfg, v=v: EfficientNetLite(v))
        for v in ("lite0", "lite1", "lite2")
    },
}
NECKS: dict[str, Callable[[list[int], str], nn.Module]] = {
    "fpn": lambda channels, act: FPN(channels, act),
    "passthrough": lambda channels, act: Passthrough(channels),
}


def _heads(kind: str, channels: list[int], cfg: ModelConfig) -> list[nn.Module]:
    outs = 5 + cfg.num_classes
    if kind == "decoupled":
        return [
            DecoupledHead(c, len(a), cfg.num_classes, cfg.act)
            for c, a in zip(channels, cfg.anchors, strict=True)
        ]
    return [nn.Conv2d(c, len(a) * outs, 1) for c, a in zip(channels, cfg.anchors, strict=True)]


def build_model(cfg: ModelConfig) -> Detector:
    """A freshly initialised detector for `cfg` (any row of `ARCHS`); DetectError if invalid.

    An ImageNet backbone starts from random weights here: `detect.models.transfer` loads its
    pretrained file (the training task does, unless told not to).
    """
    cfg.check()
    arch = get_arch(cfg.arch)
    backbone = BACKBONES[arch.backbone](cfg)
    neck = NECKS[arch.neck](backbone.channels, cfg.act)
    heads = _heads(arch.head, neck.channels, cfg)
    return Detector(cfg, backbone, neck, heads, list(arch.strides))


def build_from_config(config: dict[str, Any]) -> nn.Module:
    """The model a stored config (a weights file's "config") describes: a detector, or the
    window classifier when its "arch" is "window". DetectError for a bad config."""
    if not isinstance(config, dict):
        raise DetectError("config is not a JSON object")
    if config.get("arch") == "window":
        return build_window_model(config)
    return build_model(ModelConfig.from_dict(config))
