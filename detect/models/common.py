"""Building blocks shared by the detectors, and the one YOLOv2 decode.

Raw head output per level: `Tensor[B, A, H, W, 5 + C]` holding (tx, ty, tw, th, objectness logit,
C class logits). Decoding (YOLOv2):

    cx = (sigmoid(tx) + grid_x) * stride_x        w = anchor_w * exp(tw)
    cy = (sigmoid(ty) + grid_y) * stride_y        h = anchor_h * exp(th)

with anchors in pixels and strides taken from the shapes (input / grid). The config stores
anchors as fractions of the training input side (`ModelConfig.imgsz`, the letterbox frame
`detect anchors` computes them in); the model turns them into pixels at that side once
(`Detector.anchor_pixels`) and they stay fixed whatever the input size, as darknet's anchors in
stride-32 cells do: a convolutional net sees an object's size in pixels, so an anchor scaled
with the input would make a 416 px prediction of a 320 px model 1.3x too large (and multi-scale
training contradict itself). `ModelConfig.xy_scale` s > 1 stretches the sigmoid as
YOLOv4's `scale_x_y` does, `s * sigmoid(t) - (s - 1) / 2`: still a sigmoid offset from the cell
corner, but it can reach the centre of a box that sits just across the cell edge, so the
neighbouring cells can train as positives too (s = 2 is YOLOv5's `2 * sigmoid - 0.5`); s = 1 is
YOLOv2 exactly. The same functions serve training, prediction and
export: no Python loop over data, the grid and the strides are built from tensor shapes, which
a trace records (an export keeps height and width dynamic). Fixed anchors also make a
rectangular letterbox (the square one with the padding cropped to a stride multiple) give the
boxes of the square one.
"""

from __future__ import annotations

import copy
import math

import torch
from torch import Tensor, nn
from torch.utils.flop_counter import FlopCounterMode

from detect.errors import DetectError
from detect.models.config import ModelConfig

# exp(tw) is clamped so an untrained or diverging head cannot overflow (torchvision's bbox clip).
TWH_CLIP = math.log(1000.0 / 16)


class Conv(nn.Module):
    """Conv2d (no bias) -> BatchNorm2d -> activation; `fuse()` folds the BN into the conv."""

    def __init__(self, c_in: int, c_out: int, k: int = 3, s: int = 1, act: str = "silu") -> None:
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, k, s, k // 2, bias=False)
        self.bn = nn.BatchNorm2d(c_out, eps=1e-3, momentum=0.03)
        self.act = make_act(act)

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.bn(self.conv(x)))

    def fuse(self) -> None:
        """Fold BN into the conv weights and bias (inference only; the BN becomes Identity)."""
        if not isinstance(self.bn, nn.Identity):
            self.conv, self.bn = fuse_conv_bn(self.conv, self.bn), nn.Identity()


@torch.no_grad()
def fuse_conv_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    """A Conv2d with bias computing `bn(conv(x))` in eval mode (BN statistics folded in)."""
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)  # [C_out]
    fused = nn.Conv2d(
        conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
        groups=conv.groups, bias=True,
    ).to(conv.weight.device)  # fmt: skip
    fused.weight.copy_(conv.weight * scale[:, None, None, None])
    bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
    fused.bias.copy_(bn.bias + (bias - bn.running_mean) * scale)
    return fused


def make_act(name: str) -> nn.Module:
    return nn.SiLU(inplace=True) if name == "silu" else nn.LeakyReLU(0.1, inplace=True)


def make_grid(h: int, w: int, like: Tensor) -> Tensor:
    """Cell corners `Tensor[H, W, 2]` as (x, y) = (column, row), same device/dtype as `like`."""
    ys = torch.arange(h, device=like.device, dtype=like.dtype)
    xs = torch.arange(w, device=like.device, dtype=like.dtype)
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack((gx, gy), -1)  # [H,W,2]


def _strides(raw: Tensor, input_hw: tuple[int, int] | tuple[Tensor, Tensor]) -> Tensor:
    """Pixels per cell `Tensor[2]` (x, y), from the shapes.

    Eager: Python ints, one small tensor. While tracing an export the sizes are 0-dim tensors,
    and they are kept as tensors so the exported graph has dynamic height and width.
    """
    h, w = raw.shape[2], raw.shape[3]
    in_h, in_w = input_hw[0], input_hw[1]
    if not any(isinstance(v, Tensor) for v in (h, w, in_h, in_w)):
        return torch.tensor([in_w / w, in_h / h], dtype=raw.dtype, device=raw.device)

    def f(v: int | Tensor) -> Tensor:
        v = v if isinstance(v, Tensor) else torch.tensor(v)
        return v.to(device=raw.device, dtype=raw.dtype)

    return torch.stack((f(in_w), f(in_h))) / torch.stack((f(w), f(h)))


