"""COCO evaluation equals pycocotools' COCOeval(...).stats to 1e-12: seeded random cases and each
named edge case (crowd, GT `area` ranges, maxDets truncation, ties, IoU at a threshold, classes and
images without GT, unknown images, empty predictions)."""

from __future__ import annotations

import contextlib
import copy
import io
from pathlib import Path

import numpy as np
import pytest

from detect.data.types import DatasetRecords, Detections, ImageRecord
from detect.errors import DetectError
from detect.metrics import coco_ground_truth, coco_results, evaluate, evaluate_coco
from detect.metrics.coco import box_iou_xywh

pycocotools = pytest.importorskip("pycocotools")
from pycocotools.coco import COCO  # noqa: E402
from pycocotools.cocoeval import COCOeval  # noqa: E402


def reference(gt: dict, res: list) -> np.ndarray:
    """pycocotools' 12 stats for a GT dict and a results list."""
    with contextlib.redirect_stdout(io.StringIO()):
        g = COCO()
        g.dataset = copy.deepcopy(gt)
        g.createIndex()
        e = COCOeval(g, g.loadRes(copy.deepcopy(res)), "bbox")
        e.evaluate()
        e.accumulate()
        e.summarize()
    return e.stats


def ours(gt: dict, res: list) -> np.ndarray:
    g = coco_ground_truth(gt)
    return evaluate_coco(g, coco_results(res, g)).stats


def random_case(rng: np.random.Generator, max_dets_per_image: int = 40):
    """A small COCO case on a 1/8-pixel grid (exact in float32 too), with crowd GT, GT `area`
    unlike the box area, jittered duplicates of GT, wrong classes and coarse scores (many ties)."""
    n_cat = int(rng.integers(1, 5))
    cats = [
        {"id": int(c), "name": f"c{c}"} for c in rng.choice(np.arange(1, 20), n_cat, replace=False)
    ]
    n_img = int(rng.integers(1, 9))
    images = [
        {"id": int(i), "file_name": f"{i}.jpg", "width": 640, "height": 480}
        for i in rng.choice(np.arange(1, 100), n_img, replace=False)
    ]
    anns, res = [], []

    def box():
        return [float(rng.integers(0, 4000)) / 8, float(rng.integers(0, 3000)) / 8,
                float(rng.integers(1, 1200)) / 8, float(rng.integers(1, 1200)) / 8]  # fmt: skip

    for im in images:
        gts = []
        for _ in range(int(rng.integers(0, 8))):
            b, c = box(), cats[rng.integers(n_cat)]["id"]
            anns.append(
                {
                    "id": len(anns) + 1,
                    "image_id": im["id"],
                    "category_id": c,
                    "bbox": b,
                    "area": b[2] * b[3] * float(rng.choice([1.0, 0.5, 0.8, 3.0])),
                    "iscrowd": int(rng.random() < 0.1),
                }
            )
            gts.append((b, c))
        for _ in range(int(rng.integers(0, max_dets_per_image))):
            if gts and rng.random() < 0.6:
                b, c = gts[rng.integers(len(gts))]
                j = rng.integers(-3, 4, 4) / 8
                b = [b[0] + j[0], b[1] + j[1], max(b[2] + 4 * j[2], 0.125),
                     max(b[3] + 4 * j[3], 0.125)]  # fmt: skip
                if rng.random() < 0.2:
                    c = cats[rng.integers(n_cat)]["id"]
            else:
                b, c = box(), cats[rng.integers(n_cat)]["id"]
            res.append(
                {
                    "image_id": im["id"],
                    "category_id": c,
                    "bbox": b,
                    "score": float(rng.integers(0, 20)) / 20,
                }  # fmt: skip
            )
    return {"images": images, "categories": cats, "annotations": anns}, res


@pytest.mark.parametrize("seed", range(4))
def test_random_cases_equal_pycocotools(seed):
    rng = np.random.default_rng(seed)
    n = 0
    for _ in range(60):
        gt, res = random_case(rng)
        if not res:
            continue
        np.testing.assert_allclose(ours(gt, res), reference(gt, res), rtol=0, atol=1e-12)
        n += 1
    assert n > 40


