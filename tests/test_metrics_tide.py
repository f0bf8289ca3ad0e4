"""TIDE (detect.metrics.tide) equals the authors' `tidecv` package: AP, the six main and two special
dAP values, and the error counts, on seeded cases (crowd, many classes, images without GT or
without detections, > 100 detections per image, score ties) and on hand-built single errors."""

from __future__ import annotations

import contextlib
import io

import numpy as np
import pytest

from detect.metrics import coco_ground_truth, coco_results
from detect.metrics.tide import MAIN_ERRORS, evaluate_tide

tidecv = pytest.importorskip("tidecv")

SHORT = {"Cls": "cls", "Loc": "loc", "Both": "both", "Dupe": "dupe", "Bkg": "bkg",
         "Miss": "miss", "FalsePos": "fp", "FalseNeg": "fn"}  # fmt: skip


def reference(gt: dict, res: list) -> tuple[float, dict, dict]:
    """tidecv's (AP, dAP per error, count per main error), as fractions (tidecv prints x100).

    The GT is loaded as tidecv.datasets.COCO does (crowd -> ignore region of its class), minus
    its masks: that loader needs `segmentation`, which box-only ground truth lacks."""
    g, p = tidecv.Data("gt"), tidecv.Data("pred")
    for im in gt["images"]:
        g.add_image(im["id"], str(im["id"]))
    for c in gt["categories"]:
        g.add_class(c["id"], c["name"])
    for a in gt["annotations"]:
        if a.get("iscrowd", 0):
            g.add_ignore_region(a["image_id"], a["category_id"], a["bbox"])
        else:
            g.add_ground_truth(a["image_id"], a["category_id"], a["bbox"])
    for d in res:
        p.add_detection(d["image_id"], d["category_id"], d["score"], d["bbox"])
    t = tidecv.TIDE()
    run = t.evaluate(g, p, mode=tidecv.TIDE.BOX)
    with contextlib.redirect_stdout(io.StringIO()):
        errors = {**t.get_main_errors()["pred"], **t.get_special_errors()["pred"]}
    counts = {SHORT[e.short_name]: n for e, n in run.count_errors().items()}
    return run.ap / 100, {SHORT[k]: v / 100 for k, v in errors.items()}, counts


def ours(gt: dict, res: list):
    g = coco_ground_truth(gt)
    return evaluate_tide(g, coco_results(res, g))


def check(gt: dict, res: list) -> float:
    """Assert equality with tidecv; returns the largest |difference| (fraction)."""
    ap, dap, counts = reference(gt, res)
    r = ours(gt, res)
    diff = max(abs(ap - r.ap), *(abs(dap[k] - r.dap[k]) for k in dap))
    assert diff < 1e-8, (ap, r.ap, dap, r.dap)  # 1e-6 in tidecv's x100 units
    assert {k: r.counts[k] for k in MAIN_ERRORS} == counts
    return diff


def tide_case(rng, n_cat=3, n_img=6, crowd=0.1, dets=(0, 30), empty=0.2, score_steps=20):
    """GT and detections built to hit every TIDE error: GT copies jittered from slightly (TP /
    Dupe) to far (Loc at IoU 0.1-0.5, Both), relabelled (Cls), and random boxes (Bkg); coarse
    scores make ties; some images have no GT, some no detections."""
    cats = [{"id": int(c), "name": f"c{c}"}
            for c in rng.choice(np.arange(1, 200), n_cat, replace=False)]  # fmt: skip
    images = [{"id": int(i), "width": 640, "height": 480}
              for i in rng.choice(np.arange(1, 10_000), n_img, replace=False)]  # fmt: skip
    anns, res = [], []
    for im in images:
        gts = []
        for _ in range(0 if rng.random() < empty else int(rng.integers(1, 8))):
            b = [float(rng.integers(0, 500)), float(rng.integers(0, 380)),
                 float(rng.integers(4, 200)), float(rng.integers(4, 200))]  # fmt: skip
            c = cats[rng.integers(n_cat)]["id"]
            anns.append({"id": len(anns) + 1, "image_id": im["id"], "category_id": c,
                         "bbox": b, "area": b[2] * b[3],
                         "iscrowd": int(rng.random() < crowd)})  # fmt: skip
            gts.append((b, c))
        for _ in range(int(rng.integers(*dets))):
            if gts and rng.random() < 0.75:
                b, c = gts[rng.integers(len(gts))]
                s = rng.choice([0.02, 0.1, 0.3, 0.6])  # jitter, in box sizes
                j = rng.normal(0, s, 4) * [b[2], b[3], b[2], b[3]]
                b = [round(b[0] + j[0], 1), round(b[1] + j[1], 1),
                     round(max(b[2] + j[2], 1), 1), round(max(b[3] + j[3], 1), 1)]  # fmt: skip
                if rng.random() < 0.2:
                    c = cats[rng.integers(n_cat)]["id"]
            else:
                b = [float(rng.integers(0, 600)), float(rng.integers(0, 440)),
                     float(rng.integers(2, 150)), float(rng.integers(2, 150))]  # fmt: skip
                c = cats[rng.integers(n_cat)]["id"]
            score = float(rng.integers(0, score_steps)) / score_steps
            res.append({"image_id": im["id"], "category_id": c, "bbox": b, "score": score})
    return {"images": images, "categories": cats, "annotations": anns}, res