def decode_level(
    raw: Tensor, anchors: Tensor, input_hw: tuple[int, int], xy_scale: float = 1.0
) -> Tensor:
    """Decode one level: `Tensor[B, A, H, W, 5+C]` raw -> same shape, decoded.

    Args:
        raw: (tx, ty, tw, th, obj logit, class logits) per anchor and cell.
        anchors: `Tensor[A, 2]` (w, h) in input pixels (`Detector.anchor_pixels`).
        input_hw: (height, width) of the network input in pixels (ints, or while tracing an
            export the 0-dim tensors `x.shape` gives, so the sizes stay dynamic).
        xy_scale: sigmoid stretch of the centre offset (1: YOLOv2; see the module docstring).

    Returns:
        `Tensor[B, A, H, W, 5+C]`: (cx, cy, w, h) in input pixels, sigmoid objectness, sigmoid
        class probabilities. Differentiable, for the training loss too.
    """
    h, w = raw.shape[2], raw.shape[3]
    stride = _strides(raw, input_hw)  # [2] (x, y) pixels per cell
    grid = make_grid(h, w, raw)  # [H,W,2]
    offset = raw[..., 0:2].sigmoid()  # [B,A,H,W,2] in 0..1 of the cell
    if xy_scale != 1.0:
        offset = offset * xy_scale - (xy_scale - 1.0) / 2
    xy = (offset + grid) * stride  # [B,A,H,W,2]
    wh = (
        raw[..., 2:4].clamp(-TWH_CLIP, TWH_CLIP).exp() * anchors.to(raw)[None, :, None, None, :]
    )  # [B,A,H,W,2]
    return torch.cat((xy, wh, raw[..., 4:].sigmoid()), -1)


def cxcywh_to_xyxy(b: Tensor) -> Tensor:
    """`Tensor[..., 4]` (cx, cy, w, h) -> (x1, y1, x2, y2)."""
    xy, half = b[..., :2], b[..., 2:4] / 2
    return torch.cat((xy - half, xy + half), -1)


class Backbone(nn.Module):
    """A feature extractor as a chain of named stages, some of whose outputs are tapped.

    Subclasses register their stages as attributes and set `stage_names` (input first),
    `taps` (indices into `stage_names` whose outputs are returned, finest first), `channels`
    (of those outputs) and `strides`; `prepare` maps the 0..1 RGB input first (identity here).

    `forward(x, frozen=0)`: `Tensor[B, 3, H, W]` -> the tapped maps, `Tensor[B, C_i, H / s_i,
    W / s_i]`; the first `frozen` stages run without autograd (frozen while fine-tuning).
    """

    stage_names: list[str]
    taps: tuple[int, ...]
    channels: list[int]
    strides: tuple[int, ...]

    def stages(self) -> list[tuple[str, nn.Module]]:
        """(name, module) of each stage, input first (what `--freeze N` counts)."""
        return [(n, getattr(self, n)) for n in self.stage_names]

    def prepare(self, x: Tensor) -> Tensor:
        return x

    def forward(self, x: Tensor, frozen: int = 0) -> list[Tensor]:
        x = self.prepare(x)
        outs = []
        for i, (_, stage) in enumerate(self.stages()):
            if i < frozen:
                with torch.no_grad():
                    x = stage(x)
            else:
                x = stage(x)
            if i in self.taps:
                outs.append(x)
        return outs


