"""The sliding-window crop classifier and its convolutional rewrite.

`WindowClassifier` sees one W x W crop (W = `WindowConfig.imgsz`) and returns C + 1 logits:
the C classes first, **background last** (index C). Its trunk is unpadded ("valid") 3x3
convolutions and 2x2 max pools, so a feature cell depends only on pixels of its own crop; its head
is dense layers (`nn.Linear`) on the flattened F x F feature map.

`to_conv(model)` rewrites the head as convolutions with the same weights: the first dense layer
becomes a conv whose kernel is the whole F x F feature map, the others become 1x1 convs. Run on a
whole image, the resulting `ConvWindowClassifier` gives one output cell per window, the window at
`(i * stride, j * stride)` of size W for cell `(i, j)` (stride = 2 ** number of pools), with the
crop classifier's scores, and shares all the overlapping trunk work between neighbouring windows.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import torch
from torch import Tensor, nn

from detect.errors import DetectError


@dataclass
class WindowConfig:
    """What a window classifier is; stored as JSON in the weights file."""

    arch: str = "window"  # tells load_weights (detect.models.build) to build this model
    num_classes: int = 5  # C object classes; the model outputs C + 1 logits (background last)
    names: list[str] = field(default_factory=list)  # class names, len == num_classes (or empty)
    imgsz: int = 32  # W: the crop side the classifier sees, in pixels
    channels: list[int] = field(default_factory=lambda: [8, 32])  # per stage: two valid 3x3
    # convs of this width then a 2x2 max pool; total stride = 2 ** len(channels)
    hidden: list[int] = field(default_factory=lambda: [32])  # dense layer widths before the
    # output layer: kept small, the head is the part conv-sliding cannot share between windows
    dropout: float = 0.2  # before each dense layer in training (identity in eval)

    def __post_init__(self) -> None:
        if not self.names:
            self.names = [str(i) for i in range(self.num_classes)]
        self.channels = [int(c) for c in self.channels]
        self.hidden = [int(h) for h in self.hidden]

    @property
    def stride(self) -> int:
        """Pixels between neighbouring conv-sliding windows (the trunk's total stride)."""
        return 2 ** len(self.channels)

    @property
    def feature_size(self) -> int:
        """F: side of the trunk's feature map for one W x W crop (each conv -2, each pool // 2)."""
        n = self.imgsz
        for _ in self.channels:
            n = (n - 4) // 2
        return n

    def check(self) -> WindowConfig:
        """Raise DetectError on an impossible config (checked at public entry points)."""
        if self.arch != "window":
            raise DetectError(f"window config has arch {self.arch!r}, expected 'window'")
        if self.num_classes < 1:
            raise DetectError(f"num_classes must be >= 1, got {self.num_classes}")
        if len(self.names) != self.num_classes:
            raise DetectError(f"{len(self.names)} class names for {self.num_classes} classes")
        if not self.channels or min(self.channels) < 1 or min(self.hidden, default=1) < 1:
            raise DetectError("window model needs >= 1 trunk stage and positive widths")
        if self.feature_size < 1:
            raise DetectError(
                f"window size {self.imgsz} is too small for {len(self.channels)} trunk stages"
            )
        if not 0 <= self.dropout < 1:
            raise DetectError(f"dropout must be in [0, 1), got {self.dropout}")
        return self

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> WindowConfig:
        """Build from `to_dict()` output; unknown keys are ignored, bad values raise DetectError."""
        if not isinstance(d, dict):
            raise DetectError("window model config is not a JSON object")
        known = {f.name for f in fields(cls)}
        try:
            cfg = cls(**{k: v for k, v in d.items() if k in known})
        except (TypeError, ValueError) as e:
            raise DetectError(f"bad window model config: {e}") from None
        return cfg.check()


def _trunk(channels: list[int]) -> nn.Sequential:
    """Valid (unpadded) 3x3 convs + BN + ReLU, two per stage, then a 2x2 max pool.

    No padding anywhere, so on a whole image each feature cell sees exactly the pixels it would
    see inside its own crop: that is what makes conv-sliding equal to cropping.
    """
    layers: list[nn.Module] = []
    c_in = 3
    for c in channels:
        for _ in range(2):
            layers += [nn.Conv2d(c_in, c, 3, bias=False), nn.BatchNorm2d(c), nn.ReLU(inplace=True)]
            c_in = c
        layers.append(nn.MaxPool2d(2, 2))
    return nn.Sequential(*layers)


class WindowClassifier(nn.Module):
    """Crop classifier: conv + pool trunk, then dense layers to C + 1 logits (background last).

    forward(x: Tensor[B, 3, W, W] float RGB in 0..1) -> Tensor[B, C + 1] logits.
    """

    def __init__(self, cfg: WindowConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.trunk = _trunk(cfg.channels)
        f = cfg.feature_size
        head: list[nn.Module] = [nn.Flatten()]  # (C, H, W) row-major: what to_conv relies on
        n_in = cfg.channels[-1] * f * f
        for n_out in [*cfg.hidden, cfg.num_classes + 1]:
            if head[-1:] and isinstance(head[-1], nn.Linear):
                head.append(nn.ReLU(inplace=True))
            head += [nn.Dropout(cfg.dropout), nn.Linear(n_in, n_out)]
            n_in = n_out
        self.head = nn.Sequential(*head)

    @property
    def stride(self) -> int:
        return self.cfg.stride

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.trunk(x))


class ConvWindowClassifier(nn.Module):
    """The crop classifier run over a whole image: every output cell is one window.

    forward(x: Tensor[B, 3, H, W_img]) -> Tensor[B, C + 1, Ho, Wo] logits, where cell (i, j) is
    the W x W window at pixel (i * stride, j * stride) of x; Ho = floor((H - W) / stride) + 1 at
    most (the trunk's pools may drop a last row; `detect.inference.sliding` crops to the window
    count).
    """

    def __init__(self, cfg: WindowConfig, trunk: nn.Sequential, head: nn.Sequential) -> None:
        super().__init__()
        self.cfg = cfg
        self.trunk = trunk
        self.head = head

    @property
    def stride(self) -> int:
        return self.cfg.stride

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.trunk(x))


