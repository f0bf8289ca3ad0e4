"""Operating points (best-F1 confidence, recall at a precision) against a brute force over every
threshold, on the true / false positives pycocotools' own evaluateImg gives at IoU 0.5."""

from __future__ import annotations

import contextlib
import copy
import io

import numpy as np
import pytest
from test_metrics_coco import random_case

from detect.metrics import coco_ground_truth, coco_results, evaluate

pycocotools = pytest.importorskip("pycocotools")
from pycocotools.coco import COCO  # noqa: E402
from pycocotools.cocoeval import COCOeval  # noqa: E402


def pycoco_flags(gt: dict, res: list):
    """Per class: (scores, is_tp) of the detections pycocotools scores at IoU 0.5, area all,
    maxDets 100 (ignored ones left out), and the number of not-ignored GT."""
    with contextlib.redirect_stdout(io.StringIO()):
        g = COCO()
        g.dataset = copy.deepcopy(gt)
        g.createIndex()
        e = COCOeval(g, g.loadRes(copy.deepcopy(res)), "bbox")
        e.evaluate()
    out = {}
    n_img = len(e.params.imgIds)
    for k, cat in enumerate(e.params.catIds):
        scores, tp, npig = [], [], 0
        for i in range(n_img):
            ev = e.evalImgs[k * 4 * n_img + i]  # area range 0 ("all") block
            if ev is None:
                continue
            keep = ~np.asarray(ev["dtIgnore"][0], bool)
            scores += list(np.asarray(ev["dtScores"])[keep])
            tp += list(np.asarray(ev["dtMatches"][0])[keep] > 0)
            npig += int((~np.asarray(ev["gtIgnore"], bool)).sum())
        out[cat] = (np.array(scores), np.array(tp, bool), npig)
    return out


def brute(scores, tp, npig, thresholds):
    """P, R, F1 at each threshold (keep score >= c); all 0 with nothing kept."""
    rows = []
    for c in thresholds:
        kept = scores >= c
        t = int(tp[kept].sum())
        n = int(kept.sum())
        p = t / n if n else 0.0
        r = t / npig
        rows.append((p, r, 2 * p * r / (p + r) if p + r > 0 else 0.0))
    return np.array(rows).reshape(-1, 3)


@pytest.mark.parametrize("seed", range(3))
def test_operating_points_equal_brute_force(seed):
    rng = np.random.default_rng(100 + seed)
    for _ in range(15):
        gt, res = random_case(rng)
        if not res:
            continue
        g = coco_ground_truth(gt)
        r = evaluate(g, coco_results(res, g), at_precision=0.6)
        op = r.operating
        flags = pycoco_flags(gt, res)
        all_scores = np.unique([d["score"] for d in res])[::-1]
        per_class = []
        for k, cat in enumerate(g.category_ids):
            s, tp, npig = flags[cat]
            if npig == 0:
                assert np.isnan(op.f1[k])
                continue
            cand = np.unique(s)[::-1]  # every distinct score, decreasing
            prf = brute(s, tp, npig, cand)
            if len(cand) and prf[:, 2].max() > 0:
                j = int(np.argmax(prf[:, 2]))  # first max: the highest confidence
                assert op.conf[k] == cand[j]
                np.testing.assert_allclose([op.precision[k], op.recall[k], op.f1[k]], prf[j])
            else:  # best is to keep nothing
                assert np.isnan(op.conf[k]) and op.f1[k] == 0 and op.precision[k] == 0
            ok = np.flatnonzero(prf[:, 0] >= 0.6) if len(cand) else []
            if len(ok):
                assert op.conf_at[k] == cand[ok[-1]] and op.recall_at[k] == prf[ok[-1], 1]
            else:
                assert np.isnan(op.conf_at[k]) and op.recall_at[k] == 0
            per_class.append(brute(s, tp, npig, all_scores))
        if not per_class:
            continue
        mean = np.mean(per_class, axis=0)  # [U, 3] mean P, R, F1 over classes with GT
        if mean[:, 2].max() > 0:
            # the threshold of the best mean F1 (equal means may differ in the last bit)
            best = np.flatnonzero(mean[:, 2] >= mean[:, 2].max() - 1e-12)
            assert op.all["conf"] in all_scores[best]
            j = int(np.flatnonzero(all_scores == op.all["conf"])[0])
            np.testing.assert_allclose(
                [op.all["precision"], op.all["recall"], op.all["f1"]], mean[j], atol=1e-12
            )
        q = np.flatnonzero((mean[:, 0] >= 0.6 - 1e-12) & (mean[:, 1] > 0))
        if len(q):
            # the lowest threshold with mean precision >= 0.6; reported at the score of a
            # detection whose class has GT, with the same kept set
            assert op.all_at["recall"] == pytest.approx(mean[q[-1], 1], abs=1e-12)
            assert op.all_at["precision"] == pytest.approx(mean[q[-1], 0], abs=1e-12)
            assert op.all_at["conf"] >= all_scores[q[-1]]