class Detector(nn.Module):
    """A grid/anchor detector assembled from parts, as torchvision's detection models are.

    Args:
        cfg: the ModelConfig it is built from (classes, anchors, input size, decode).
        backbone: a module mapping `Tensor[B, 3, H, W]` in 0..1 to feature maps at known
            strides; it lists its stages (`stages()`: (name, module), input first) for
            `--freeze`.
        neck: maps the backbone's maps to one map per output level, finest first.
        heads: one module per level mapping its map to `Tensor[B, A * (5 + C), H_l, W_l]`.
        strides: nominal pixels per cell of each output level (e.g. [8, 16, 32]).

    Attributes: `num_anchors` (anchors per level), `anchors` (buffer `Tensor[L, A, 2]`, (w, h)
    fractions of `cfg.imgsz`, as the config), `frozen_stages` (how many backbone stages run
    without gradient and with fixed BatchNorm statistics: `freeze_backbone`).
    """

    def __init__(
        self,
        cfg: ModelConfig,
        backbone: nn.Module,
        neck: nn.Module,
        heads: list[nn.Module],
        strides: list[int],
    ) -> None:
        super().__init__()
        self.cfg = cfg
        self.strides = list(strides)
        self.num_anchors = [len(a) for a in cfg.anchors]
        self.num_outputs = 5 + cfg.num_classes
        self.backbone, self.neck = backbone, neck
        self.heads = nn.ModuleList(heads)
        self.frozen_stages = 0
        # Not persistent: anchors live in the config (weights metadata), not in the state dict.
        self.register_buffer("anchors", torch.tensor(cfg.anchors, dtype=torch.float32), False)
        self.init_biases()

    @property
    def anchor_pixels(self) -> Tensor:
        """`Tensor[L, A, 2]` (w, h) anchors in input pixels: fractions x `cfg.imgsz`, the same at
        every input size (see the module docstring)."""
        return self.anchors * self.cfg.imgsz

    def _features(self, x: Tensor) -> list[Tensor]:
        """Head inputs per level (finest first): the neck over the backbone's maps. Frozen
        backbone stages run without autograd (no activations kept for a backward pass)."""
        return self.neck(self.backbone(x, self.frozen_stages))

    def freeze_backbone(self, n: int) -> list[str]:
        """Freeze the first `n` backbone stages (all with `n` = len(stages)): no gradient, their
        BatchNorm statistics fixed (eval mode even while training), and no autograd through
        them. Returns their names."""
        stages = self.backbone.stages()
        if not 0 <= n <= len(stages):
            raise DetectError(f"--freeze {n}: the backbone has {len(stages)} stages")
        for _, stage in stages[:n]:
            stage.requires_grad_(False)
        self.frozen_stages = n
        self.train(self.training)
        return [name for name, _ in stages[:n]]

    def train(self, mode: bool = True) -> Detector:
        super().train(mode)
        for _, stage in self.backbone.stages()[: self.frozen_stages]:
            stage.eval()  # frozen BatchNorm statistics: ImageNet's, not a small batch's
        return self

    def forward(self, x: Tensor) -> list[Tensor]:
        """`Tensor[B, 3, H, W]` in 0..1 -> raw maps per level, `Tensor[B, A, H_l, W_l, 5+C]`."""
        out = []
        for feat, head, a in zip(self._features(x), self.heads, self.num_anchors, strict=True):
            p = head(feat)  # [B, A*(5+C), H, W]
            b, _, h, w = p.shape
            out.append(p.view(b, a, self.num_outputs, h, w).permute(0, 1, 3, 4, 2).contiguous())
        return out

    def decode(self, raw: list[Tensor], input_hw: tuple[int, int] | torch.Size) -> Tensor:
        """Raw maps -> `Tensor[B, N, 5+C]`: (x1, y1, x2, y2) input pixels, obj prob, class probs.

        N = sum over levels of A * H_l * W_l, in level, anchor, row, column order (so row n of
        level l is `raw[l].flatten(1, 3)[:, n - offset_l]`).
        """
        hw = (input_hw[0], input_hw[1])  # not int(): a trace keeps them symbolic
        outs = []
        for i, p in enumerate(raw):
            d = decode_level(p, self.anchor_pixels[i], hw, self.cfg.xy_scale)  # [B,A,H,W,5+C]
            d = torch.cat((cxcywh_to_xyxy(d[..., :4]), d[..., 4:]), -1)
            outs.append(d.flatten(1, 3))  # [B, A*H*W, 5+C]
        return torch.cat(outs, 1)

    def predict(self, x: Tensor) -> Tensor:
        """`Tensor[B, 3, H, W]` in 0..1 -> decoded `Tensor[B, N, 5+C]` (see `decode`)."""
        return self.decode(self.forward(x), x.shape[-2:])

    def fuse(self) -> Detector:
        """Fold every BatchNorm into its conv for faster inference (call after `eval()`)."""
        for m in self.modules():
            if m is not self and callable(getattr(m, "fuse", None)):
                m.fuse()  # Conv, and EfficientNet's ConvBN
        return self

    @torch.no_grad()
    def init_biases(self) -> None:
        """Start stable, as YOLOv5 does: few objects per cell, uniform-ish class probabilities.

        Objectness prior log(8 / (640 / stride)^2) (YOLOv5's: about 8 objects per 640x640 image
        over the cells of a level; -3.9 at stride 32, -6.7 at stride 8); class prior
        0.6 / (C - 0.99). Box terms start at 0 (cell centre, anchor size).
        """
        c = self.cfg.num_classes
        for head, s, a in zip(self.heads, self.strides, self.num_anchors, strict=True):
            bias = torch.zeros(a, self.num_outputs)  # [A, 5+C]
            bias[:, 4] = math.log(8 / (640 / s) ** 2)
            bias[:, 5:] = math.log(0.6 / max(c - 0.99, 0.01))
            set_head_bias(head, bias)


