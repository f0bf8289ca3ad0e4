"""The training loss: target assignment, CIoU, ignore rule, gradients, overfitting one image."""

from __future__ import annotations

import math

import pytest
import torch
import torchvision

from detect.iou import shape_iou
from detect.losses import (
    DetectionLoss,
    LossConfig,
    assign_targets,
    bbox_ciou,
    reach_regions,
    task_aligned_assign,
)


def stacked_loss(raw, targets, anchors, input_hw, cfg=None, xy_scale=1.0):
    """The loss with its terms stacked as (box, obj, cls)."""
    loss, terms = DetectionLoss(cfg)(raw, targets, anchors, input_hw, xy_scale)
    return loss, torch.stack([terms["box"], terms["obj"], terms["cls"]])


# Two levels at a 64 px input: 8x8 (stride 8) and 4x4 (stride 16).
# Anchors in pixels: 6.4x6.4, 16x16 | 32x32, 51.2x25.6.
ANCHORS = torch.tensor([[[0.1, 0.1], [0.25, 0.25]], [[0.5, 0.5], [0.8, 0.4]]])
GRIDS = [(8, 8), (4, 4)]
HW = (64, 64)


pytestmark = pytest.mark.usefixtures("one_thread")


def _targets() -> torch.Tensor:
    return torch.tensor(
        [
            [1, 2, 20, 30, 36, 46],  # 16x16, centre (28, 38)
            [0, 4, 0, 10, 60, 34],  # 60x24, centre (30, 22)
        ],
        dtype=torch.float32,
    )


def _rows(levels) -> set[tuple]:
    return {
        (lvl, int(b), int(a), int(gy), int(gx), int(c), int(g))
        for lvl, t in enumerate(levels)
        for b, a, gy, gx, c, g in zip(t.b, t.a, t.gy, t.gx, t.cls, t.gt, strict=True)
    }


def test_assign_best_anchor_and_centre_cell_hand_computed():
    # Box 0: 16x16 is exactly anchor (level 0, a 1); centre (28, 38) / 8 -> column 3, row 4.
    # Box 1: 60x24: shape IoU 0.807 with 51.2x25.6 (level 1, a 1), 0.453 with 32x32 (level 1,
    # a 0); centre (30, 22) / 16 -> column 1, row 1.
    levels = assign_targets(_targets(), ANCHORS, GRIDS, HW, anchor_iou=None)
    assert _rows(levels) == {(0, 1, 1, 4, 3, 2, 0), (1, 0, 1, 1, 1, 4, 1)}
    assert torch.equal(levels[1].box, _targets()[1:, 2:])
    # With the extra-anchor rule (shape IoU > 0.3), box 1 also goes to (level 1, anchor 0).
    levels = assign_targets(_targets(), ANCHORS, GRIDS, HW, anchor_iou=0.3)
    assert _rows(levels) == {(0, 1, 1, 4, 3, 2, 0), (1, 0, 1, 1, 1, 4, 1), (1, 0, 0, 1, 1, 4, 1)}
    # YOLOv5's ratio rule (every side ratio < 4): box 0 (16x16) fits all four anchors
    # (largest ratio 51.2 / 16 = 3.2); box 1 (60x24) all but 6.4x6.4 (60 / 6.4 = 9.4).
    # Box 0's centre (28, 38) is cell (row 2, column 1) on the stride-16 grid; box 1's (30, 22)
    # is cell (row 2, column 3) on the stride-8 grid.
    levels = assign_targets(_targets(), ANCHORS, GRIDS, HW, anchor_ratio=4.0)
    assert _rows(levels) == {
        (0, 1, 0, 4, 3, 2, 0), (0, 1, 1, 4, 3, 2, 0), (1, 1, 0, 2, 1, 2, 0), (1, 1, 1, 2, 1, 2, 0),
        (0, 0, 1, 2, 3, 4, 1), (1, 0, 0, 1, 1, 4, 1), (1, 0, 1, 1, 1, 4, 1),
    }  # fmt: skip