def to_conv(model: WindowClassifier) -> ConvWindowClassifier:
    """Rewrite the dense head as convolutions, reusing the weights (nothing is retrained).

    A dense layer on the flattened [c, F, F] feature map computes, for each output unit o,
    sum over (c, y, x) of w[o, c*F*F + y*F + x] * feat[c, y, x]: exactly a conv with kernel F x F
    and weight w.view(o, c, F, F) applied at one position. Slid over a bigger feature map, that
    conv evaluates the dense layer for every window at once. The later dense layers see a vector
    per window, i.e. a 1x1 conv with weight w.view(o, i, 1, 1). The trunk is shared, not copied.
    """
    cfg = model.cfg
    f = cfg.feature_size
    layers: list[nn.Module] = []
    first = True
    for layer in model.head:
        if isinstance(layer, nn.Flatten):
            continue  # the conv keeps the spatial layout instead
        if isinstance(layer, nn.Linear):
            k = f if first else 1
            c_in = layer.in_features // (k * k)
            conv = nn.Conv2d(c_in, layer.out_features, k).to(layer.weight.device)
            with torch.no_grad():
                conv.weight.copy_(layer.weight.view(layer.out_features, c_in, k, k))
                conv.bias.copy_(layer.bias)
            layers.append(conv)
            first = False
        elif isinstance(layer, nn.ReLU | nn.Dropout):
            layers.append(copy.deepcopy(layer))  # pointwise: same meaning on a map as on a vector
        else:
            raise DetectError(f"to_conv: cannot convert head layer {type(layer).__name__}")
    conv_model = ConvWindowClassifier(cfg, model.trunk, nn.Sequential(*layers))
    return conv_model.train(model.training)


def build_window_model(cfg: dict[str, Any] | WindowConfig) -> WindowClassifier:
    """Build a (randomly initialised) WindowClassifier from a config or its dict form."""
    if isinstance(cfg, dict):
        cfg = WindowConfig.from_dict(cfg)
    return WindowClassifier(cfg.check())
