"""Reading predictions and COCO ground truth for evaluation: YOLO txt folders, COCO results,
string image ids, and one-line errors naming the file (and line)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from detect.errors import DetectError
from detect.metrics import coco_ground_truth, read_coco_ground_truth, read_predictions

GT = {
    "images": [
        {"id": "img_a", "file_name": "img_a.jpg", "width": 200, "height": 100},
        {"id": 7, "file_name": "000007.jpg", "width": 50, "height": 40},
    ],
    "categories": [{"id": 0, "name": "cat"}, {"id": 1, "name": "dog"}],
    "annotations": [
        {"id": 1, "image_id": "img_a", "category_id": 1, "bbox": [10, 20, 30, 40], "area": 5.0},
        {"id": 2, "image_id": 7, "category_id": 0, "bbox": [0, 0, 5, 5], "iscrowd": 1},
    ],
}


def test_coco_ground_truth_arrays():
    g = coco_ground_truth(GT)
    assert g.names == ["cat", "dog"] and g.image_ids == ["img_a", 7]
    assert g.image.tolist() == [0, 1] and g.classes.tolist() == [1, 0]
    assert g.xywh.tolist() == [[10, 20, 30, 40], [0, 0, 5, 5]]
    assert g.area.tolist() == [5.0, 25.0]  # missing `area`: the box area
    assert g.iscrowd.tolist() == [False, True]
    assert g.image_wh.tolist() == [[200, 100], [50, 40]]


def test_yolo_folder_to_pixels(tmp_path):
    g = coco_ground_truth(GT)
    (tmp_path / "img_a.txt").write_text("1 0.5 0.5 0.1 0.2 0.9\n\n0 0.25 0.75 0.5 0.5 0.3\n")
    (tmp_path / "000007.txt").write_text("0 0.5 0.5 1 1 0.5\n")
    p = read_predictions(tmp_path, g)
    # file order: 000007.txt first (sorted), then img_a.txt lines in order
    assert p.image.tolist() == [1, 0, 0] and p.classes.tolist() == [0, 1, 0]
    np.testing.assert_allclose(
        p.xywh, [[0, 0, 50, 40], [90, 40, 20, 20], [0, 50, 100, 50]], atol=1e-12
    )
    assert p.scores.tolist() == [0.5, 0.9, 0.3]


@pytest.mark.parametrize(
    "name, text, message",
    [
        ("img_a.txt", "1 0.5 0.5 0.1 0.2\n", "img_a.txt:1"),
        ("img_a.txt", "0 0.5 0.5 0.1 0.2 0.9\n1 0.5 nan 0.1 0.2 0.9\n", "img_a.txt:2"),
        ("img_a.txt", "5 0.5 0.5 0.1 0.2 0.9\n", "class 5"),
        ("img_a.txt", "1 0.5 0.5 -0.1 0.2 0.9\n", "negative"),
        ("nope.txt", "1 0.5 0.5 0.1 0.2 0.9\n", "nope.txt"),
    ],
)
def test_yolo_folder_errors_name_file_and_line(tmp_path, name, text, message):
    (tmp_path / name).write_text(text)
    with pytest.raises(DetectError, match=message) as e:
        read_predictions(tmp_path, coco_ground_truth(GT))
    assert "\n" not in str(e.value)


def test_results_with_string_and_digit_ids(tmp_path):
    g = coco_ground_truth(GT)
    res = [
        {"image_id": "img_a", "category_id": 1, "bbox": [1, 2, 3, 4], "score": 0.5},
        {"image_id": "7", "category_id": 0, "bbox": [1, 2, 3, 4], "score": 0.25},
    ]
    (tmp_path / "p.json").write_text(json.dumps(res))
    p = read_predictions(tmp_path / "p.json", g)
    assert p.image.tolist() == [0, 1] and p.classes.tolist() == [1, 0]


@pytest.mark.parametrize(
    "content, message",
    [
        ("{", "malformed JSON"),
        ('{"images": []}', "not a COCO instances JSON"),
        (json.dumps({**GT, "annotations": [{**GT["annotations"][0], "image_id": 99}]}), "99"),
        (json.dumps({**GT, "annotations": [{**GT["annotations"][0], "category_id": 9}]}), "9"),
    ],
)
def test_bad_ground_truth_json(tmp_path, content, message):
    f = tmp_path / "gt.json"
    f.write_text(content)
    with pytest.raises(DetectError, match=message) as e:
        read_coco_ground_truth(f)
    assert "gt.json" in str(e.value)


def test_bad_results_entries(tmp_path):
    g = coco_ground_truth(GT)
    for bad, msg in [
        ([{"image_id": 7, "category_id": 0, "bbox": [1, 2, 3], "score": 1}], "bbox"),
        ([{"image_id": 7, "category_id": 0, "bbox": [1, 2, 3, 4]}], "score"),
        ([{"image_id": 7, "category_id": 0, "bbox": [1, 2, 3, 4], "score": "x"}], "p.json"),
    ]:
        (tmp_path / "p.json").write_text(json.dumps(bad))
        with pytest.raises(DetectError, match=msg):
            read_predictions(tmp_path / "p.json", g)


def test_fast_and_generic_json_paths_agree(tmp_path, monkeypatch):
    from detect.metrics import predictions as P

    rng = np.random.default_rng(0)
    g = coco_ground_truth(GT)
    res = [
        {"image_id": int(rng.choice([7])), "category_id": int(rng.integers(2)),
         "bbox": [float(v) for v in rng.uniform(0, 50, 4)], "score": float(rng.random()),
         "file_name": "000007.jpg"}
        for _ in range(200)
    ]  # fmt: skip
    (tmp_path / "p.json").write_text(json.dumps(res))
    fast = read_predictions(tmp_path / "p.json", g)
    monkeypatch.setattr(P, "_fast_columns", lambda data: None)
    slow = read_predictions(tmp_path / "p.json", g)
    for a in ("image", "classes", "xywh", "scores"):
        assert np.array_equal(getattr(fast, a), getattr(slow, a))
    assert fast.xywh.tolist() == [r["bbox"] for r in res]  # float64, bit for bit


def test_coco_gt_file_reader_equals_the_dict_reader(tmp_path):
    # the typed msgspec path (masks skipped, missing `area` -> box area) and the generic one
    gt = {
        "images": [{"id": 3, "file_name": "a.jpg", "width": 10, "height": 20}, {"id": 1}],
        "categories": [{"id": 5, "name": "x"}, {"id": 2}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 2, "bbox": [1, 2, 3, 4],
             "segmentation": [[0, 0, 1, 1, 2, 0]], "iscrowd": 1},
            {"id": 2, "image_id": 3, "category_id": 5, "bbox": [0.5, 1.5, 2.25, 3], "area": 7.5},
        ],
    }  # fmt: skip
    for doc in (gt, {**gt, "images": [{**gt["images"][0], "width": 1.5}, gt["images"][1]]}):
        f = tmp_path / "gt.json"
        f.write_text(json.dumps(doc))
        a, b = read_coco_ground_truth(f), coco_ground_truth(doc)
        assert a.names == b.names == ["x", "2"] and a.image_paths == b.image_paths
        assert a.image_ids == b.image_ids == [3, 1] and a.category_ids == b.category_ids
        for name in ("image", "classes", "xywh", "area", "iscrowd", "image_wh"):
            assert np.array_equal(getattr(a, name), getattr(b, name)), name
    assert read_coco_ground_truth(f).area.tolist() == [12.0, 7.5]
