"""VOC07 11-point and VOC all-point AP@0.5 against APs computed by hand (devkit rules)."""

from __future__ import annotations

import numpy as np
import pytest

from detect.metrics import GroundTruth, Predictions, evaluate_voc
from detect.metrics.voc import ap_11point, ap_allpoint


def xyxy_to_xywh(b):
    b = np.asarray(b, np.float64).reshape(-1, 4)
    return np.concatenate([b[:, :2], b[:, 2:] - b[:, :2]], 1)


def make_gt(rows, num_images=2, names=("a", "b", "c")) -> GroundTruth:
    """rows: (image, class, [x1, y1, x2, y2], difficult)."""
    return GroundTruth(
        names=list(names),
        category_ids=list(range(len(names))),
        image_ids=list(range(num_images)),
        image_paths=[f"{i}.jpg" for i in range(num_images)],
        image_wh=np.full((num_images, 2), 100),
        image=np.array([r[0] for r in rows], np.int64),
        classes=np.array([r[1] for r in rows], np.int64),
        xywh=xyxy_to_xywh([r[2] for r in rows]),
        area=np.ones(len(rows)),
        iscrowd=np.zeros(len(rows), bool),
        difficult=np.array([r[3] for r in rows], bool),
    )


def make_pred(rows) -> Predictions:
    """rows: (image, class, [x1, y1, x2, y2], score)."""
    return Predictions(
        image=np.array([r[0] for r in rows], np.int64),
        classes=np.array([r[1] for r in rows], np.int64),
        xywh=xyxy_to_xywh([r[2] for r in rows]),
        scores=np.array([r[3] for r in rows], np.float64),
    )


def test_hand_computed_aps():
    gt = make_gt(
        [
            (0, 0, [0, 0, 10, 10], False),  # A
            (0, 0, [20, 0, 30, 10], False),  # B, never detected
            (0, 0, [40, 0, 50, 10], True),  # difficult: not in npos
            (1, 0, [0, 0, 10, 10], False),  # C
            (0, 1, [0, 0, 10, 10], False),  # E
            (1, 1, [0, 0, 10, 10], False),  # F
        ]
    )
    pred = make_pred(
        [
            (0, 0, [0, 0, 10, 10], 0.9),  # A: TP
            (0, 0, [0, 0, 10, 10], 0.8),  # A again: FP
            (0, 0, [40, 0, 50, 10], 0.7),  # difficult: neither TP nor FP
            (1, 0, [90, 90, 99, 99], 0.6),  # nothing: FP
            (1, 0, [0, 0, 10, 5], 0.5),  # C at IoU exactly 0.5: TP (devkit: >=)
            (0, 1, [0, 0, 10, 10], 0.9),  # E: TP
            (0, 1, [50, 50, 60, 60], 0.8),  # FP
            (1, 1, [0, 0, 10, 10], 0.7),  # F: TP
            (0, 2, [0, 0, 10, 10], 0.9),  # class without GT
        ]
    )
    r = evaluate_voc(gt, pred)
    # class a: TP FP FP TP, npos 3 -> rec 1/3 1/3 1/3 2/3, prec 1 .5 1/3 .5
    #   all-point: 1/3 * 1 + 1/3 * .5 = .5 ; 11-point: (4 * 1 + 3 * .5) / 11 = .5
    # class b: TP FP TP, npos 2 -> rec .5 .5 1, prec 1 .5 2/3
    #   all-point: .5 * 1 + .5 * 2/3 = 5/6 ; 11-point: (6 * 1 + 5 * 2/3) / 11 = 28/33
    assert r.npos.tolist() == [3, 2, 0]
    assert r.ap == pytest.approx([0.5, 5 / 6, -1], abs=1e-12)
    assert r.ap07 == pytest.approx([0.5, 28 / 33, -1], abs=1e-12)
    assert r.map == pytest.approx((0.5 + 5 / 6) / 2, abs=1e-12)
    assert r.map07 == pytest.approx((0.5 + 28 / 33) / 2, abs=1e-12)


