"""EfficientNet-Lite (Tan & Le, ICML 2019; Google's "Lite" variants for mobile and edge, 2020):
an ImageNet backbone for the detector, and its classifier for the ImageNet check.

Faithful to Google's TensorFlow reference (tensorflow/tpu `efficientnet/lite`), so the ImageNet
weights it ships (converted once to safetensors: scripts/convert_efficientnet_lite.py) load and
classify as they did there:

- input `(x - 127) / 128` on 0..255 RGB (Lite's MEAN_RGB / STDDEV_RGB), done inside the model:
  callers, exports and runtimes keep feeding 0..1 RGB like every other detect model;
- TF "SAME" padding on the stride-2 convolutions (asymmetric: one pixel more at the bottom and
  right, `(k - 2) // 2` before, the rest after), plain `k // 2` on the stride-1 ones;
- BatchNorm eps 1e-3 (TF's), ReLU6, no squeeze-and-excitation (Lite drops it), stem (32) and
  head (1280) widths fixed, the first and last stages' repeats not scaled (`fix_head_stem`);
- MBConv blocks: 1x1 expand, k x k depthwise, 1x1 linear projection, identity shortcut when the
  shape is kept (no drop-connect: a detector fine-tunes without it).

The detector taps the ends of stages 3, 5 and 7: strides 8, 16, 32, with 40 / 112 / 320
channels for Lite0 (`EfficientNetLite.channels`). Input sides must be multiples of 32, so every
stride-2 conv sees an even side and the SAME padding is the fixed one above (an export stays
dynamic in height and width).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from detect.models.common import Backbone, fuse_conv_bn

# (repeats, kernel, stride, expand ratio, in, out) of EfficientNet-B0's seven stages.
_STAGES = [
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
]
# variant -> (width multiplier, depth multiplier, ImageNet input side), efficientnet_lite_builder
VARIANTS = {
    "lite0": (1.0, 1.0, 224),
    "lite1": (1.0, 1.1, 240),
    "lite2": (1.1, 1.2, 260),
    "lite3": (1.2, 1.4, 280),
    "lite4": (1.4, 1.8, 300),
}
TAPS = (3, 5, 7)  # stage numbers (1-based) whose outputs feed the neck: strides 8, 16, 32
BN_EPS = 1e-3
BN_MOMENTUM = 0.01  # TF's decay 0.99


def round_filters(c: int, width: float, divisor: int = 8) -> int:
    """Channels scaled by `width`, to a multiple of `divisor`, never 10% below (TF's rule)."""
    c = c * width
    new = max(divisor, int(c + divisor / 2) // divisor * divisor)
    if new < 0.9 * c:
        new += divisor
    return int(new)


def stage_specs(variant: str) -> list[tuple[int, int, int, int, int, int]]:
    """The seven stages of `variant` as (repeats, kernel, stride, expand, c_in, c_out)."""
    width, depth, _ = VARIANTS[variant]
    specs = []
    for i, (n, k, s, e, c_in, c_out) in enumerate(_STAGES):
        fixed = i in (0, len(_STAGES) - 1)  # fix_head_stem: first and last repeats unscaled
        reps = n if fixed else int(math.ceil(depth * n))
        specs.append((reps, k, s, e, round_filters(c_in, width), round_filters(c_out, width)))
    return specs


class ConvBN(nn.Module):
    """Conv2d (no bias, TF SAME padding) -> BatchNorm2d (eps 1e-3) -> ReLU6 (or nothing)."""

    def __init__(
        self, c_in: int, c_out: int, k: int, s: int = 1, groups: int = 1, act: bool = True
    ) -> None:
        super().__init__()
        # SAME on an even side: stride 1 pads k // 2 each side; stride 2 one pixel less before
        self.pad = (k // 2, k // 2) if s == 1 else ((k - 2) // 2, k - 2 - (k - 2) // 2)
        self.conv = nn.Conv2d(c_in, c_out, k, s, 0, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(c_out, eps=BN_EPS, momentum=BN_MOMENTUM)
        self.act = nn.ReLU6(inplace=True) if act else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        a, b = self.pad
        return self.act(self.bn(self.conv(nn.functional.pad(x, (a, b, a, b)))))

    def fuse(self) -> None:
        """Fold the BatchNorm into the conv (inference only), as `common.Conv.fuse`."""
        if not isinstance(self.bn, nn.Identity):
            self.conv, self.bn = fuse_conv_bn(self.conv, self.bn), nn.Identity()


class MBConv(nn.Module):
    """Inverted residual: 1x1 expand (when e > 1), k x k depthwise, 1x1 linear projection."""

    def __init__(self, c_in: int, c_out: int, k: int, s: int, e: int) -> None:
        super().__init__()
        mid = c_in * e
        self.expand = ConvBN(c_in, mid, 1) if e != 1 else nn.Identity()
        self.dw = ConvBN(mid, mid, k, s, groups=mid)
        self.project = ConvBN(mid, c_out, 1, act=False)
        self.shortcut = s == 1 and c_in == c_out

    def forward(self, x: Tensor) -> Tensor:
        y = self.project(self.dw(self.expand(x)))
        return x + y if self.shortcut else y


class EfficientNetLite(Backbone):
    """The Lite network: `stem`, `stage1` ... `stage7`, and (with `classifier=True`) the
    ImageNet head `head` (1x1 conv to 1280) + `fc` (1000 logits).

    Args:
        variant: "lite0" ... "lite4" (width, depth multipliers of `VARIANTS`).
        classifier: build the ImageNet head too (the conversion script's check); a detector
            backbone leaves it out.

    `forward(x, frozen=0)` (detect.models.common.Backbone): `Tensor[B, 3, H, W]` RGB in 0..1,
    H and W multiples of 32 -> the taps, `Tensor[B, C_i, H / s_i, W / s_i]` for strides 8, 16,
    32 (`channels`). `classify(x)`:
    -> `Tensor[B, 1000]` ImageNet logits (needs `classifier=True`).
    """

    strides = (8, 16, 32)

    def __init__(self, variant: str = "lite0", classifier: bool = False) -> None:
        super().__init__()
        specs = stage_specs(variant)
        self.variant = variant
        self.stem = ConvBN(3, 32, 3, 2)
        self.stage_names = ["stem"]
        for i, (n, k, s, e, c_in, c_out) in enumerate(specs, 1):
            blocks = [MBConv(c_in if j == 0 else c_out, c_out, k, s if j == 0 else 1, e)
                      for j in range(n)]  # fmt: skip
            self.add_module(f"stage{i}", nn.Sequential(*blocks))
            self.stage_names.append(f"stage{i}")
        self.taps = TAPS  # stage3, stage5, stage7 (stage_names[0] is the stem)
        self.channels = [specs[t - 1][5] for t in TAPS]
        if classifier:
            self.head = ConvBN(specs[-1][5], 1280, 1)
            self.fc = nn.Linear(1280, 1000)
        # 0..1 RGB -> (255 x - 127) / 128, as buffers so exports carry them as constants
        self.register_buffer("scale", torch.tensor(255.0 / 128.0), persistent=False)
        self.register_buffer("shift", torch.tensor(127.0 / 128.0), persistent=False)

    def prepare(self, x: Tensor) -> Tensor:
        """0..1 RGB -> Lite's input, (255 x - 127) / 128."""
        return x * self.scale - self.shift

    def classify(self, x: Tensor) -> Tensor:
        """ImageNet logits `Tensor[B, 1000]` of 0..1 RGB `Tensor[B, 3, H, W]`."""
        x = self.prepare(x)
        for _, stage in self.stages():
            x = stage(x)
        x = self.head(x).mean((2, 3))
        return self.fc(x)


# efficientnet_pytorch's key names (the packages' .pth) -> ours, for the conversion script:
# the network's own parts, and the parts of each MBConv block `_blocks.N`.
TOP_PARTS = {
    "_conv_stem.": "stem.conv.",
    "_bn0.": "stem.bn.",
    "_conv_head.": "head.conv.",
    "_bn1.": "head.bn.",
    "_fc.": "fc.",
}
BLOCK_PARTS = {
    "_expand_conv.": "expand.conv.",
    "_bn0.": "expand.bn.",
    "_depthwise_conv.": "dw.conv.",
    "_bn1.": "dw.bn.",
    "_project_conv.": "project.conv.",
    "_bn2.": "project.bn.",
}


def block_index(variant: str) -> list[str]:
    """Our module path of each flat block (`_blocks.N` is element N): ["stage1.0", ...]."""
    return [f"stage{i}.{j}" for i, spec in enumerate(stage_specs(variant), 1)
            for j in range(spec[0])]  # fmt: skip


def convert_state_dict(sd: dict[str, Tensor], variant: str) -> dict[str, Tensor]:
    """An efficientnet_pytorch-style state dict -> this module's (classifier included).

    Raises KeyError on a key it does not know (the file is not what the script expects).
    """
    blocks = block_index(variant)
    out = {}
    for key, value in sd.items():
        prefix, parts, rest = "", TOP_PARTS, key
        if key.startswith("_blocks."):
            _, n, rest = key.split(".", 2)
            prefix, parts = f"{blocks[int(n)]}.", BLOCK_PARTS
        part = next((p for p in parts if rest.startswith(p)), None)
        if part is None:
            raise KeyError(key)
        out[prefix + parts[part] + rest[len(part) :]] = value
    return out
