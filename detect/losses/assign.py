"""Target assignment: which predictions learn which ground-truth box.

Targets are `Tensor[T, 6]` rows `(batch_index, class, x1, y1, x2, y2)` in input (letterboxed)
pixels, as `detect.data.collate_fn` returns them. Predictions follow the flattened (level,
anchor, row, column) order of the raw outputs `Tensor[B, A, H, W, 5 + C]`.

- `task_aligned_assign` (TOOD, Feng et al. 2021; YOLOv8): the positives of a ground truth are
  the predictions that already fit it best, among those whose cell can reach its centre
  (`reach_regions`).
- `assign_targets` (YOLOv2, Redmon and Farhadi 2017): the cell holding the box centre, at the
  anchor whose shape fits best (plus YOLOv5's extra anchors and neighbour cells when asked).
- `ignore_mask`: YOLOv2's rule that a good unassigned prediction is not punished.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from detect.boxes import box_iou
from detect.iou import shape_iou
from detect.models.common import make_grid


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


def ignore_mask(pred_xyxy: Tensor, targets: Tensor, batch: int, thr: float) -> Tensor:
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