def _string_ids(gt: dict, res: list, rng: np.random.Generator) -> tuple[dict, list]:
    """The same case with string image ids whose sorted order differs from the numeric one
    ("a10" < "a9"), the image list shuffled, and scores rounded to one decimal (ties across
    images, which pycocotools breaks by the sorted image ids)."""
    names = {im["id"]: f"{rng.choice(['a', 'b', 'cam/'])}{im['id']}" for im in gt["images"]}
    gt = copy.deepcopy(gt)
    for im in gt["images"]:
        im["id"] = names[im["id"]]
    for a in gt["annotations"]:
        a["image_id"] = names[a["image_id"]]
    gt["images"] = [gt["images"][k] for k in rng.permutation(len(gt["images"]))]
    res = [{**r, "image_id": names[r["image_id"]], "score": round(r["score"], 1)} for r in res]
    return gt, res


@pytest.mark.parametrize("seed", range(3))
def test_string_ids_shuffled_images_and_tied_scores_equal_pycocotools(seed):
    rng = np.random.default_rng(100 + seed)
    n = 0
    for _ in range(40):
        gt, res = random_case(rng)
        if not res:
            continue
        gt, res = _string_ids(gt, res, rng)
        np.testing.assert_allclose(ours(gt, res), reference(gt, res), rtol=0, atol=1e-12)
        n += 1
    assert n > 25


@pytest.mark.parametrize("seed", range(3))
def test_shuffled_int_ids_and_tied_scores_equal_pycocotools(seed):
    rng = np.random.default_rng(200 + seed)
    for _ in range(40):
        gt, res = random_case(rng)
        if not res:
            continue
        gt["images"] = [gt["images"][k] for k in rng.permutation(len(gt["images"]))]
        res = [{**r, "score": round(r["score"], 1)} for r in res]
        np.testing.assert_allclose(ours(gt, res), reference(gt, res), rtol=0, atol=1e-12)


def test_many_detections_per_group_truncated_to_100():
    # 1 class, > 100 detections per image: maxDets truncation per image per class before matching
    rng = np.random.default_rng(7)
    for _ in range(3):
        gt, res = random_case(rng, max_dets_per_image=260)
        for c in gt["categories"][1:]:
            c["id"] = gt["categories"][0]["id"]
        gt["categories"] = gt["categories"][:1]
        for a in gt["annotations"] + res:
            a["category_id"] = gt["categories"][0]["id"]
        np.testing.assert_allclose(ours(gt, res), reference(gt, res), rtol=0, atol=1e-12)


def base_gt(boxes, cats=(1, 2), crowd=None, area=None, image_ids=(1,)):
    anns = []
    for i, (img, c, b) in enumerate(boxes):
        anns.append(
            {
                "id": i + 1,
                "image_id": img,
                "category_id": c,
                "bbox": b,
                "area": b[2] * b[3] if area is None else area[i],
                "iscrowd": 0 if crowd is None else crowd[i],
            }
        )
    return {
        "images": [{"id": i, "width": 500, "height": 500} for i in image_ids],
        "categories": [{"id": c, "name": f"c{c}"} for c in cats],
        "annotations": anns,
    }


def det(img, c, b, s):
    return {"image_id": img, "category_id": c, "bbox": b, "score": s}


def check(gt, res):
    np.testing.assert_allclose(ours(gt, res), reference(gt, res), rtol=0, atol=1e-12)


def test_iou_exactly_at_thresholds():
    # IoU 0.5, 0.75 and 0.95 exactly (areas 50, 75, 95 of 100 inside the GT)
    gt = base_gt([(1, 1, [0, 0, 10, 10]), (1, 1, [100, 0, 10, 10]), (1, 1, [200, 0, 10, 10])])
    res = [det(1, 1, [0, 0, 10, 5], 0.9), det(1, 1, [100, 0, 10, 7.5], 0.8),
           det(1, 1, [200, 0, 10, 9.5], 0.7)]  # fmt: skip
    iou = box_iou_xywh(
        np.array([r["bbox"] for r in res], float),
        np.array([a["bbox"] for a in gt["annotations"]], float),
        np.zeros(3, bool),
    )
    assert iou.tolist() == [0.5, 0.75, 0.95]
    check(gt, res)