def head_bias(head: nn.Module, num_anchors: int) -> Tensor:
    """The output biases of a head as `Tensor[A, 5 + C]` (a copy), whatever its layout."""
    if isinstance(head, nn.Conv2d):
        return head.bias.detach().clone().view(num_anchors, -1)
    return head.bias_table()


def set_head_bias(head: nn.Module, bias: Tensor) -> None:
    """Set the output biases of a head from `Tensor[A, 5 + C]`."""
    if isinstance(head, nn.Conv2d):
        head.bias.copy_(bias.flatten())
    else:
        head.set_bias_table(bias)


def count_parameters(model: nn.Module) -> tuple[int, int, int]:
    """(total, trainable, BN running statistics) as darknet/Keras count them.

    total = trainable parameters + BatchNorm running_mean/running_var elements (the "non-trainable"
    parameters); num_batches_tracked counters are not parameters and are left out.
    """
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    frozen = sum(p.numel() for p in model.parameters() if not p.requires_grad)
    stats = sum(
        b.numel() for n, b in model.named_buffers() if n.endswith(("running_mean", "running_var"))
    )
    return trainable + frozen + stats, trainable, stats


def gflops(model: nn.Module, imgsz: int | tuple[int, int]) -> float:
    """Forward GFLOPs for one `imgsz` image, counted by torch.utils.flop_counter.FlopCounterMode.

    That counts convolutions and matmuls at 2 FLOPs per multiply-add (GFLOPs = 2 * GMACs, as
    ultralytics reports); BatchNorm, activations, pooling and the decode are not counted. Runs on
    the meta device (shapes only), so it is instant even for YOLOv2 at 608.
    """
    h, w = (imgsz, imgsz) if isinstance(imgsz, int) else imgsz
    meta = _meta_copy(model)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        meta(torch.empty(1, 3, h, w, device="meta"))
    return counter.get_total_flops() / 1e9


def _meta_copy(model: nn.Module) -> nn.Module:
    with torch.device("meta"):
        clone = copy.deepcopy(model).to("meta")
    return clone.eval()


def layer_table(model: nn.Module, imgsz: int) -> list[tuple[int, str, str, str, str, str]]:
    """Rows (index, layer, filters, size/stride, input, output) at `imgsz` x `imgsz`.

    Uses the neck's own `layer_table` when it has one (YOLOv2's darknet table), else records the
    convolutions, pools and upsamples in execution order with forward hooks (meta device).
    """
    custom = getattr(getattr(model, "neck", None), "layer_table", None)
    if custom is not None:  # YOLOv2's darknet table
        return custom(imgsz, model.num_anchors[0] * model.num_outputs)
    meta = _meta_copy(model)
    rows: list[tuple[int, str, str, str, str, str]] = []

    def fmt(t: Tensor) -> str:
        return f"{t.shape[2]} x {t.shape[3]} x {t.shape[1]}"

    def hook(mod: nn.Module, args: tuple, out: Tensor) -> None:
        if isinstance(mod, nn.Conv2d):
            k, s = mod.kernel_size[0], mod.stride[0]
            kind, filters, ks = "conv", str(mod.out_channels), f"{k} x {k} / {s}"
        elif isinstance(mod, nn.MaxPool2d):
            kind, filters, ks = "max", "", f"{mod.kernel_size} x {mod.kernel_size} / {mod.stride}"
        else:
            kind, filters, ks = "upsample", "", f"x {int(mod.scale_factor)}"
        rows.append((len(rows), kind, filters, ks, fmt(args[0]), fmt(out)))

    for mod in meta.modules():
        if isinstance(mod, (nn.Conv2d, nn.MaxPool2d, nn.Upsample)):
            mod.register_forward_hook(hook)
    with torch.no_grad():
        meta(torch.empty(1, 3, imgsz, imgsz, device="meta"))
    return rows


def output_shapes(model: nn.Module, imgsz: int) -> list[tuple[int, int, int, int]]:
    """Raw output per level at `imgsz` as (H, W, A, 5 + C), computed on the meta device."""
    meta = _meta_copy(model)
    with torch.no_grad():
        raw = meta(torch.empty(1, 3, imgsz, imgsz, device="meta"))
    return [(p.shape[2], p.shape[3], p.shape[1], p.shape[4]) for p in raw]
