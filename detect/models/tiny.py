"""`tiny`: a small, fast three-grid detector in the yolov2-tiny / yolov3-tiny lineage.

Backbone: stride-2 3x3 convs (16-32-64-128-256 channels at width 1.0), each followed by a
residual bottleneck (1x1 halve, 3x3 restore; cheaper than a plain 3x3 and easier to train from
scratch), then an SPPF at stride 32 so the coarse grid sees the whole 320 input.
Neck: a light top-down FPN (1x1 reduce, nearest upsample x2, concat, 1x1 + 3x3) giving grids at
strides 8, 16 and 32, so small objects keep a fine grid. Head: decoupled as in YOLOX, one 3x3
branch for box + objectness and one for classes per level, each ending in a 1x1 conv; it learned
much faster than a single shared 1x1 conv (bench/README.md, Training). About 1.5 GFLOPs at 320
(width 1.0, 6 classes).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from detect.models.common import Backbone, Conv


class Bottleneck(nn.Module):
    """x + Conv3x3(Conv1x1(x, c/2), c)."""

    def __init__(self, c: int, act: str) -> None:
        super().__init__()
        self.cv1 = Conv(c, c // 2, 1, act=act)
        self.cv2 = Conv(c // 2, c, 3, act=act)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.cv2(self.cv1(x))


class SPPF(nn.Module):
    """Spatial pyramid pooling, fast (YOLOv5): three chained 5x5 max pools, concat, 1x1."""

    def __init__(self, c: int, act: str) -> None:
        super().__init__()
        self.cv1 = Conv(c, c // 2, 1, act=act)
        self.cv2 = Conv(c * 2, c, 1, act=act)
        self.pool = nn.MaxPool2d(5, 1, 2)

    def forward(self, x: Tensor) -> Tensor:
        x = self.cv1(x)
        y1 = self.pool(x)
        y2 = self.pool(y1)
        return self.cv2(torch.cat((x, y1, y2, self.pool(y2)), 1))


class DecoupledHead(nn.Module):
    """Box + objectness and class logits from separate 3x3 branches (YOLOX's decoupled head).

    Output `Tensor[B, A * (5 + C), H, W]` in the layout of a single 1x1 conv head: per anchor
    (tx, ty, tw, th, objectness, C class logits), so decoding does not know the difference.
    """

    def __init__(self, c: int, a: int, nc: int, act: str, hidden: int = 64) -> None:
        super().__init__()
        ch = min(c, hidden)  # 64 wide at every level: the head stays ~0.4 GFLOPs at 320
        self.a, self.nc = a, nc
        self.box = nn.Sequential(Conv(c, ch, 3, act=act), nn.Conv2d(ch, a * 5, 1))
        self.cls = nn.Sequential(Conv(c, ch, 3, act=act), nn.Conv2d(ch, a * nc, 1))

    def forward(self, x: Tensor) -> Tensor:
        b, _, h, w = x.shape
        box = self.box(x).view(b, self.a, 5, h, w)
        cls = self.cls(x).view(b, self.a, self.nc, h, w)
        return torch.cat((box, cls), 2).view(b, -1, h, w)

    def bias_table(self) -> Tensor:
        """Output biases `Tensor[A, 5 + C]` (a copy)."""
        box = self.box[-1].bias.detach().view(self.a, 5)
        return torch.cat((box, self.cls[-1].bias.detach().view(self.a, self.nc)), 1).clone()

    @torch.no_grad()
    def set_bias_table(self, bias: Tensor) -> None:
        self.box[-1].bias.copy_(bias[:, :5].flatten())
        self.cls[-1].bias.copy_(bias[:, 5:].flatten())


def _stage(c_in: int, c_out: int, depth: int, act: str) -> nn.Sequential:
    return nn.Sequential(
        Conv(c_in, c_out, 3, 2, act), *(Bottleneck(c_out, act) for _ in range(depth))
    )


def _ch(c: int, width: float) -> int:
    """Scaled channel count, a multiple of 8 (at least 8)."""
    return max(8, int(round(c * width / 8)) * 8)


class TinyBackbone(Backbone):
    """Stride-2 3x3 convs each followed by residual bottlenecks, SPPF at stride 32.

    `forward`: `Tensor[B, 3, H, W]` in 0..1 -> [P3, P4, P5] at strides 8, 16, 32 (`channels`).
    """

    strides = (8, 16, 32)

    def __init__(self, width: float = 1.0, depth: float = 1.0, act: str = "silu") -> None:
        super().__init__()
        c1, c2, c3, c4, c5 = (_ch(c, width) for c in (16, 32, 64, 128, 256))
        n2, n3, n4, n5 = (max(1, round(n * depth)) for n in (1, 1, 2, 1))
        self.stem = Conv(3, c1, 3, 2, act)  # /2
        self.stage2 = _stage(c1, c2, n2, act)  # /4
        self.stage3 = _stage(c2, c3, n3, act)  # /8  -> P3
        self.stage4 = _stage(c3, c4, n4, act)  # /16 -> P4
        self.stage5 = nn.Sequential(_stage(c4, c5, n5, act), SPPF(c5, act))  # /32 -> P5
        self.channels = [c3, c4, c5]
        self.stage_names = ["stem", "stage2", "stage3", "stage4", "stage5"]
        self.taps = (2, 3, 4)


class FPN(nn.Module):
    """A light top-down FPN over three maps (strides 8, 16, 32): 1x1 reduce, nearest upsample
    x2, concat with the finer map, 1x1 + 3x3; the coarsest level gets a 3x3.

    `forward`: [P3, P4, P5] with `channels` (c3, c4, c5) -> [N3, N4, N5], the same channels.
    """

    def __init__(self, channels: list[int], act: str = "silu") -> None:
        super().__init__()
        c3, c4, c5 = channels
        self.lat5 = Conv(c5, c4, 1, act=act)
        self.up = nn.Upsample(scale_factor=2, mode="nearest")
        self.fuse4 = nn.Sequential(Conv(c4 * 2, c4, 1, act=act), Conv(c4, c4, 3, act=act))
        self.lat4 = Conv(c4, c3, 1, act=act)
        self.fuse3 = nn.Sequential(Conv(c3 * 2, c3, 1, act=act), Conv(c3, c3, 3, act=act))
        self.out5 = Conv(c5, c5, 3, act=act)
        self.channels = list(channels)

    def forward(self, feats: list[Tensor]) -> list[Tensor]:
        p3, p4, p5 = feats
        n4 = self.fuse4(torch.cat((self.up(self.lat5(p5)), p4), 1))
        n3 = self.fuse3(torch.cat((self.up(self.lat4(n4)), p3), 1))
        return [n3, n4, self.out5(p5)]