def test_crowd_matches_many_and_is_ignored():
    # crowd GT: IoU = inter / det area, matched detections ignored (neither TP nor FP)
    gt = base_gt(
        [(1, 1, [0, 0, 100, 100]), (1, 1, [10, 10, 20, 20]), (1, 2, [0, 0, 50, 50])],
        crowd=[1, 0, 1],
    )
    res = [det(1, 1, [10, 10, 20, 20], 0.9), det(1, 1, [50, 50, 10, 10], 0.8),
           det(1, 1, [60, 60, 10, 10], 0.85), det(1, 2, [0, 0, 10, 10], 0.5),
           det(1, 1, [11, 11, 20, 20], 0.95)]  # fmt: skip
    check(gt, res)
    # only crowd GT in class 2: -1 where pycocotools has no non-ignored GT anywhere
    r = evaluate_coco(coco_ground_truth(gt), coco_results(res, coco_ground_truth(gt)))
    assert (r.precision[:, :, 1] == -1).all()


def test_gt_area_field_decides_area_ranges_inclusive():
    # boxes are large but `area` says small/medium; bounds 32**2 and 96**2 are inclusive
    gt = base_gt(
        [(1, 1, [0, 0, 100, 100]), (1, 1, [200, 0, 100, 100]), (1, 2, [0, 200, 32, 32])],
        area=[32.0**2, 96.0**2, 5000.0],
    )
    res = [det(1, 1, [0, 0, 100, 100], 0.9), det(1, 1, [200, 0, 100, 100], 0.8),
           det(1, 2, [0, 200, 32, 32], 0.7), det(1, 2, [300, 300, 32, 32], 0.6),
           det(1, 1, [400, 400, 96, 96], 0.5)]  # fmt: skip
    check(gt, res)


def test_score_ties_keep_file_and_image_order():
    gt = base_gt(
        [(1, 1, [0, 0, 10, 10]), (2, 1, [0, 0, 10, 10]), (3, 1, [0, 0, 10, 10])],
        image_ids=(3, 1, 2),
    )
    res = [det(2, 1, [50, 50, 10, 10], 0.5), det(1, 1, [0, 0, 10, 10], 0.5),
           det(3, 1, [0, 0, 10, 10], 0.5), det(2, 1, [0, 0, 10, 10], 0.5),
           det(1, 1, [0, 1, 10, 10], 0.5)]  # fmt: skip
    check(gt, res)


def test_classes_and_images_without_gt():
    gt = base_gt([(1, 1, [0, 0, 10, 10])], cats=(1, 2, 3), image_ids=(1, 2, 3))
    res = [det(1, 1, [0, 0, 10, 10], 0.9), det(2, 2, [0, 0, 10, 10], 0.8),
           det(3, 1, [5, 5, 10, 10], 0.7)]  # fmt: skip
    check(gt, res)
    r = evaluate_coco(coco_ground_truth(gt), coco_results(res, coco_ground_truth(gt)))
    ap, ap50 = r.per_class_ap()
    assert ap[1] == -1 and ap[2] == -1 and ap50[0] == pytest.approx(1.0)


def test_class_with_gt_and_no_detections_is_zero():
    gt = base_gt([(1, 1, [0, 0, 10, 10]), (1, 2, [0, 0, 10, 10])])
    res = [det(1, 1, [0, 0, 10, 10], 0.9)]
    check(gt, res)
    r = evaluate_coco(coco_ground_truth(gt), coco_results(res, coco_ground_truth(gt)))
    assert r.per_class_ap()[1].tolist() == pytest.approx([1.0, 0.0])


def test_empty_predictions_give_zero_where_there_is_gt():
    gt = base_gt([(1, 1, [0, 0, 10, 10]), (1, 2, [0, 0, 100, 100])], cats=(1, 2, 3))
    g = coco_ground_truth(gt)
    stats = evaluate_coco(g, coco_results([], g)).stats
    # no medium GT at all -> -1, as pycocotools; everything else 0
    assert stats.tolist() == [0, 0, 0, 0, -1, 0, 0, 0, 0, 0, -1, 0]


def test_unknown_image_category_nan_negative_are_errors():
    g = coco_ground_truth(base_gt([(1, 1, [0, 0, 10, 10])]))
    with pytest.raises(DetectError, match="image"):
        coco_results([det(9, 1, [0, 0, 1, 1], 0.5)], g, "p.json")
    with pytest.raises(DetectError, match="category"):
        coco_results([det(1, 7, [0, 0, 1, 1], 0.5)], g, "p.json")
    with pytest.raises(DetectError, match="NaN"):
        coco_results([det(1, 1, [0, 0, 1, 1], float("nan"))], g, "p.json")
    with pytest.raises(DetectError, match="negative"):
        coco_results([det(1, 1, [0, 0, -1, 1], 0.5)], g, "p.json")
    with pytest.raises(DetectError, match="p.json"):
        coco_results({"not": "a list"}, g, "p.json")


