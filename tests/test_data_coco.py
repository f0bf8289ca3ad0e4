"""COCO reader against pycocotools' own loading, bad data and fuzzing."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from detect.data import DetectError, load_dataset


def _coco(seed=0, n_images=12, n_cats=5):
    rng = np.random.default_rng(seed)
    cat_ids = sorted(rng.choice(np.arange(1, 91), n_cats, replace=False).tolist(), reverse=True)
    images, anns = [], []
    for _ in range(n_images):
        w, h = int(rng.integers(50, 640)), int(rng.integers(50, 640))
        iid = int(rng.integers(1, 10**9))
        images.append({"id": iid, "file_name": f"{iid:012d}.jpg", "width": w, "height": h})
        for _ in range(int(rng.integers(0, 6))):
            x, y = rng.uniform(0, w), rng.uniform(0, h)
            bw, bh = rng.uniform(0, w - x), rng.uniform(0, h - y)
            anns.append(
                {
                    "id": len(anns) + 1,
                    "image_id": iid,
                    "category_id": int(rng.choice(cat_ids)),
                    "bbox": [x, y, bw, bh],
                    "area": float(rng.uniform(1, 5000)),
                    "iscrowd": int(rng.random() < 0.2),
                }
            )
    cats = [{"id": c, "name": f"cat{c}", "supercategory": "x"} for c in cat_ids]
    return {"images": images, "annotations": anns, "categories": cats}


def test_matches_pycocotools(tmp_path):
    from pycocotools.coco import COCO

    doc = _coco()
    f = tmp_path / "instances_val.json"
    f.write_text(json.dumps(doc))
    rec = load_dataset(f, split="ignored")
    gt = COCO(str(f))
    assert rec.format == "coco"
    assert rec.category_ids == sorted(gt.getCatIds())
    assert rec.names == [gt.cats[c]["name"] for c in sorted(gt.getCatIds())]
    assert [im.id for im in rec.images] == [im["id"] for im in doc["images"]]
    for im in rec.images:
        info = gt.imgs[im.id]
        assert (im.width, im.height) == (info["width"], info["height"])
        assert im.path == tmp_path / info["file_name"]
        anns = gt.loadAnns(gt.getAnnIds(imgIds=[im.id]))
        xywh = np.array([a["bbox"] for a in anns], np.float64).reshape(-1, 4)
        np.testing.assert_allclose(im.boxes[:, :2], xywh[:, :2], rtol=1e-6)
        np.testing.assert_allclose(im.boxes[:, 2:], xywh[:, :2] + xywh[:, 2:], rtol=1e-6)
        assert [rec.category_ids[c] for c in im.classes] == [a["category_id"] for a in anns]
        np.testing.assert_array_equal(im.area, [a["area"] for a in anns])
        np.testing.assert_array_equal(im.iscrowd, [bool(a["iscrowd"]) for a in anns])
        assert not im.difficult.any()


def test_images_dir_default_and_given(tmp_path):
    doc = _coco(n_images=2)
    (tmp_path / "annotations").mkdir()
    (tmp_path / "val2017").mkdir()
    first = doc["images"][0]["file_name"]
    (tmp_path / "val2017" / first).write_bytes(b"")
    f = tmp_path / "annotations" / "instances_val2017.json"
    f.write_text(json.dumps(doc))
    assert load_dataset(f).images[0].path == tmp_path / "val2017" / first  # the COCO layout
    assert load_dataset(f, images=tmp_path / "x").images[0].path == tmp_path / "x" / first


def test_bad_coco(tmp_path):
    f = tmp_path / "c.json"
    f.write_text("{not json")
    with pytest.raises(DetectError, match="c.json.*malformed JSON"):
        load_dataset(f)
    doc = _coco(n_images=1)
    doc["annotations"] = [
        {"id": 7, "image_id": doc["images"][0]["id"], "category_id": 1000, "bbox": [0, 0, 1, 1]}
    ]
    f.write_text(json.dumps(doc))
    with pytest.raises(DetectError, match="c.json.*annotation 7.*1000"):
        load_dataset(f)
    iid = doc["images"][0]["id"]
    cid = doc["categories"][0]["id"]
    doc["annotations"] = [
        {"id": 1, "image_id": iid, "category_id": cid, "bbox": [0, 0, -1, 1]},  # bad: skipped
        {"id": 2, "image_id": 12345, "category_id": cid, "bbox": [0, 0, 1, 1]},  # no such image
        {"id": 3, "image_id": iid, "category_id": cid, "bbox": [3, 4, 0, 5]},  # zero size: kept
        {"id": 4, "image_id": iid, "category_id": cid, "bbox": [3, 4, "x", 5]},  # bad
    ]
    f.write_text(json.dumps(doc))
    rec = load_dataset(f)
    assert rec.report.bad_lines == 3 and rec.report.zero_size_boxes == 1
    np.testing.assert_array_equal(rec.images[0].boxes, [[3, 4, 3, 9]])
    np.testing.assert_array_equal(rec.images[0].area, [0.0])  # no `area`: the box area
    doc["images"] = []
    f.write_text(json.dumps(doc))
    with pytest.raises(DetectError, match="no images"):
        load_dataset(f)


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
    lambda kids: (
        st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=5), kids, max_size=4)
    ),
    max_leaves=15,
)
_val = st.one_of(
    st.integers(-3, 3),
    st.floats(),
    st.text(max_size=3),
    st.none(),
    st.booleans(),
    st.lists(st.floats(-10, 10), max_size=5),
    _json,
)
_obj = st.dictionaries(
    st.sampled_from(
        [
            "id",
            "image_id",
            "category_id",
            "bbox",
            "area",
            "iscrowd",
            "width",
            "height",
            "file_name",
            "name",
        ]
    ),
    _val,
    max_size=8,
)
_cocoish = st.fixed_dictionaries(
    {},
    optional={
        "images": st.lists(_obj, max_size=3) | _val,
        "annotations": st.lists(_obj, max_size=4) | _val,
        "categories": st.lists(_obj, max_size=3) | _val,
    },
)


@settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(doc=st.one_of(_cocoish, _json))
def test_fuzz_coco_raises_only_detect_error(tmp_path, doc):
    f = Path(tmp_path) / "fuzz.json"
    f.write_text(json.dumps(doc))
    try:
        rec = load_dataset(f)
    except DetectError:
        return
    for im in rec.images:
        assert im.boxes.shape == (len(im.classes), 4) == (len(im.area), 4)[:1] + (4,)
        assert ((im.classes >= 0) & (im.classes < len(rec.names))).all()
