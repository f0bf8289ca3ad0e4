"""The training loss: target assignment, CIoU, ignore rule, gradients, overfitting one image."""

from __future__ import annotations

import math

import pytest
import torch
import torchvision

from detect.loss import LossConfig, assign_targets, bbox_ciou, shape_iou, yolo_loss

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
    loss, items = yolo_loss(raw, t, ANCHORS, HW, LossConfig(anchor_iou=None, anchor_ratio=None))
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
    loss, items = yolo_loss(raw, torch.zeros(0, 6), ANCHORS, HW)
    loss.backward()
    assert items[0] == 0 and items[2] == 0 and items[1] > 0
    assert all(r.grad[..., :4].abs().sum() == 0 for r in raw)


@pytest.mark.parametrize("seed", [0])
def test_overfit_one_image(seed):
    from detect.models import ModelConfig, build_model

    torch.manual_seed(seed)
    model = build_model(ModelConfig(arch="tiny", num_classes=3, imgsz=64, width=0.25))
    model.train()
    x = torch.rand(1, 3, 64, 64)
    t = torch.tensor([[0, 1, 8, 10, 30, 40], [0, 2, 34, 20, 60, 44]], dtype=torch.float32)
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    losses = []
    for _ in range(60):
        loss, _ = yolo_loss(model(x), t, model.anchors, (64, 64))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.1 * losses[0]
    # The box terms are essentially solved: the assigned predictions sit on the boxes.
    raw = model(x)
    pred = model.decode(raw, (64, 64))[0]  # [N,5+C]
    best = []
    for box, c in zip(t[:, 2:], t[:, 1].long(), strict=True):
        iou = torchvision.ops.box_iou(box[None], pred[:, :4])[0]
        score = pred[:, 4] * pred[:, 5 + c]
        best.append(iou[score.argmax()].item())
    assert min(best) > 0.7, best