def test_assign_neighbour_cells_hand_computed():
    # xy_scale 2: a cell's centre offset reaches half a cell past its edges, so the nearer
    # horizontal and vertical neighbours train too. Box 0: centre (28, 38) / 8 = (3.5, 4.75):
    # exactly mid-column (no horizontal neighbour), 0.75 down -> row 5. Box 1: (30, 22) / 16 =
    # (1.875, 1.375) -> column 2 and row 0.
    levels = assign_targets(_targets(), ANCHORS, GRIDS, HW, anchor_iou=None, xy_scale=2.0)
    assert _rows(levels) == {
        (0, 1, 1, 4, 3, 2, 0), (0, 1, 1, 5, 3, 2, 0),
        (1, 0, 1, 1, 1, 4, 1), (1, 0, 1, 1, 2, 4, 1), (1, 0, 1, 0, 1, 4, 1),
    }  # fmt: skip
    # xy_scale 1.5 reaches a quarter cell: only box 1's column 2 (0.875 > 0.75) qualifies.
    levels = assign_targets(_targets(), ANCHORS, GRIDS, HW, anchor_iou=None, xy_scale=1.5)
    assert _rows(levels) == {(0, 1, 1, 4, 3, 2, 0), (1, 0, 1, 1, 1, 4, 1), (1, 0, 1, 1, 2, 4, 1)}
    # Every assigned cell's decode range really contains the box centre.
    for lvl, t in enumerate(assign_targets(_targets(), ANCHORS, GRIDS, HW, xy_scale=2.0)):
        s = 64 / GRIDS[lvl][0]
        ctr = (t.box[:, :2] + t.box[:, 2:]) / 2 / s  # [K,2] grid units
        off = ctr - torch.stack((t.gx, t.gy), 1)
        assert bool(((off > -0.5) & (off < 1.5)).all())


def test_shape_iou_hand_computed():
    iou = shape_iou(torch.tensor([[60.0, 24.0]]), torch.tensor([[51.2, 25.6], [32.0, 32.0]]))
    inter = torch.tensor([51.2 * 24, 32 * 24])
    union = torch.tensor([60 * 24 + 51.2 * 25.6, 60 * 24 + 32 * 32]) - inter
    torch.testing.assert_close(iou[0], inter / union)


def test_assign_matches_brute_force_loop():
    g = torch.Generator().manual_seed(0)
    n = 40
    xy = torch.rand(n, 2, generator=g) * 60
    wh = torch.rand(n, 2, generator=g) * 50 + 1
    boxes = torch.cat((xy, (xy + wh).clamp(max=64)), 1)
    t = torch.cat((torch.randint(0, 3, (n, 1), generator=g), torch.randint(0, 5, (n, 1)), boxes), 1)
    got = _rows(assign_targets(t.float(), ANCHORS, GRIDS, HW, anchor_iou=None))
    want = set()
    flat = [(lvl, a, w * 64, h * 64) for lvl in range(2) for a, (w, h) in enumerate(ANCHORS[lvl])]
    for i, (b, c, x1, y1, x2, y2) in enumerate(t.tolist()):
        bw, bh = x2 - x1, y2 - y1
        ious = []
        for _, _, aw, ah in flat:
            inter = min(bw, aw) * min(bh, ah)
            ious.append(inter / (bw * bh + aw * ah - inter))
        lvl, a, _, _ = flat[max(range(len(flat)), key=lambda k: ious[k])]
        s = 64 / GRIDS[lvl][0]
        gx = min(int((x1 + x2) / 2 / s), GRIDS[lvl][1] - 1)
        gy = min(int((y1 + y2) / 2 / s), GRIDS[lvl][0] - 1)
        want.add((lvl, int(b), a, gy, gx, int(c), i))
    assert got == want


