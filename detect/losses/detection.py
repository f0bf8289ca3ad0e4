"""The detector's training loss: CIoU box loss, objectness and class BCE on assigned targets.

Targets are `Tensor[T, 6]` rows `(batch_index, class, x1, y1, x2, y2)` in input (letterboxed)
pixels, as `detect.data.collate_fn` returns them. Raw model output per level is
`Tensor[B, A, H, W, 5 + C]` (tx, ty, tw, th, objectness logit, class logits), decoded with the
model's own `decode_level`, so training and prediction share one decode.

Two assignments, one decode (`LossConfig.assigner`):

Task-aligned ("tal", the default; TOOD, YOLOv8): the positives of a ground truth are chosen by
how well the current predictions already fit it, among those whose cell can reach its centre:
the top 10 by score^0.5 * IoU^6. Objectness learns that alignment (rescaled to the box's best
IoU) as a quality target over all predictions, so `obj x class` ranks boxes by fit; box and class
terms are weighted by it. It learned far faster than the static rule below (+49% val mAP50-95 in
a 15-minute A/B, bench/README.md): positives follow the predictions instead of fixed anchors.

Static (YOLOv2, "yolov2"): each ground-truth box goes to the cell holding its centre, at the anchor
whose shape (w, h, centred) has the best IoU with the box, searched over all levels; optionally
also to every other anchor whose shape IoU exceeds `LossConfig.anchor_iou` or whose side ratios
to the box are all below `LossConfig.anchor_ratio` (YOLOv5's rule): more positives per box.
Predictions that are not assigned but whose decoded box already overlaps a ground truth above
`LossConfig.ignore_iou` get no objectness loss (YOLOv2's ignore rule), so the model is not
punished for good duplicates that NMS removes anyway. When the model's decode stretches the
centre offset (`ModelConfig.xy_scale` s > 1), a neighbouring cell whose offset range reaches
the box centre (within (s - 1) / 2 cell of the shared edge) is a positive too: with s = 2 every
box trains three cells per anchor instead of one, as in YOLOv5.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor

from detect.errors import DetectError
from detect.iou import inter_union
from detect.losses.assign import (
    assign_targets,
    ignore_mask,
    pad_targets,
    reach_regions,
    task_aligned_assign,
)
from detect.models.common import cxcywh_to_xyxy, decode_level
from detect.settings import Assigner

LossTerms = dict[str, Tensor]  # named terms, detached, per image: "box", "obj", "cls"


@dataclass
class LossConfig:
    """Loss weights and assignment thresholds (YOLOv5's gains, proven on COCO and small sets)."""

    box: float = 0.05  # CIoU term gain
    obj: float = 1.0  # objectness BCE gain
    cls: float = 0.5  # class BCE gain
    balance: list[float] = field(default_factory=lambda: [4.0, 1.0, 0.4])  # obj gain per level,
    # finest first: fine grids have many more (mostly empty) cells, so their mean is smaller
    ignore_iou: float = 0.6  # unassigned predictions overlapping a GT above this: no obj loss
    anchor_iou: float | None = 0.3  # also assign anchors with shape IoU above this (None: best)
    anchor_ratio: float | None = 4.0  # also assign anchors whose w and h ratios to the box are
    # all below this (YOLOv5's rule): more positives per box, measured faster to learn
    cls_nc_scale: bool = False  # scale the class gain by C / 80 (YOLOv5) or not (YOLOv8; with
    # 6 classes YOLOv5's scaling made the class term 13x weaker and classes learned slower)
    label_smoothing: float = 0.0  # class targets eps/2 .. 1 - eps/2
    assigner: str = "tal"  # "tal" (task-aligned, below) | "yolov2" (static, by anchor shape;
    # ignore_iou, anchor_iou, anchor_ratio, box, obj, cls, balance apply to it only)
    tal_topk: int = 10  # TAL: positives per ground truth (YOLOv8's)
    tal_alpha: float = 0.5  # TAL: alignment = score^alpha * IoU^beta (YOLOv8's)
    tal_beta: float = 6.0
    tal_box: float = 7.5  # TAL gains (YOLOv8's box and cls gains; every term is a sum over the
    tal_obj: float = 0.5  # batch divided by the sum of the quality targets, as YOLOv8)
    tal_cls: float = 0.5


def class_targets(cls: Tensor, nc: int, eps: float) -> Tensor:
    """One-hot targets `Tensor[K, C]` for classes `Tensor[K]`, smoothed to eps/2 .. 1 - eps/2."""
    t = torch.full((len(cls), nc), eps / 2, device=cls.device)
    t[torch.arange(len(cls), device=cls.device), cls] = 1.0 - eps / 2
    return t


def bbox_ciou(b1: Tensor, b2: Tensor, eps: float = 1e-7) -> Tensor:
    """Complete IoU of matched boxes `Tensor[N, 4]` and `Tensor[N, 4]` in (x1, y1, x2, y2) -> [N].

    CIoU = IoU - centre distance^2 / enclosing diagonal^2 - alpha * v (aspect-ratio term; Zheng
    et al. 2020); the loss is 1 - CIoU (torchvision.ops.complete_box_iou_loss computes the same).
    """
    w1, h1 = b1[:, 2] - b1[:, 0], b1[:, 3] - b1[:, 1]
    w2, h2 = b2[:, 2] - b2[:, 0], b2[:, 3] - b2[:, 1]
    inter, union = inter_union(b1, b2)
    iou = inter / (union + eps)
    cw = torch.max(b1[:, 2], b2[:, 2]) - torch.min(b1[:, 0], b2[:, 0])  # enclosing box
    ch = torch.max(b1[:, 3], b2[:, 3]) - torch.min(b1[:, 1], b2[:, 1])
    c2 = cw**2 + ch**2 + eps
    rho2 = (
        (b1[:, 0] + b1[:, 2] - b2[:, 0] - b2[:, 2]) ** 2
        + (b1[:, 1] + b1[:, 3] - b2[:, 1] - b2[:, 3]) ** 2
    ) / 4
    v = (4 / math.pi**2) * (torch.atan(w2 / (h2 + eps)) - torch.atan(w1 / (h1 + eps))) ** 2
    with torch.no_grad():
        alpha = v / (v - iou + (1 + eps))
    return iou - rho2 / c2 - alpha * v


class DetectionLoss:
    """The detector's loss for a batch: `loss(raw, targets, anchors, input_hw, xy_scale)`.

    Built with its settings (`LossConfig`, whose `assigner` picks task-aligned or YOLOv2
    assignment); the detector task receives one through its constructor, so a test can hand
    it any other callable of the same signature.
    """

    def __init__(self, cfg: LossConfig | None = None) -> None:
        self.cfg = cfg or LossConfig()
        if self.cfg.assigner not in tuple(Assigner):
            raise DetectError(f"unknown assigner {self.cfg.assigner!r} (use tal or yolov2)")

    def __call__(
        self,
        raw: list[Tensor],
        targets: Tensor,
        anchors: Tensor,
        input_hw: tuple[int, int],
        xy_scale: float = 1.0,
    ) -> tuple[Tensor, LossTerms]:
        """Total loss of a batch and its named terms.

        Args:
            raw: per level `Tensor[B, A, H, W, 5 + C]` raw model output.
            targets: `Tensor[T, 6]` (batch_index, class, x1, y1, x2, y2) input pixels.
            anchors: `Tensor[L, A, 2]` (w, h) fractions of the input side (the model's).
            input_hw: (height, width) of the network input.
            xy_scale: the model's centre-offset stretch (`ModelConfig.xy_scale`).

        Returns:
            (loss, terms): a scalar to backpropagate (already multiplied by the batch size, as
            YOLOv5 does, so the learning rate does not depend on it) and {"box", "obj", "cls"}
            scalar tensors, detached, per image.
        """
        if self.cfg.assigner == "tal":
            return _tal_loss(raw, targets, anchors, input_hw, self.cfg, xy_scale)
        return _yolov2_loss(raw, targets, anchors, input_hw, self.cfg, xy_scale)


def _terms(lbox: Tensor, lobj: Tensor, lcls: Tensor) -> LossTerms:
    return {"box": lbox.detach(), "obj": lobj.detach(), "cls": lcls.detach()}


def _yolov2_loss(
    raw: list[Tensor],
    targets: Tensor,
    anchors: Tensor,
    input_hw: tuple[int, int],
    cfg: LossConfig,
    xy_scale: float,
) -> tuple[Tensor, LossTerms]:
    """`DetectionLoss` with YOLOv2's static assignment and ignore rule: same arguments."""
    nl = len(raw)
    batch, nc = raw[0].shape[0], raw[0].shape[-1] - 5
    dev = raw[0].device
    targets = targets.to(dev)
    # Per-level balance: levels beyond the default three fall back to 1.
    balance = (cfg.balance + [1.0] * nl)[:nl] if nl == 3 else [1.0] * nl
    assigned = assign_targets(
        targets,
        anchors,
        [(p.shape[2], p.shape[3]) for p in raw],
        input_hw,
        cfg.anchor_iou,
        cfg.anchor_ratio,
        xy_scale,
    )
    lbox = torch.zeros((), device=dev)
    lobj = torch.zeros((), device=dev)
    lcls = torch.zeros((), device=dev)
    for level, (p, t) in enumerate(zip(raw, assigned, strict=True)):
        p = p.float()  # loss in fp32 under autocast
        d = decode_level(p, anchors[level], input_hw, xy_scale)  # [B,A,H,W,5+C]
        pbox = cxcywh_to_xyxy(d[..., :4])  # [B,A,H,W,4]
        tobj = torch.zeros(p.shape[:4], device=dev)  # [B,A,H,W]
        with torch.no_grad():
            weight = ~ignore_mask(pbox.detach().flatten(1, 3), targets, batch, cfg.ignore_iou)
            weight = weight.view(p.shape[:4]).float()  # [B,A,H,W]
        if len(t.b):
            ciou = bbox_ciou(pbox[t.b, t.a, t.gy, t.gx], t.box)  # [K]
            lbox = lbox + (1.0 - ciou).mean()
            # IoU-aware objectness (YOLOv2 "rescore"): the score ranks boxes by quality too.
            tobj[t.b, t.a, t.gy, t.gx] = ciou.detach().clamp(min=0)
            weight[t.b, t.a, t.gy, t.gx] = 1.0
            if nc > 1:
                logits = p[t.b, t.a, t.gy, t.gx, 5:]  # [K,C]
                tcls = class_targets(t.cls, nc, cfg.label_smoothing)
                lcls = lcls + F.binary_cross_entropy_with_logits(logits, tcls)
        bce = F.binary_cross_entropy_with_logits(p[..., 4], tobj, reduction="none")
        lobj = lobj + (bce * weight).mean() * balance[level]
    # YOLOv5's scaling with the number of levels, classes and input size.
    s = 3.0 / nl
    lbox = lbox * cfg.box * s
    lcls = lcls * cfg.cls * ((nc / 80) if cfg.cls_nc_scale else 1.0) * s
    lobj = lobj * cfg.obj * ((input_hw[0] * input_hw[1]) / 640**2) * s
    return (lbox + lobj + lcls) * batch, _terms(lbox, lobj, lcls)


def _tal_loss(
    raw: list[Tensor],
    targets: Tensor,
    anchors: Tensor,
    input_hw: tuple[int, int],
    cfg: LossConfig,
    xy_scale: float,
) -> tuple[Tensor, LossTerms]:
    """`DetectionLoss` with task-aligned assignment: same arguments and returns.

    Objectness learns the quality target of `task_aligned_assign` everywhere (0 off the
    positives, no ignore rule), so obj x class ranks boxes by how well they fit; box (1 - CIoU)
    and class BCE are weighted by that quality. Each term is summed over the batch and divided
    by the sum of the quality targets (YOLOv8's normalisation).
    """
    batch, nc = raw[0].shape[0], raw[0].shape[-1] - 5
    dev = raw[0].device
    targets = targets.to(dev)
    flat = []
    for level, p in enumerate(raw):
        d = decode_level(p.float(), anchors[level], input_hw, xy_scale)  # [B,A,H,W,5+C]
        flat.append(torch.cat((cxcywh_to_xyxy(d[..., :4]), p[..., 4:].float()), -1).flatten(1, 3))
    pred = torch.cat(flat, 1)  # [B,N,4+1+C] boxes decoded, obj and class still logits
    pbox, pobj, pcls = pred[..., :4], pred[..., 4], pred[..., 5:]
    regions = reach_regions(
        [(p.shape[2], p.shape[3]) for p in raw], [p.shape[1] for p in raw], input_hw, xy_scale, dev
    )
    gt_box, gt_cls, gt_valid = pad_targets(targets, batch)
    with torch.no_grad():
        # the confidence predict ranks by (with one class the class logit is not trained)
        scores = pobj.sigmoid()[..., None] * (pcls.sigmoid() if nc > 1 else 1.0)  # [B,N,C]
    fg, gi, quality = task_aligned_assign(
        pbox.detach(), scores, regions, gt_box, gt_cls, gt_valid,
        cfg.tal_topk, cfg.tal_alpha, cfg.tal_beta,
    )  # fmt: skip
    norm = quality.sum().clamp(min=1.0)
    lobj = F.binary_cross_entropy_with_logits(pobj, quality, reduction="sum") / norm
    lbox = torch.zeros((), device=dev)
    lcls = torch.zeros((), device=dev)
    if fg.any():
        bi, ni = fg.nonzero(as_tuple=True)  # [K]
        w = quality[bi, ni]  # [K]
        g = gi[bi, ni]
        ciou = bbox_ciou(pbox[bi, ni], gt_box[bi, g])
        lbox = ((1.0 - ciou) * w).sum() / norm
        if nc > 1:
            tcls = class_targets(gt_cls[bi, g], nc, cfg.label_smoothing)
            bce = F.binary_cross_entropy_with_logits(pcls[bi, ni], tcls, reduction="none")
            lcls = (bce.sum(-1) * w).sum() / norm
    lbox, lobj, lcls = lbox * cfg.tal_box, lobj * cfg.tal_obj, lcls * cfg.tal_cls
    return (lbox + lobj + lcls) * batch, _terms(lbox, lobj, lcls)