def test_hand_computed_operating_point():
    # one class, 4 GT; scores 0.9 TP, 0.8 FP, 0.7 TP, 0.6 TP, 0.5 FP
    boxes = [[0, 0, 10, 10], [20, 0, 10, 10], [40, 0, 10, 10], [60, 0, 10, 10]]
    gt = {
        "images": [{"id": 1, "width": 100, "height": 100}],
        "categories": [{"id": 1, "name": "a"}],
        "annotations": [
            {"id": i + 1, "image_id": 1, "category_id": 1, "bbox": b, "area": 100, "iscrowd": 0}
            for i, b in enumerate(boxes)
        ],
    }
    dets = [(boxes[0], 0.9), ([80, 80, 5, 5], 0.8), (boxes[1], 0.7), (boxes[2], 0.6),
            ([80, 0, 5, 5], 0.5)]  # fmt: skip
    res = [{"image_id": 1, "category_id": 1, "bbox": b, "score": s} for b, s in dets]
    g = coco_ground_truth(gt)
    op = evaluate(g, coco_results(res, g), at_precision=0.75).operating
    # thresholds: 0.9 P1 R.25 F.4; 0.8 P.5 R.25; 0.7 P2/3 R.5 F4/7; 0.6 P.75 R.75 F.75; 0.5 .6 .75
    assert op.conf[0] == 0.6 and op.f1[0] == pytest.approx(0.75)
    assert op.precision[0] == 0.75 and op.recall[0] == 0.75
    assert op.conf_at[0] == 0.6 and op.recall_at[0] == 0.75
    assert op.all == {"conf": 0.6, "precision": 0.75, "recall": 0.75, "f1": pytest.approx(0.75)}


def test_a_class_that_found_nothing_counts_zero_everywhere():
    """Issue 26: class b has 2 GT and no detection. Its P, R, F1 are 0 (conf NaN: flagged), and
    "all" is the mean over a and b: at a's best threshold 0.8 (P 1, R 1) -> P 0.5, R 0.5, F1 0.5
    (it was P 1.0 for b, a mean P of 1.0 above b's)."""
    boxes = [[0, 0, 10, 10], [20, 0, 10, 10]]
    gt = {
        "images": [{"id": 1, "width": 100, "height": 100}],
        "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}],
        "annotations": [
            {"id": i + 1, "image_id": 1, "category_id": c, "bbox": b, "area": 100, "iscrowd": 0}
            for i, (b, c) in enumerate([(boxes[0], 1), (boxes[1], 1), ([0, 50, 10, 10], 2),
                                         ([20, 50, 10, 10], 2)])
        ],
    }  # fmt: skip
    res = [{"image_id": 1, "category_id": 1, "bbox": b, "score": s}
           for b, s in [(boxes[0], 0.9), (boxes[1], 0.8)]]  # fmt: skip
    g = coco_ground_truth(gt)
    op = evaluate(g, coco_results(res, g)).operating
    assert [op.precision[0], op.recall[0], op.f1[0], op.conf[0]] == [1.0, 1.0, 1.0, 0.8]
    assert [op.precision[1], op.recall[1], op.f1[1]] == [0.0, 0.0, 0.0] and np.isnan(op.conf[1])
    assert op.all == {"conf": 0.8, "precision": 0.5, "recall": 0.5, "f1": 0.5}