def test_best_overlap_taken_is_fp_even_if_another_gt_overlaps():
    # devkit: a detection takes its highest-IoU GT; if that one is taken it is a FP
    gt = make_gt([(0, 0, [0, 0, 10, 10], False), (0, 0, [0, 0, 10, 8], False)], num_images=1)
    pred = make_pred([(0, 0, [0, 0, 10, 10], 0.9), (0, 0, [0, 0, 10, 9.9], 0.8)])
    r = evaluate_voc(gt, pred)
    # TP then FP: rec .5 .5, prec 1 .5 -> all-point .5, 11-point 6/11
    assert r.ap[0] == pytest.approx(0.5) and r.ap07[0] == pytest.approx(6 / 11)


def test_interpolations_on_known_curves():
    rec = np.array([0.2, 0.4, 0.4, 0.8])
    prec = np.array([1.0, 0.5, 0.6, 0.4])
    # envelope: 1 up to .2, .6 up to .4, .4 up to .8, 0 after
    assert ap_allpoint(rec, prec) == pytest.approx(0.2 * 1 + 0.2 * 0.6 + 0.4 * 0.4)
    # t = 0,.1,.2 -> 1 ; .3,.4 -> .6 ; .5 .. .8 -> .4 ; .9, 1 -> 0
    assert ap_11point(rec, prec) == pytest.approx((3 * 1 + 2 * 0.6 + 4 * 0.4) / 11)


def test_no_detections_is_zero_ap():
    gt = make_gt([(0, 0, [0, 0, 10, 10], False)], num_images=1)
    r = evaluate_voc(gt, Predictions.empty())
    assert r.ap.tolist() == [0.0, -1, -1] and r.ap07.tolist() == [0.0, -1, -1]


def test_voc2007_ground_truth_as_predictions(voc2007):
    """On the real VOC2007 val split (difficult objects included): GT boxes as detections score
    1 in VOC07 / VOC and ~1 in COCO; dropping every other detection of a class lowers only it."""
    from detect.data import load_dataset
    from detect.data.types import Detections
    from detect.metrics import evaluate

    rec = load_dataset(voc2007, split="val")
    n = [len(im.boxes) for im in rec.images]
    image = np.repeat(np.arange(len(rec.images)), n)
    boxes = np.concatenate([im.boxes for im in rec.images])
    classes = np.concatenate([im.classes for im in rec.images])
    scores = np.linspace(1, 0.5, len(boxes)).astype(np.float32)
    r = evaluate(rec, Detections(image, boxes, scores, classes))
    assert r.voc.map07 == pytest.approx(1.0) and r.voc.map == pytest.approx(1.0)
    assert r.map50 == pytest.approx(1.0, abs=1e-9) and r.map == pytest.approx(1.0, abs=1e-9)
    assert sum(c["gt"] for c in r.to_json()["per_class"]) == len(boxes)
    # class 0: keep every other non-difficult box -> recall 1/2, precision 1
    diff = np.concatenate([im.difficult for im in rec.images])
    c0 = np.flatnonzero((classes == 0) & ~diff)
    keep = np.ones(len(boxes), bool)
    keep[c0[1::2]] = False
    r2 = evaluate(rec, Detections(image[keep], boxes[keep], scores[keep], classes[keep]))
    half = len(c0[::2]) / len(c0)
    assert r2.voc.ap[0] == pytest.approx(half)  # all-point: area = recall * 1
    assert r2.voc.ap[1:] == pytest.approx(np.ones(19))


def test_reusing_the_coco_pairs_gives_the_same_aps():
    # evaluate() hands VOC the COCO matcher's pairs (IoU >= 0.5 - 1e-9); the full pairing
    # must give identical APs, IoU exactly 0.5 and crowd GT included
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent))
    from test_metrics_coco import random_case

    from detect.metrics import coco_ground_truth, coco_results, evaluate

    rng = np.random.default_rng(4)
    for _ in range(25):
        gt, res = random_case(rng, max_dets_per_image=int(rng.choice([40, 150])))
        res += [{**r, "bbox": [r["bbox"][0], r["bbox"][1], r["bbox"][2], r["bbox"][3] / 2]}
                for r in res[:5]]  # fmt: skip
        g = coco_ground_truth(gt)
        p = coco_results(res, g)
        r = evaluate(g, p)
        v = evaluate_voc(g, p)
        assert np.array_equal(r.voc.ap07, v.ap07) and np.array_equal(r.voc.ap, v.ap)
