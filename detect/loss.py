"""The YOLO training loss: target assignment, CIoU box loss, objectness and class BCE.

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

from detect.boxes import box_iou
from detect.models.common import cxcywh_to_xyxy, decode_level, make_grid


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


@dataclass
class LevelTargets:
    """Assigned positives of one output level; K rows, one per (ground truth, anchor) pair."""

    b: Tensor  # int64 [K] image index in the batch
    a: Tensor  # int64 [K] anchor index within the level
    gy: Tensor  # int64 [K] grid row
    gx: Tensor  # int64 [K] grid column
    box: Tensor  # float [K, 4] target box (x1, y1, x2, y2) input pixels
    cls: Tensor  # int64 [K] class
    gt: Tensor  # int64 [K] row of the target in `targets`


def shape_iou(wh1: Tensor, wh2: Tensor) -> Tensor:
    """IoU of boxes aligned on a common centre: `Tensor[N, 2]` x `Tensor[M, 2]` (w, h) -> [N, M]."""
    inter = torch.min(wh1[:, None], wh2[None]).prod(-1)  # [N,M]
    return inter / (wh1.prod(-1)[:, None] + wh2.prod(-1)[None] - inter).clamp(min=1e-9)


def assign_targets(
    targets: Tensor,
    anchors: Tensor,
    grid_hw: list[tuple[int, int]],
    input_hw: tuple[int, int],
    anchor_iou: float | None = None,
    anchor_ratio: float | None = None,
    xy_scale: float = 1.0,
) -> list[LevelTargets]:
    """YOLOv2 assignment of ground-truth boxes to (level, anchor, cell).

    Args:
        targets: `Tensor[T, 6]` (batch_index, class, x1, y1, x2, y2) input pixels.
        anchors: `Tensor[L, A, 2]` (w, h) as fractions of the input side.
        grid_hw: (H_l, W_l) of every level's output map.
        input_hw: (height, width) of the network input.
        anchor_iou: besides the best anchor, also every anchor with shape IoU above this.
        anchor_ratio: ... and every anchor whose side ratios to the box are all below this.
        xy_scale: the decode's centre-offset stretch; > 1 adds the neighbour cells it can reach.

    Returns:
        One LevelTargets per level.
    """
    L, A = anchors.shape[:2]
    in_h, in_w = input_hw
    dev = targets.device
    side = float(max(in_w, in_h))  # anchors are fractions of the long side, as decode_level
    anchor_wh = anchors.to(dev).float().reshape(L * A, 2) * side  # [L*A,2] pixels
    boxes = targets[:, 2:6].float()  # [T,4]
    wh = (boxes[:, 2:] - boxes[:, :2]).clamp(min=0)  # [T,2]
    ctr = (boxes[:, :2] + boxes[:, 2:]) / 2  # [T,2]
    ious = shape_iou(wh, anchor_wh)  # [T,L*A]
    best = torch.zeros_like(ious, dtype=torch.bool)
    if len(targets):
        best[torch.arange(len(targets), device=dev), ious.argmax(1)] = True
    if anchor_iou is not None:
        best |= ious > anchor_iou
    if anchor_ratio is not None:
        r = wh[:, None] / anchor_wh[None].clamp(min=1e-9)  # [T,L*A,2]
        best |= torch.max(r, 1 / r.clamp(min=1e-9)).amax(-1) < anchor_ratio
    t_idx, k_idx = best.nonzero(as_tuple=True)  # [K], [K] pairs (target, flat anchor)
    reach = (xy_scale - 1.0) / 2  # how far past its edges a cell's offset can place a centre
    out = []
    for level, (gh, gw) in enumerate(grid_hw):
        keep = (k_idx // A) == level
        t, a = t_idx[keep], k_idx[keep] % A
        c = ctr[t] / torch.tensor([in_w / gw, in_h / gh], device=dev)  # [K,2] grid units
        gx = c[:, 0].long().clamp(0, gw - 1)
        gy = c[:, 1].long().clamp(0, gh - 1)
        if reach > 0:
            fx, fy = c[:, 0] - gx, c[:, 1] - gy  # [K] position inside the cell
            moves = [  # (dx, dy, the neighbour cell exists and its offset reaches the centre)
                (-1, 0, (fx < reach) & (gx > 0)),
                (1, 0, (fx > 1 - reach) & (gx < gw - 1)),
                (0, -1, (fy < reach) & (gy > 0)),
                (0, 1, (fy > 1 - reach) & (gy < gh - 1)),
            ]
            parts = [(t, a, gx, gy)] + [
                (t[ok], a[ok], gx[ok] + dx, gy[ok] + dy) for dx, dy, ok in moves
            ]
            t, a, gx, gy = (torch.cat(z) for z in zip(*parts, strict=True))
        out.append(
            LevelTargets(
                b=targets[t, 0].long(),
                a=a,
                gy=gy,
                gx=gx,
                box=boxes[t],
                cls=targets[t, 1].long(),
                gt=t,
            )
        )
    return out


def _class_targets(cls: Tensor, nc: int, eps: float) -> Tensor:
    """One-hot targets `Tensor[K, C]` for classes `Tensor[K]`, smoothed to eps/2 .. 1 - eps/2."""
    t = torch.full((len(cls), nc), eps / 2, device=cls.device)
    t[torch.arange(len(cls), device=cls.device), cls] = 1.0 - eps / 2
    return t


def bbox_ciou(b1: Tensor, b2: Tensor, eps: float = 1e-7) -> Tensor:
    """Complete IoU of matched boxes `Tensor[N, 4]` and `Tensor[N, 4]` in (x1, y1, x2, y2) -> [N].

    CIoU = IoU - centre distance^2 / enclosing diagonal^2 - alpha * v (aspect-ratio term); the
    loss is 1 - CIoU (torchvision.ops.complete_box_iou_loss computes the same).
    """
    w1, h1 = b1[:, 2] - b1[:, 0], b1[:, 3] - b1[:, 1]
    w2, h2 = b2[:, 2] - b2[:, 0], b2[:, 3] - b2[:, 1]
    iw = (torch.min(b1[:, 2], b2[:, 2]) - torch.max(b1[:, 0], b2[:, 0])).clamp(min=0)
    ih = (torch.min(b1[:, 3], b2[:, 3]) - torch.max(b1[:, 1], b2[:, 1])).clamp(min=0)
    inter = iw * ih
    union = w1 * h1 + w2 * h2 - inter + eps
    iou = inter / union
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


def pad_targets(targets: Tensor, batch: int) -> tuple[Tensor, Tensor, Tensor]:
    """Group the targets by image, padded to G = the most boxes in one image.

    Returns:
        boxes `Tensor[B, G, 4]` (x1, y1, x2, y2; padding is all zeros, which overlaps nothing),
        classes `Tensor[B, G]` int64 (padding 0) and valid `Tensor[B, G]` bool.
    """
    dev = targets.device
    bi = targets[:, 0].long()
    counts = torch.bincount(bi, minlength=batch)  # [B]
    g = int(counts.max()) if len(targets) else 0
    order = torch.argsort(bi, stable=True)
    bi_sorted = bi[order]
    start = torch.cumsum(counts, 0) - counts  # [B]
    slot = torch.arange(len(targets), device=dev) - start[bi_sorted]  # [T] rank in its image
    boxes = torch.zeros(batch, g, 4, device=dev)
    classes = torch.zeros(batch, g, dtype=torch.int64, device=dev)
    valid = torch.zeros(batch, g, dtype=torch.bool, device=dev)
    boxes[bi_sorted, slot] = targets[order, 2:6].float()
    classes[bi_sorted, slot] = targets[order, 1].long()
    valid[bi_sorted, slot] = True
    return boxes, classes, valid


def _ignore_mask(pred_xyxy: Tensor, targets: Tensor, batch: int, thr: float) -> Tensor:
    """`Tensor[B, N]` bool: prediction overlaps some GT of its own image with IoU > thr.

    pred_xyxy: `Tensor[B, N, 4]`.
    """
    if len(targets) == 0:
        return torch.zeros(pred_xyxy.shape[:2], dtype=torch.bool, device=pred_xyxy.device)
    gt, _, _ = pad_targets(targets, batch)
    return (box_iou(pred_xyxy, gt.to(pred_xyxy)) > thr).any(-1)


def reach_regions(
    grid_hw: list[tuple[int, int]],
    num_anchors: list[int],
    input_hw: tuple[int, int],
    xy_scale: float,
    device: torch.device | str = "cpu",
) -> Tensor:
    """Where each prediction's decoded centre can land: `Tensor[N, 4]` (x1, y1, x2, y2) pixels.

    Rows follow the flattened (level, anchor, row, column) order of the raw outputs. A cell's
    sigmoid offset spans the cell widened by (xy_scale - 1) / 2 cell on every side.
    """
    reach = (xy_scale - 1.0) / 2
    in_h, in_w = input_hw
    out = []
    for (gh, gw), a in zip(grid_hw, num_anchors, strict=True):
        sx, sy = in_w / gw, in_h / gh
        gx, gy = make_grid(gh, gw, torch.empty(0, device=device)).unbind(-1)  # [H,W] each
        cell = torch.stack(
            ((gx - reach) * sx, (gy - reach) * sy, (gx + 1 + reach) * sx, (gy + 1 + reach) * sy), -1
        ).reshape(-1, 4)  # [H*W,4]
        out.append(cell.repeat(a, 1))  # [A*H*W,4]
    return torch.cat(out)


@torch.no_grad()
def task_aligned_assign(
    pred_xyxy: Tensor,
    pred_scores: Tensor,
    regions: Tensor,
    gt_boxes: Tensor,
    gt_classes: Tensor,
    gt_valid: Tensor,
    topk: int = 10,
    alpha: float = 0.5,
    beta: float = 6.0,
) -> tuple[Tensor, Tensor, Tensor]:
    """Task-aligned assignment (TOOD / YOLOv8) over anchor-based predictions.

    A ground truth's candidates are the predictions whose cell can reach its centre (any anchor,
    any level); of those it takes the `topk` with the best alignment `score^alpha * IoU^beta`,
    where `score` is the predicted confidence of its class and IoU that of the decoded box (a
    zero alignment, no overlap, is never a positive). A prediction picked by several ground
    truths keeps the one it overlaps most. The quality
    target of a positive is its alignment rescaled so that each ground truth's best positive
    gets that ground truth's best IoU (YOLOv8's normalisation).

    Args:
        pred_xyxy: `Tensor[B, N, 4]` decoded boxes (x1, y1, x2, y2), input pixels.
        pred_scores: `Tensor[B, N, C]` confidences in 0..1 (objectness x class probability).
        regions: `Tensor[N, 4]` where each prediction's centre can land (`reach_regions`).
        gt_boxes, gt_classes, gt_valid: `Tensor[B, G, 4]`, `[B, G]`, `[B, G]` (`pad_targets`).
        topk, alpha, beta: as above.

    Returns:
        fg `Tensor[B, N]` bool (positives), gt_index `Tensor[B, N]` int64 (its ground truth,
        0 for negatives) and quality `Tensor[B, N]` float (0 for negatives).
    """
    b, n = pred_xyxy.shape[:2]
    g = gt_boxes.shape[1]
    if g == 0:
        zeros = torch.zeros(b, n, device=pred_xyxy.device)
        return zeros.bool(), zeros.long(), zeros
    ctr = (gt_boxes[..., :2] + gt_boxes[..., 2:]) / 2  # [B,G,2]
    r = regions[None, None]  # [1,1,N,4]
    cand = (
        (ctr[..., 0, None] >= r[..., 0])
        & (ctr[..., 0, None] < r[..., 2])
        & (ctr[..., 1, None] >= r[..., 1])
        & (ctr[..., 1, None] < r[..., 3])
        & gt_valid[..., None]
    )  # [B,G,N]
    iou = box_iou(gt_boxes, pred_xyxy.float())  # [B,G,N]
    score = pred_scores.float().transpose(1, 2).gather(1, gt_classes[..., None].expand(-1, -1, n))
    align = score.pow(alpha) * iou.pow(beta) * cand  # [B,G,N]
    top = align.topk(min(topk, n), dim=-1).indices  # [B,G,k]
    pos = torch.zeros_like(cand).scatter_(-1, top, True) & (align > 0)  # [B,G,N]
    # a prediction claimed by several ground truths keeps the one it overlaps most
    many = pos.sum(1, keepdim=True) > 1  # [B,1,N]
    best = torch.where(pos, iou, -1.0).argmax(1, keepdim=True)  # [B,1,N]
    pos = torch.where(many, torch.zeros_like(pos).scatter_(1, best, True), pos)
    fg = pos.any(1)  # [B,N]
    gt_index = pos.float().argmax(1)  # [B,N]
    align = align * pos
    max_align = align.amax(-1, keepdim=True)  # [B,G,1]
    max_iou = (iou * pos).amax(-1, keepdim=True)  # [B,G,1]
    quality = (align * max_iou / (max_align + 1e-9)).amax(1)  # [B,N]
    return fg, gt_index, quality


def yolo_loss(
    raw: list[Tensor],
    targets: Tensor,
    anchors: Tensor,
    input_hw: tuple[int, int],
    cfg: LossConfig | None = None,
    xy_scale: float = 1.0,
) -> tuple[Tensor, Tensor]:
    """Total loss of a batch and its detached terms.

    Args:
        raw: per level `Tensor[B, A, H, W, 5 + C]` raw model output.
        targets: `Tensor[T, 6]` (batch_index, class, x1, y1, x2, y2) input pixels.
        anchors: `Tensor[L, A, 2]` (w, h) fractions of the input side (the model's `anchors`).
        input_hw: (height, width) of the network input.
        cfg: gains and assignment thresholds (defaults: LossConfig()).
        xy_scale: the model's centre-offset stretch (`ModelConfig.xy_scale`).

    Returns:
        (loss, items): a scalar to backpropagate (already multiplied by the batch size, as
        YOLOv5 does, so the learning rate does not depend on it) and `Tensor[3]`
        (box, obj, cls) detached, per image.
    """
    cfg = cfg or LossConfig()
    if cfg.assigner == "tal":
        return _tal_loss(raw, targets, anchors, input_hw, cfg, xy_scale)
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
            weight = ~_ignore_mask(pbox.detach().flatten(1, 3), targets, batch, cfg.ignore_iou)
            weight = weight.view(p.shape[:4]).float()  # [B,A,H,W]
        if len(t.b):
            ciou = bbox_ciou(pbox[t.b, t.a, t.gy, t.gx], t.box)  # [K]
            lbox = lbox + (1.0 - ciou).mean()
            # IoU-aware objectness (YOLOv2 "rescore"): the score ranks boxes by quality too.
            tobj[t.b, t.a, t.gy, t.gx] = ciou.detach().clamp(min=0)
            weight[t.b, t.a, t.gy, t.gx] = 1.0
            if nc > 1:
                logits = p[t.b, t.a, t.gy, t.gx, 5:]  # [K,C]
                tcls = _class_targets(t.cls, nc, cfg.label_smoothing)
                lcls = lcls + F.binary_cross_entropy_with_logits(logits, tcls)
        bce = F.binary_cross_entropy_with_logits(p[..., 4], tobj, reduction="none")
        lobj = lobj + (bce * weight).mean() * balance[level]
    # YOLOv5's scaling with the number of levels, classes and input size.
    s = 3.0 / nl
    lbox = lbox * cfg.box * s
    lcls = lcls * cfg.cls * ((nc / 80) if cfg.cls_nc_scale else 1.0) * s
    lobj = lobj * cfg.obj * ((input_hw[0] * input_hw[1]) / 640**2) * s
    items = torch.stack((lbox, lobj, lcls)).detach()
    return (lbox + lobj + lcls) * batch, items


def _tal_loss(
    raw: list[Tensor],
    targets: Tensor,
    anchors: Tensor,
    input_hw: tuple[int, int],
    cfg: LossConfig,
    xy_scale: float,
) -> tuple[Tensor, Tensor]:
    """`yolo_loss` with task-aligned assignment: same arguments and returns.

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
            tcls = _class_targets(gt_cls[bi, g], nc, cfg.label_smoothing)
            bce = F.binary_cross_entropy_with_logits(pcls[bi, ni], tcls, reduction="none")
            lcls = (bce.sum(-1) * w).sum() / norm
    lbox, lobj, lcls = lbox * cfg.tal_box, lobj * cfg.tal_obj, lcls * cfg.tal_cls
    items = torch.stack((lbox, lobj, lcls)).detach()
    return (lbox + lobj + lcls) * batch, items
