"""Paired bootstrap (detect.metrics.compare): a draw's mAP is COCO's on the data set with the drawn
images repeated (checked against pycocotools on such a data set), the undrawn case is COCO's own
AP / AP50, and draws are seeded and paired."""

from __future__ import annotations

import numpy as np
import pytest
from test_metrics_coco import random_case, reference

from detect.metrics import coco_ground_truth, coco_results, evaluate
from detect.metrics.coco import CocoParams
from detect.metrics.compare import _Run, paired_bootstrap


def run_of(gt: dict, res: list):
    g = coco_ground_truth(gt)
    r = evaluate(g, coco_results(res, g))
    return g, r, _Run(g, r.pred, r.match, CocoParams())


def repeated(gt: dict, res: list, w: np.ndarray):
    """The data set with image i repeated w[i] times (new ids, copies in a row)."""
    images, anns, out = [], [], []
    for i, im in enumerate(gt["images"]):
        for c in range(int(w[i])):
            new = im["id"] * 1000 + c
            images.append({**im, "id": new})
            for a in gt["annotations"]:
                if a["image_id"] == im["id"]:
                    anns.append({**a, "id": len(anns) + 1, "image_id": new})
            out += [{**d, "image_id": new} for d in res if d["image_id"] == im["id"]]
    return {**gt, "images": images, "annotations": anns}, out


def test_unit_weights_give_coco_ap_and_ap50():
    rng = np.random.default_rng(5)
    for _ in range(10):
        gt, res = random_case(rng)
        if not res:
            continue
        g, r, run = run_of(gt, res)
        got = run.maps(np.ones(g.num_images, np.int64))
        if r.coco_stats[0] < 0:
            assert np.isnan(got[0])
            continue
        np.testing.assert_allclose(got, r.coco_stats[:2], rtol=0, atol=1e-12)


def test_weighted_draw_equals_pycocotools_on_repeated_images():
    # distinct scores: a draw's copies of a detection sit next to each other, as in the
    # repeated data set (with ties pycocotools would interleave other images' equal scores)
    rng = np.random.default_rng(8)
    n = 0
    for _ in range(12):
        gt, res = random_case(rng)
        if not res or len(gt["images"]) < 2:
            continue
        for j, d in enumerate(res):
            d["score"] = float(rng.random()) + j * 1e-9
        g, r, run = run_of(gt, res)
        w = rng.integers(0, 4, g.num_images)
        w[0] = max(w[0], 1)
        gt2, res2 = repeated(gt, res, w)
        want = reference(gt2, res2)[:2] if res2 else None
        got = run.maps(w)
        if want is None or want[0] < 0:
            continue
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)
        n += 1
    assert n >= 5


def test_paired_bootstrap_is_seeded_and_paired():
    rng = np.random.default_rng(2)
    gt, res = random_case(rng)
    while len(res) < 20:
        gt, res = random_case(rng)
    g = coco_ground_truth(gt)
    a = evaluate(g, coco_results(res, g))
    worse = [{**d, "score": d["score"] * 0.5 if i % 2 else d["score"]} for i, d in enumerate(res)]
    b = evaluate(g, coco_results(worse, g))
    runs = [(a.pred, a.match), (b.pred, b.match), (a.pred, a.match)]
    bs = paired_bootstrap(g, runs, n=30, seed=3)
    again = paired_bootstrap(g, runs, n=30, seed=3)
    assert np.array_equal(bs.low, again.low) and np.array_equal(bs.high, again.high)
    np.testing.assert_allclose(bs.diff[1], b.coco_stats[:2] - a.coco_stats[:2], atol=1e-12)
    # a run against itself: every paired draw differs by exactly 0
    assert bs.low[2].tolist() == [0, 0] and bs.high[2].tolist() == [0, 0]
    assert (bs.low <= bs.high).all() and ((bs.p_not_better >= 0) & (bs.p_not_better <= 1)).all()
    # the draws themselves: the interval is the percentiles of the per-draw differences
    r0, r1 = (_Run(g, p, m, CocoParams()) for p, m in runs[:2])
    draw = np.random.default_rng(3)
    diffs = []
    for _ in range(30):
        w = np.bincount(draw.integers(0, g.num_images, g.num_images), minlength=g.num_images)
        diffs.append(r1.maps(w)[0] - r0.maps(w)[0])
    assert bs.low[1, 0] == pytest.approx(np.quantile(diffs, 0.025), abs=1e-12)
    assert bs.high[1, 0] == pytest.approx(np.quantile(diffs, 0.975), abs=1e-12)