def to_records(gt: dict) -> DatasetRecords:
    cats = [c["id"] for c in gt["categories"]]
    images = []
    for im in gt["images"]:
        a = [x for x in gt["annotations"] if x["image_id"] == im["id"]]
        xywh = np.array([x["bbox"] for x in a], np.float32).reshape(-1, 4)
        images.append(
            ImageRecord(
                path=Path(f"{im['id']}.jpg"),
                id=im["id"],
                width=im["width"],
                height=im["height"],
                boxes=np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], 1),
                classes=np.array([cats.index(x["category_id"]) for x in a], np.int64),
                area=np.array([x["area"] for x in a], np.float64),
                iscrowd=np.array([x["iscrowd"] for x in a], bool),
                difficult=np.zeros(len(a), bool),
            )
        )
    return DatasetRecords(
        [c["name"] for c in gt["categories"]], images, cats, "coco", Path("."), "val"
    )


def to_detections(res: list, gt: dict) -> Detections:
    ids = [im["id"] for im in gt["images"]]
    cats = [c["id"] for c in gt["categories"]]
    xywh = np.array([r["bbox"] for r in res], np.float32).reshape(-1, 4)
    return Detections(
        image=np.array([ids.index(r["image_id"]) for r in res], np.int64),
        boxes=np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], 1),
        scores=np.array([r["score"] for r in res], np.float32),
        classes=np.array([cats.index(r["category_id"]) for r in res], np.int64),
    )


def test_records_and_detections_api_equals_pycocotools():
    # the training loop's path: DatasetRecords + Detections (float32 xyxy), no JSON
    rng = np.random.default_rng(11)
    for _ in range(20):
        gt, res = random_case(rng)
        if not res:
            continue
        r = evaluate(to_records(gt), to_detections(res, gt))
        np.testing.assert_allclose(r.coco_stats, reference(gt, res), rtol=0, atol=1e-12)
        assert r.map == r.coco_stats[0] and r.map50 == r.coco_stats[1]
        j = r.to_json()
        assert list(j["coco"]) == ["AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10",
                                   "AR100", "ARs", "ARm", "ARl"]  # fmt: skip
        assert j["images"] == len(gt["images"])
        assert sum(c["gt"] for c in j["per_class"]) == len(gt["annotations"])
        assert sum(c["pred"] for c in j["per_class"]) == len(res)


def test_detections_on_unknown_image_index_is_an_error():
    gt, _ = random_case(np.random.default_rng(1))
    d = Detections(np.array([len(gt["images"])]), np.zeros((1, 4), np.float32),
                   np.ones(1, np.float32), np.zeros(1, np.int64))  # fmt: skip
    with pytest.raises(DetectError):
        evaluate(to_records(gt), d)


def test_recall_counts_match_searchsorted():
    # the least TP count c with fl(c / n) >= r, for every GT count up to 5000
    from detect.metrics.coco import CocoParams, recall_counts

    r = CocoParams().rec_thrs
    n = np.arange(1, 5001)
    got = recall_counts(n, r)  # [N,R]
    for i, ni in enumerate(n):
        want = np.searchsorted(np.arange(ni + 1) / ni, r, side="left")
        assert (got[i] == want).all(), ni


def test_precision_for_last_max_dets_only_keeps_the_stats():
    # evaluate() skips the precision curves of max_dets 1 and 10 (stats never read them)
    from detect.metrics.coco import accumulate, match

    rng = np.random.default_rng(21)
    for _ in range(10):
        gt, res = random_case(rng)
        if not res:
            continue
        g = coco_ground_truth(gt)
        p = coco_results(res, g)
        m = match(g, p)
        full_p, full_r = accumulate(g, p, m)
        part_p, part_r = accumulate(g, p, m, precision_for=(100,))
        assert np.array_equal(full_p[..., -1], part_p[..., -1])
        assert np.isnan(part_p[..., :-1]).all()
        assert np.array_equal(full_r, part_r)
        np.testing.assert_allclose(evaluate(g, p).coco_stats, reference(gt, res), atol=1e-12)