CASES = {
    "small": {},
    "crowd": {"crowd": 0.4},
    "many_classes": {"n_cat": 25, "n_img": 10, "dets": (0, 60)},
    "empty_images": {"empty": 0.6, "dets": (0, 12)},
    "over_100_per_image": {"n_cat": 2, "n_img": 3, "dets": (90, 260), "score_steps": 7},
    "few_ties": {"score_steps": 10**6},
}


@pytest.mark.parametrize("kind", CASES)
def test_seeded_cases_equal_tidecv(kind):
    rng = np.random.default_rng(list(CASES).index(kind))
    n = 0
    for _ in range(12 if kind == "over_100_per_image" else 25):
        gt, res = tide_case(rng, **CASES[kind])
        if not res or not any(not a["iscrowd"] for a in gt["annotations"]):
            continue  # tidecv divides by zero without any GT (test_no_gt_at_all)
        check(gt, res)
        n += 1
    assert n >= 8


def test_every_error_type_occurs_in_the_seeded_cases():
    # so that the parity above covers each rule, not only the frequent ones
    rng = np.random.default_rng(0)
    seen = dict.fromkeys(MAIN_ERRORS, 0)
    for _ in range(10):
        gt, res = tide_case(rng, crowd=0.2)
        if res:
            for k, v in ours(gt, res).counts.items():
                if k in seen:
                    seen[k] += v
    assert all(v > 0 for v in seen.values()), seen


def img(i=1):
    return {"id": i, "width": 640, "height": 480}


def case(gts, dets, cats=(1, 2), images=(1,)):
    """gts: (image, class, bbox[, crowd]); dets: (image, class, bbox, score)."""
    return (
        {
            "images": [img(i) for i in images],
            "categories": [{"id": c, "name": f"c{c}"} for c in cats],
            "annotations": [
                {
                    "id": n + 1,
                    "image_id": g[0],
                    "category_id": g[1],
                    "bbox": g[2],
                    "area": g[2][2] * g[2][3],
                    "iscrowd": g[3] if len(g) > 3 else 0,
                }
                for n, g in enumerate(gts)
            ],  # fmt: skip
        },
        [{"image_id": d[0], "category_id": d[1], "bbox": d[2], "score": d[3]} for d in dets],
    )


def test_hand_built_errors():
    # one GT per class; a TP, a duplicate, a mislabelled box, a loose box, a background box;
    # the class-2 GT is missed
    gt, res = case(
        [(1, 1, [0, 0, 100, 100]), (1, 2, [300, 300, 50, 50]), (1, 1, [200, 0, 100, 100])],
        [(1, 1, [0, 0, 100, 100], 0.9),  # TP
         (1, 1, [2, 2, 100, 100], 0.8),  # Dupe of the first GT
         (1, 2, [200, 0, 100, 100], 0.7),  # Cls: right box, wrong class
         (1, 1, [200, 0, 40, 100], 0.6),  # Loc: IoU 0.4 with the third GT
         (1, 1, [500, 400, 20, 20], 0.5)],  # Bkg
    )  # fmt: skip
    r = ours(gt, res)
    assert r.counts == {"cls": 1, "loc": 1, "both": 0, "dupe": 1, "bkg": 1, "miss": 1,
                        "fp": 4, "fn": 2}  # fmt: skip
    # class 1: TP at 0.9 then FPs; 1 of 2 GT found -> AP 0.51 (recall 0..0.5 at precision 1)
    # class 2: GT present, no TP -> 0. mAP = 0.255
    assert r.ap == pytest.approx(51 / 101 / 2)
    check(gt, res)


