"""`yolov2`: Darknet-19 + passthrough + head, exactly darknet's yolo.cfg (COCO) layer table.

At 608 with 80 classes: 19x19x425 output, 50,983,561 parameters counted as darknet/Keras do
(50,962,889 trainable + 20,672 BatchNorm running statistics). Darknet convs followed by BN have
no bias; the final 1x1 conv is linear with a bias. Passthrough: 1x1 conv 64 on the 26x26x512
layer (38x38 at 608), space-to-depth x2 -> 256 channels, concatenated before the 1024 branch.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from detect.models.common import Backbone, Conv


class Reorg(nn.Module):
    """Space-to-depth x2: `Tensor[B, C, H, W]` -> `Tensor[B, 4C, H/2, W/2]`."""

    def forward(self, x: Tensor) -> Tensor:
        return nn.functional.pixel_unshuffle(x, 2)


# (kind, filters, size) in darknet order; "M" = maxpool 2x2/2.
DARKNET19 = [
    ("C", 32, 3), ("M",), ("C", 64, 3), ("M",),
    ("C", 128, 3), ("C", 64, 1), ("C", 128, 3), ("M",),
    ("C", 256, 3), ("C", 128, 1), ("C", 256, 3), ("M",),
    ("C", 512, 3), ("C", 256, 1), ("C", 512, 3), ("C", 256, 1), ("C", 512, 3),  # -> passthrough
    ("M",),
    ("C", 1024, 3), ("C", 512, 1), ("C", 1024, 3), ("C", 512, 1), ("C", 1024, 3),
]  # fmt: skip


def _layers(spec: list[tuple], c_in: int) -> tuple[nn.Sequential, int]:
    layers: list[nn.Module] = []
    for item in spec:
        if item[0] == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            layers.append(Conv(c_in, item[1], item[2], 1, "leaky"))
            c_in = item[1]
    return nn.Sequential(*layers), c_in


class Darknet19(Backbone):
    """Darknet-19's convolutional layers 0-22 (yolo.cfg): `forward` -> [F16, F32], the
    stride-16 map (512 channels, the passthrough's source) and the stride-32 one (1024)."""

    strides = (16, 32)

    def __init__(self) -> None:
        super().__init__()
        self.body16, c16 = _layers(DARKNET19[:17], 3)  # layers 0-16: 26x26x512 at 416
        self.body32, c32 = _layers(DARKNET19[17:], c16)  # layers 17-22
        self.channels = [c16, c32]
        self.stage_names = ["body16", "body32"]
        self.taps = (0, 1)


class Passthrough(nn.Module):
    """YOLOv2's neck, layers 23-29: two 3x3 1024 convs on F32; F16 through a 1x1 64 conv and
    space-to-depth x2 (256 channels), routed beside them; a 3x3 1024 conv over the concat.

    `forward`: [F16, F32] -> [one stride-32 map of 1024 channels].
    """

    def __init__(self, channels: list[int]) -> None:
        super().__init__()
        c16, c32 = channels
        self.head32 = nn.Sequential(
            Conv(c32, 1024, 3, act="leaky"), Conv(1024, 1024, 3, act="leaky")
        )
        self.passthrough = Conv(c16, 64, 1, act="leaky")  # layer 26
        self.reorg = Reorg()  # layer 27
        self.final = Conv(1024 + 256, 1024, 3, act="leaky")  # layer 29
        self.channels = [1024]

    def forward(self, feats: list[Tensor]) -> list[Tensor]:
        f16, f32 = feats
        route = torch.cat((self.reorg(self.passthrough(f16)), self.head32(f32)), 1)  # layer 28
        return [self.final(route)]

    def layer_table(self, imgsz: int, out: int) -> list[tuple[int, str, str, str, str, str]]:
        """Darknet-style rows (index, layer, filters, size/stride, input, output) of the whole
        detector at `imgsz`, its last conv having `out` filters (anchors x (5 + C))."""
        rows: list[tuple[int, str, str, str, str, str]] = []
        shape = (imgsz, imgsz, 3)

        def fmt(s: tuple[int, int, int]) -> str:
            return f"{s[0]} x {s[1]} x {s[2]}"

        def add(kind: str, filters: str, ks: str, out: tuple[int, int, int]) -> None:
            nonlocal shape
            rows.append((len(rows), kind, filters, ks, fmt(shape), fmt(out)))
            shape = out

        for item in DARKNET19:
            h, w, ch = shape
            if item[0] == "M":
                add("max", "", "2 x 2 / 2", (h // 2, w // 2, ch))
            else:
                add("conv", str(item[1]), f"{item[2]} x {item[2]} / 1", (h, w, item[1]))
            if len(rows) == 17:
                skip = (shape, len(rows) - 1)
        h, w, _ = shape
        add("conv", "1024", "3 x 3 / 1", (h, w, 1024))
        add("conv", "1024", "3 x 3 / 1", (h, w, 1024))
        branch = shape
        (sh, sw, sc), src = skip
        shape = (sh, sw, sc)
        rows.append((len(rows), "route", "", str(src), fmt(shape), fmt(shape)))
        add("conv", "64", "1 x 1 / 1", (sh, sw, 64))
        add("reorg", "", "/ 2", (sh // 2, sw // 2, 256))
        shape = (h, w, 256 + branch[2])
        rows.append((len(rows), "route", "", f"{len(rows) - 1} {len(rows) - 4}", "", fmt(shape)))
        add("conv", "1024", "3 x 3 / 1", (h, w, 1024))
        add("conv", str(out), "1 x 1 / 1", (h, w, out))
        return rows