def test_ciou_matches_torchvision():
    g = torch.Generator().manual_seed(1)
    a = torch.rand(50, 2, generator=g) * 50
    b = torch.rand(50, 2, generator=g) * 50
    b1 = torch.cat((a, a + torch.rand(50, 2, generator=g) * 30 + 1), 1).double()
    b2 = torch.cat((b, b + torch.rand(50, 2, generator=g) * 30 + 1), 1).double()
    want = 1 - torchvision.ops.complete_box_iou_loss(b1, b2, reduction="none")
    torch.testing.assert_close(bbox_ciou(b1, b2), want, atol=1e-5, rtol=1e-5)
    assert torch.allclose(bbox_ciou(b1, b1), torch.ones(50, dtype=torch.float64), atol=1e-6)


def _raw(batch: int, nc: int, seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [
        (torch.randn(batch, 2, h, w, 5 + nc, generator=g) * 0.5).requires_grad_() for h, w in GRIDS
    ]


def _set_prediction(raw, level, b, a, gy, gx, box):
    """Make the raw output at one slot decode exactly to `box` (x1, y1, x2, y2)."""
    s = 64 / GRIDS[level][0]
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    w, h = box[2] - box[0], box[3] - box[1]
    fx, fy = cx / s - gx, cy / s - gy
    aw, ah = (ANCHORS[level, a] * 64).tolist()
    with torch.no_grad():
        raw[level][b, a, gy, gx, :4] = torch.tensor(
            [math.log(fx / (1 - fx)), math.log(fy / (1 - fy)), math.log(w / aw), math.log(h / ah)]
        )


def test_gradients_shapes_finite_and_ignore_rule():
    raw = _raw(2, 5)
    t = _targets()
    # Slot (level 0, image 1, anchor 0, row 4, column 3) is not assigned (box 0 took anchor 1)
    # but predicts box 0 almost exactly: the ignore rule gives it no objectness gradient.
    _set_prediction(raw, 0, 1, 0, 4, 3, [20.5, 30.5, 36.0, 46.0])
    # Slot (level 0, image 0, anchor 0, row 7, column 7) overlaps nothing: pushed towards 0.
    _set_prediction(raw, 0, 0, 0, 7, 7, [57.0, 57.0, 63.0, 63.0])
    cfg = LossConfig(assigner="yolov2", anchor_iou=None, anchor_ratio=None)
    loss, items = stacked_loss(raw, t, ANCHORS, HW, cfg)
    loss.backward()
    assert loss.ndim == 0 and items.shape == (3,) and torch.isfinite(items).all()
    for r in raw:
        assert r.grad is not None and r.grad.shape == r.shape and torch.isfinite(r.grad).all()
    assert raw[0].grad[1, 0, 4, 3, 4] == 0  # ignored
    assert raw[0].grad[0, 0, 7, 7, 4] > 0  # background: BCE pushes the logit down
    # Box and class gradients only where boxes are assigned.
    box_grad = raw[0].grad[..., :4].abs().sum(-1)  # [B,A,H,W]
    assert box_grad[1, 1, 4, 3] > 0
    box_grad[1, 1, 4, 3] = 0
    assert box_grad.sum() == 0
    cls_grad = raw[1].grad[..., 5:].abs().sum(-1)
    assert cls_grad[0, 1, 1, 1] > 0
    cls_grad[0, 1, 1, 1] = 0
    assert cls_grad.sum() == 0


def test_loss_without_targets_is_objectness_only():
    raw = _raw(2, 3)
    loss, items = stacked_loss(raw, torch.zeros(0, 6), ANCHORS, HW, LossConfig(assigner="yolov2"))
    loss.backward()
    assert items[0] == 0 and items[2] == 0 and items[1] > 0
    assert all(r.grad[..., :4].abs().sum() == 0 for r in raw)


@pytest.mark.parametrize("assigner", ["tal", "yolov2"])
def test_overfit_one_image(assigner, seed=0):
    from detect.models import ModelConfig, build_model

    torch.manual_seed(seed)
    model = build_model(ModelConfig(arch="tiny", num_classes=3, imgsz=64, width=0.25))
    model.train()
    x = torch.rand(1, 3, 64, 64)
    t = torch.tensor([[0, 1, 8, 10, 30, 40], [0, 2, 34, 20, 60, 44]], dtype=torch.float32)
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    losses = []
    for _ in range(60):
        loss, _ = stacked_loss(model(x), t, model.anchors, (64, 64), LossConfig(assigner=assigner))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    # TAL's objectness targets are soft (the IoU-scaled alignment): its BCE keeps an entropy floor
    assert losses[-1] < (0.1 if assigner == "yolov2" else 0.2) * losses[0]
    # The box terms are essentially solved: the assigned predictions sit on the boxes.
    raw = model(x)
    pred = model.decode(raw, (64, 64))[0]  # [N,5+C]
    best = []
    for box, c in zip(t[:, 2:], t[:, 1].long(), strict=True):
        iou = torchvision.ops.box_iou(box[None], pred[:, :4])[0]
        score = pred[:, 4] * pred[:, 5 + c]
        best.append(iou[score.argmax()].item())
    assert min(best) > 0.7, best


# ---------------------------------------------------------------- task-aligned assignment


def test_reach_regions_hand_computed():
    # 64 px input, one 2x2 level (stride 32) with two anchors; xy_scale 2 widens each cell by
    # half a cell on every side
    r = reach_regions([(2, 2)], [2], (64, 64), 2.0)
    assert r.shape == (8, 4)
    assert r[0].tolist() == [-16.0, -16.0, 48.0, 48.0]  # anchor 0, row 0, column 0
    assert r[1].tolist() == [16.0, -16.0, 80.0, 48.0]  # anchor 0, row 0, column 1
    assert r[2].tolist() == [-16.0, 16.0, 48.0, 80.0]  # anchor 0, row 1, column 0
    assert torch.equal(r[4:], r[:4])  # anchor 1: the same cells
    assert reach_regions([(2, 2)], [1], (64, 64), 1.0)[3].tolist() == [32.0, 32.0, 64.0, 64.0]


def _ref_tal(pred, scores, regions, gtb, gtc, valid, topk, alpha, beta):
    """Loop-by-loop TOOD/YOLOv8 assignment, written from the paper's description."""
    bsz, n = pred.shape[:2]
    fg = torch.zeros(bsz, n, dtype=torch.bool)
    gi = torch.zeros(bsz, n, dtype=torch.long)
    q = torch.zeros(bsz, n)
    for b in range(bsz):
        picked = {}  # prediction -> list of (gt, iou, align)
        for g in range(gtb.shape[1]):
            if not valid[b, g]:
                continue
            cx, cy = (gtb[b, g, 0] + gtb[b, g, 2]) / 2, (gtb[b, g, 1] + gtb[b, g, 3]) / 2
            rows = []
            for i in range(n):
                x1, y1, x2, y2 = regions[i].tolist()
                if not (x1 <= cx < x2 and y1 <= cy < y2):
                    continue
                iou = torchvision.ops.box_iou(gtb[b, g][None], pred[b, i][None])[0, 0].item()
                align = scores[b, i, gtc[b, g]].item() ** alpha * iou**beta
                if align > 0:
                    rows.append((align, i, iou))
            rows.sort(key=lambda r: -r[0])
            for align, i, iou in rows[:topk]:
                picked.setdefault(i, []).append((g, iou, align))
        owner = {i: max(c, key=lambda r: r[1]) for i, c in picked.items()}
        for g in range(gtb.shape[1]):
            mine = [(i, iou, al) for i, (gg, iou, al) in owner.items() if gg == g]
            if not mine:
                continue
            max_al, max_iou = max(r[2] for r in mine), max(r[1] for r in mine)
            for i, _, al in mine:
                fg[b, i], gi[b, i], q[b, i] = True, g, al * max_iou / (max_al + 1e-9)
    return fg, gi, q


@pytest.mark.parametrize("seed", range(4))
def test_task_aligned_assign_matches_loop_reference(seed):
    gen = torch.Generator().manual_seed(seed)
    regions = reach_regions(GRIDS, [2, 2], HW, 2.0)  # [160,4]
    n = len(regions)
    bsz, g = 2, 4
    xy = torch.rand(bsz, n, 2, generator=gen) * 56
    pred = torch.cat((xy, xy + 4 + torch.rand(bsz, n, 2, generator=gen) * 30), -1)
    scores = torch.rand(bsz, n, 3, generator=gen)
    gxy = torch.rand(bsz, g, 2, generator=gen) * 40
    gtb = torch.cat((gxy, gxy + 6 + torch.rand(bsz, g, 2, generator=gen) * 20), -1)
    gtc = torch.randint(0, 3, (bsz, g), generator=gen)
    valid = torch.tensor([[True, True, True, False], [True, True, True, True]])
    gtb[~valid] = 0
    for topk, beta in ((10, 6.0), (3, 1.0)):
        fg, gi, q = task_aligned_assign(pred, scores, regions, gtb, gtc, valid, topk, 0.5, beta)
        rfg, rgi, rq = _ref_tal(pred, scores, regions, gtb, gtc, valid, topk, 0.5, beta)
        assert torch.equal(fg, rfg)
        assert torch.equal(gi[fg], rgi[rfg])
        torch.testing.assert_close(q, rq, rtol=1e-4, atol=1e-6)
        assert fg.sum() > 0


def test_task_aligned_assign_hand_computed():
    # one 16x16 box centred at (28, 38) on the 8x8 level of the 64 px input, xy_scale 1: only
    # cell (row 4, column 3) can reach the centre, with both of its anchors
    regions = reach_regions([(8, 8)], [2], HW, 1.0)  # [128,4]
    pred = torch.zeros(1, 128, 4)
    pred[0, :] = torch.tensor([0.0, 0.0, 4.0, 4.0])
    a0, a1 = 4 * 8 + 3, 64 + 4 * 8 + 3
    pred[0, a0] = torch.tensor([20.0, 30.0, 36.0, 46.0])  # exact: IoU 1
    pred[0, a1] = torch.tensor([20.0, 30.0, 36.0, 38.0])  # half: IoU 0.5
    scores = torch.full((1, 128, 3), 0.25)
    gt = torch.tensor([[[20.0, 30.0, 36.0, 46.0]]])
    fg, gi, q = task_aligned_assign(
        pred, scores, regions, gt, torch.tensor([[2]]), torch.tensor([[True]]), 10, 0.5, 1.0
    )
    assert fg.nonzero()[:, 1].tolist() == [a0, a1]
    # alignments 0.5 * 1 and 0.5 * 0.5, rescaled so the best gets the best IoU (1)
    torch.testing.assert_close(q[0, [a0, a1]], torch.tensor([1.0, 0.5]))
    assert gi[0, a0] == 0 and q.sum().item() == pytest.approx(1.5)
    # with top-1 only the exact box is a positive
    fg1, _, _ = task_aligned_assign(
        pred, scores, regions, gt, torch.tensor([[2]]), torch.tensor([[True]]), 1, 0.5, 1.0
    )
    assert fg1.nonzero()[:, 1].tolist() == [a0]


def test_tal_loss_gradients_and_empty():
    cfg = LossConfig(assigner="tal")
    raw = _raw(2, 5)
    loss, items = stacked_loss(raw, _targets(), ANCHORS, HW, cfg, xy_scale=2.0)
    loss.backward()
    assert torch.isfinite(items).all() and (items > 0).all()
    for r in raw:
        assert torch.isfinite(r.grad).all()
    raw = _raw(2, 3)
    loss, items = stacked_loss(raw, torch.zeros(0, 6), ANCHORS, HW, cfg)
    loss.backward()
    assert items[0] == 0 and items[2] == 0 and items[1] > 0
    assert all(r.grad[..., :4].abs().sum() == 0 for r in raw)