def test_crowd_region_ignores_and_images_without_detections():
    gt, res = case(
        [(1, 1, [0, 0, 200, 200], 1), (1, 1, [300, 300, 50, 50]), (2, 2, [0, 0, 10, 10])],
        [(1, 1, [10, 10, 50, 50], 0.9), (1, 1, [300, 300, 50, 50], 0.5)],
        images=(1, 2),
    )  # fmt: skip
    r = ours(gt, res)
    assert r.counts["fp"] == 0 and r.counts["miss"] == 1  # the crowd-covered box is ignored
    check(gt, res)


def test_no_gt_at_all():
    # every detection is background; tidecv raises ZeroDivisionError when fixing them leaves
    # no class to average over: that dAP is reported as 0 here
    gt, res = case([], [(1, 1, [0, 0, 10, 10], 0.5), (1, 2, [20, 0, 10, 10], 0.4)])
    r = ours(gt, res)
    assert r.ap == 0.0 and r.counts["bkg"] == 2 and r.dap["bkg"] == 0.0
    with pytest.raises(ZeroDivisionError):
        reference(gt, res)


def test_nothing_to_score():
    g = coco_ground_truth(case([], [])[0])
    r = evaluate_tide(g, coco_results([], g))
    assert r.ap == -1 and set(r.dap.values()) == {0.0}


EDGES = {
    # IoU exactly 0.5 matches (>=)
    "match_at_0.5": ([(1, 1, [0, 0, 10, 10])], [(1, 1, [0, 0, 10, 5], 0.9)], {"fp": 0}),
    # same class, IoU exactly 0.5 with an already matched GT: Loc (bg <= IoU <= pos), not Dupe
    "loc_not_dupe_at_0.5": (
        [(1, 1, [0, 0, 10, 10])],
        [(1, 1, [0, 0, 10, 10], 0.9), (1, 1, [0, 0, 10, 5], 0.8)],
        {"loc": 1, "dupe": 0},
    ),
    # IoU exactly 0.1: Loc for its class; for another class only: Bkg (IoU <= bg)
    "loc_at_0.1": ([(1, 1, [0, 0, 10, 10])], [(1, 1, [0, 0, 1, 10], 0.9)], {"loc": 1}),
    "bkg_at_0.1": ([(1, 1, [0, 0, 10, 10])], [(1, 2, [0, 0, 1, 10], 0.9)], {"bkg": 1}),
    # crowd IoU (intersection / detection area) exactly 0.5 does not ignore (>)
    "crowd_at_0.5": (
        [(1, 1, [0, 0, 10, 10], 1), (1, 2, [300, 300, 10, 10])],
        [(1, 1, [5, 0, 10, 10], 0.9)],
        {"fp": 1},
    ),
    # a wrong-class box equally on GT of classes 1 and 2: Cls points at the first GT (class 1),
    # whose fix then scores in class 1 (class 2 has a second GT, so the choice moves mAP)
    "cls_tie_first_gt": (
        [(1, 1, [0, 0, 10, 10]), (1, 2, [0, 0, 10, 10]), (1, 2, [50, 50, 10, 10])],
        [(1, 3, [0, 0, 10, 10], 0.9), (1, 2, [50, 50, 10, 10], 0.8)],
        {"cls": 1},
    ),
    # two equal GT of one class: the first is matched, the second missed
    "match_tie_first_gt": (
        [(1, 1, [0, 0, 10, 10]), (1, 1, [0, 0, 10, 10]), (1, 1, [40, 0, 10, 10])],
        [(1, 1, [0, 0, 10, 10], 0.9), (1, 1, [40, 0, 10, 6], 0.3)],
        {"miss": 1},
    ),
}


@pytest.mark.parametrize("name", EDGES)
def test_threshold_and_tie_edges(name):
    gts, dets, want = EDGES[name]
    gt, res = case(gts, dets, cats=(1, 2, 3))
    r = ours(gt, res)
    assert {k: r.counts[k] for k in want} == want
    check(gt, res)
