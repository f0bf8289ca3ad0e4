"""detect.boxes against torchvision.ops, a brute-force greedy reference and hand-computed IoU."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision
from hypothesis import given, settings
from hypothesis import strategies as st

from detect.boxes import batched_nms, box_area, box_convert, box_iou, nms, postprocess
from detect.errors import DetectError

# ---------------------------------------------------------------- brute-force references


def ref_iou(a, b) -> float:
    """IoU of two xyxy boxes, plain Python floats (0 when the union is empty)."""
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    area = lambda r: max(0.0, r[2] - r[0]) * max(0.0, r[3] - r[1])  # noqa: E731
    union = area(a) + area(b) - inter
    return inter / union if union > 0 else 0.0


def ref_batched_nms(boxes, scores, classes, thr) -> list[int]:
    """Seed algorithm: repeatedly keep the best remaining box (ties: lower index first) and drop
    same-class boxes overlapping it with IoU > thr. Returned by decreasing score.

    The IoU is computed in the boxes' own dtype, as torchvision's kernel does: an IoU of exactly
    1/3 is 0.33333334 in float32, which is above a threshold of 1/3 given as a Python float."""
    b = boxes.numpy()
    s, c = scores.tolist(), classes.tolist()
    area = np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)
    order = sorted(range(len(s)), key=lambda i: (-s[i], i))
    alive = np.ones(len(s), bool)
    keep = []
    for i in order:
        if not alive[i]:
            continue
        keep.append(i)
        alive[i] = False
        iw = np.clip(np.minimum(b[i, 2], b[:, 2]) - np.maximum(b[i, 0], b[:, 0]), 0, None)
        ih = np.clip(np.minimum(b[i, 3], b[:, 3]) - np.maximum(b[i, 1], b[:, 1]), 0, None)
        inter = iw * ih
        union = area[i] + area - inter
        iou = np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)
        # compared in float64, as C++ promotes the float IoU against the double threshold
        alive &= ~((np.asarray(c) == c[i]) & (iou.astype(np.float64) > thr))
    return keep


def random_case(gen: torch.Generator, n: int, num_classes: int, dtype=torch.float32):
    xy = torch.rand(n, 2, generator=gen) * 200
    wh = torch.rand(n, 2, generator=gen) * 60
    boxes = torch.cat((xy, xy + wh), 1).to(dtype)
    scores = torch.rand(n, generator=gen).to(dtype)
    classes = torch.randint(0, num_classes, (n,), generator=gen)
    return boxes, scores, classes


def assert_same_keep(boxes, scores, classes, thr):
    ours = batched_nms(boxes, scores, classes, thr)
    tv = torchvision.ops.batched_nms(boxes, scores, classes, thr)
    ref = ref_batched_nms(boxes, scores, classes, thr)
    assert ours.dtype == torch.int64
    assert ours.tolist() == tv.tolist()
    assert ours.tolist() == ref


# ---------------------------------------------------------------- conversions, area, IoU


def test_iou_hand_computed():
    a = torch.tensor([[0.0, 0.0, 10.0, 10.0], [5.0, 5.0, 15.0, 15.0]])
    b = torch.tensor([[0.0, 0.0, 10.0, 10.0], [5.0, 0.0, 15.0, 10.0], [20.0, 20.0, 30.0, 40.0]])
    # [0] vs [1]: inter 5*10=50, union 100+100-50 = 150; [1] vs [0]: inter 25, union 175;
    # [1] vs [1]: inter 10*5 = 50, union 150.
    want = torch.tensor([[1.0, 1 / 3, 0.0], [25 / 175, 1 / 3, 0.0]])
    torch.testing.assert_close(box_iou(a, b), want)
    torch.testing.assert_close(box_area(b), torch.tensor([100.0, 100.0, 200.0]))


def test_iou_contained_touching_and_degenerate():
    a = torch.tensor([[0.0, 0.0, 4.0, 4.0]])
    b = torch.tensor(
        [[1.0, 1.0, 3.0, 3.0], [4.0, 0.0, 8.0, 4.0], [2.0, 2.0, 2.0, 2.0], [0.0, 0.0, 4.0, 2.0]]
    )
    torch.testing.assert_close(box_iou(a, b), torch.tensor([[4 / 16, 0.0, 0.0, 0.5]]))
    z = torch.tensor([[3.0, 3.0, 3.0, 3.0]])
    assert box_iou(z, z).item() == 0.0  # torchvision gives NaN here
    assert box_iou(torch.zeros(0, 4), a).shape == (0, 1)


def test_iou_matches_torchvision_random():
    gen = torch.Generator().manual_seed(1)
    a, _, _ = random_case(gen, 50, 1)
    b, _, _ = random_case(gen, 70, 1)
    got = box_iou(a, b)
    torch.testing.assert_close(got, torchvision.ops.box_iou(a, b))
    want = [[ref_iou(p, q) for q in b.tolist()] for p in a.tolist()]
    torch.testing.assert_close(got, torch.tensor(want, dtype=torch.float32))


def test_iou_batched_is_per_element():
    gen = torch.Generator().manual_seed(2)
    a = torch.stack([random_case(gen, 6, 1)[0] for _ in range(3)])  # [3,6,4]
    b = torch.stack([random_case(gen, 4, 1)[0] for _ in range(3)])  # [3,4,4]
    got = box_iou(a, b)
    assert got.shape == (3, 6, 4)
    for k in range(3):
        torch.testing.assert_close(got[k], box_iou(a[k], b[k]))
    with pytest.raises(DetectError, match="batch dims differ"):
        box_iou(a, b[:2])


@given(
    st.lists(
        st.tuples(*[st.floats(-1e3, 1e3, allow_nan=False, width=32)] * 2 + [st.floats(0, 500)] * 2),
        min_size=0,
        max_size=20,
    ),
    st.sampled_from(["xyxy", "xywh", "cxcywh"]),
    st.sampled_from(["xyxy", "xywh", "cxcywh"]),
)
@settings(max_examples=60, deadline=None)
def test_convert_round_trip(rows, fmt_a, fmt_b):
    xywh = torch.tensor(rows, dtype=torch.float64).reshape(-1, 4)
    x = box_convert(xywh, "xywh", fmt_a)
    back = box_convert(box_convert(x, fmt_a, fmt_b), fmt_b, "xywh")
    torch.testing.assert_close(back, xywh, atol=1e-9, rtol=1e-9)
    torch.testing.assert_close(x, torchvision.ops.box_convert(xywh, "xywh", fmt_a))


def test_convert_hand_computed_and_errors():
    b = torch.tensor([[10.0, 20.0, 30.0, 60.0]])
    assert box_convert(b, "xyxy", "xywh").tolist() == [[10.0, 20.0, 20.0, 40.0]]
    assert box_convert(b, "xyxy", "cxcywh").tolist() == [[20.0, 40.0, 20.0, 40.0]]
    with pytest.raises(DetectError):
        box_convert(b, "xyxy", "yolo")
    with pytest.raises(DetectError):
        box_iou(torch.zeros(3, 5), b)
    with pytest.raises(DetectError):
        nms(b, torch.zeros(2), 0.5)


# ---------------------------------------------------------------- NMS


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("num_classes", [1, 3, 80])
def test_batched_nms_random(seed, num_classes):
    gen = torch.Generator().manual_seed(seed)
    n = [0, 1, 7, 50, 200, 400, 1200, 300][seed]  # 1200 boxes takes torchvision's per-class path
    boxes, scores, classes = random_case(gen, n, num_classes)
    for thr in (0.0, 0.3, 0.5, 0.7):
        assert_same_keep(boxes, scores, classes, thr)


@given(
    st.integers(0, 40),
    st.integers(1, 5),
    st.integers(0, 2**31 - 1),
    st.floats(0.0, 1.0),
)
@settings(max_examples=80, deadline=None)
def test_batched_nms_hypothesis(n, num_classes, seed, thr):
    gen = torch.Generator().manual_seed(seed)
    # coarse integer grid: many identical boxes, touching edges, and exact score ties
    xy = torch.randint(0, 6, (n, 2), generator=gen).float()
    wh = torch.randint(0, 4, (n, 2), generator=gen).float()
    boxes = torch.cat((xy, xy + wh), 1)
    scores = torch.randint(0, 4, (n,), generator=gen).float() / 4
    classes = torch.randint(0, num_classes, (n,), generator=gen)
    ours = batched_nms(boxes, scores, classes, thr)
    assert ours.tolist() == torchvision.ops.batched_nms(boxes, scores, classes, thr).tolist()
    ref = ref_batched_nms(boxes, scores, classes, thr)
    # same kept set; order by decreasing score (ties between classes may come in any order)
    assert sorted(ours.tolist()) == sorted(ref)
    assert scores[ours].tolist() == [scores[i].item() for i in ref]


def test_nms_hard_cases():
    # identical boxes and tied scores: the lowest index wins
    boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0]] * 4)
    scores = torch.tensor([0.5, 0.9, 0.9, 0.1])
    assert nms(boxes, scores, 0.5).tolist() == [1]
    assert batched_nms(boxes, scores, torch.tensor([0, 0, 1, 1]), 0.5).tolist() == [1, 2]
    # zero-area boxes never suppress anything (IoU 0)
    zero = torch.tensor([[5.0, 5.0, 5.0, 5.0], [5.0, 5.0, 5.0, 5.0], [0.0, 0.0, 0.0, 9.0]])
    assert_same_keep(zero, torch.tensor([0.3, 0.2, 0.1]), torch.zeros(3, dtype=torch.int64), 0.1)
    # empty input
    e = batched_nms(torch.zeros(0, 4), torch.zeros(0), torch.zeros(0, dtype=torch.int64), 0.5)
    assert e.dtype == torch.int64 and e.shape == (0,)
    assert nms(torch.zeros(0, 4), torch.zeros(0), 0.5).shape == (0,)
    # IoU exactly at the threshold is kept (suppression needs IoU > threshold)
    b = torch.tensor([[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 10.0, 5.0]])  # IoU 0.5
    assert_same_keep(b, torch.tensor([0.9, 0.8]), torch.zeros(2, dtype=torch.int64), 0.5)
    assert nms(b, torch.tensor([0.9, 0.8]), 0.5).tolist() == [0, 1]
    assert nms(b, torch.tensor([0.9, 0.8]), 0.49).tolist() == [0]
    # ... but "exactly" is in float32: IoU 1/3 rounds up to 0.33333334 > 1/3 (a Python float),
    # so the pair below is suppressed at 1/3; the brute-force reference must agree
    t = torch.tensor([[5.0, 5.0, 7.0, 6.0], [5.0, 4.0, 6.0, 6.0]])  # areas 2 and 2, overlap 1
    one = torch.zeros(2, dtype=torch.int64)
    assert batched_nms(t, torch.tensor([0.75, 0.25]), one, 1 / 3).tolist() == [0]
    assert ref_batched_nms(t, torch.tensor([0.75, 0.25]), one, 1 / 3) == [0]


def test_batched_nms_80_classes_clustered():
    # many heavily-overlapping boxes per class: most suppression happens inside each class
    gen = torch.Generator().manual_seed(5)
    centres = torch.rand(80, 2, generator=gen) * 300
    cls = torch.arange(80).repeat_interleave(12)
    xy = centres[cls] + torch.randn(len(cls), 2, generator=gen) * 3
    boxes = torch.cat((xy - 20, xy + 20), 1)
    scores = torch.rand(len(cls), generator=gen)
    assert_same_keep(boxes, scores, cls, 0.45)
    # a single class over the same boxes (cross-"class" suppression now happens)
    assert_same_keep(boxes, scores, torch.zeros_like(cls), 0.45)


# ---------------------------------------------------------------- postprocess


def ref_postprocess(dec, conf, iou, max_det, classes, multi_label, agnostic):
    out = []
    for img in dec:
        rows = []
        for r in img.tolist():
            box, obj, probs = r[:4], r[4], r[5:]
            cand = (
                [(obj * p, c) for c, p in enumerate(probs)]
                if multi_label
                else [max((obj * p, -c) for c, p in enumerate(probs))]
            )
            for s, c in cand:
                c = abs(c)
                if s >= conf and (classes is None or c in classes):
                    rows.append((box, s, c))
        if not rows:
            out.append([])
            continue
        b = torch.tensor([r[0] for r in rows])
        s = torch.tensor([r[1] for r in rows])
        c = torch.tensor([0 if agnostic else r[2] for r in rows])
        keep = ref_batched_nms(b, s, c, iou)[:max_det]
        out.append([(*rows[k][0], rows[k][1], rows[k][2]) for k in keep])
    return out


@pytest.mark.parametrize("multi_label", [False, True])
@pytest.mark.parametrize("agnostic", [False, True])
@pytest.mark.parametrize("classes", [None, [0, 2]])
def test_postprocess_against_reference(multi_label, agnostic, classes):
    gen = torch.Generator().manual_seed(3)
    bsz, n, nc = 3, 120, 4
    xy = torch.rand(bsz, n, 2, generator=gen) * 100
    wh = torch.rand(bsz, n, 2, generator=gen) * 40 + 1
    probs = torch.rand(bsz, n, 1 + nc, generator=gen)
    dec = torch.cat((xy, xy + wh, probs), -1)
    dec[1, :, 4] = 0.0  # an image with nothing above the threshold
    got = postprocess(dec, 0.2, 0.45, 25, classes, multi_label, agnostic)
    want = ref_postprocess(dec, 0.2, 0.45, 25, classes, multi_label, agnostic)
    assert len(got) == bsz and got[1].shape == (0, 6)
    for g, w in zip(got, want, strict=True):
        assert g.shape == (len(w), 6) and g.dtype == dec.dtype
        if w:
            np.testing.assert_allclose(g.numpy(), np.array(w, dtype=np.float32), rtol=1e-6)
            assert torch.all(g[1:, 4] <= g[:-1, 4])
    assert any(len(w) == 25 for w in want)  # max_det actually bit


def test_postprocess_edge_cases():
    assert [t.shape for t in postprocess(torch.zeros(2, 0, 7))] == [(0, 6), (0, 6)]
    dec = torch.tensor([[[0.0, 0.0, 10.0, 10.0, 0.9, 0.1, 0.8]]])
    out = postprocess(dec, conf=0.5)
    torch.testing.assert_close(out[0], torch.tensor([[0.0, 0.0, 10.0, 10.0, 0.72, 1.0]]))
    assert postprocess(dec, max_det=0)[0].shape == (0, 6)
    with pytest.raises(DetectError):
        postprocess(torch.zeros(2, 5))
    with pytest.raises(DetectError):
        postprocess(torch.zeros(1, 3, 5))
