"""End to end: the shipped real-object model (weights/voc-tiny.safetensors) on PASCAL VOC photos.

It was trained on the `train` list of ../shared/voc2007-416 only; here it predicts the first
VAL_IMAGES photos of the `val` list (never seen in training) through the default weights of
`detect predict`, and the COCO AP50 of those predictions, scored by pycocotools, must reach a
floor set from the measured value on the same photos (weights/README.md has the full val
figures). A broken pipeline (channel order, mapping back, class ids, the wrong default weights)
drops it to near zero.
"""

from __future__ import annotations

import contextlib
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from detect.resources import default_weights

REPO = Path(__file__).resolve().parent.parent
VOC416 = REPO.parent / "shared" / "voc2007-416"
VOC_WEIGHTS = REPO / "weights" / "voc-tiny.safetensors"
VAL_IMAGES = 100
# Measured on these 100 photos: AP50 0.282 (pycocotools, this test); the floor leaves room for
# float differences across machines, not for a regression.
MAP50_FLOOR = 0.25

pycocotools = pytest.importorskip("pycocotools")


@pytest.fixture(scope="module")
def val_ids() -> list[str]:
    if not (VOC416 / "Annotations").is_dir():
        pytest.skip("../shared/voc2007-416 not present")
    return (VOC416 / "ImageSets/Main/val.txt").read_text().split()[:VAL_IMAGES]


def test_the_voc_model_is_the_default():
    assert VOC_WEIGHTS.is_file(), "the shipped VOC model is missing (weights/README.md)"
    assert default_weights() == VOC_WEIGHTS


def test_default_model_finds_voc_objects(val_ids, tmp_path):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    from detect.data import load_dataset

    ids = val_ids
    pred = tmp_path / "pred.json"
    r = subprocess.run(
        [sys.executable, "-m", "detect", "predict", *[str(VOC416 / "JPEGImages" / f"{i}.jpg")
         for i in ids], "--conf", "0.001", "--iou", "0.7", "--no-images", "--save-json",
         str(pred)], capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    rows = json.loads(pred.read_text())
    records = load_dataset(VOC416, "val")
    index = {str(im.id): k for k, im in enumerate(records.images[:VAL_IMAGES])}
    anns = []
    for k, im in enumerate(records.images[:VAL_IMAGES]):
        for b, c, d in zip(im.boxes.astype(float), im.classes, im.difficult, strict=True):
            w, h = b[2] - b[0], b[3] - b[1]
            anns.append({"id": len(anns) + 1, "image_id": k, "category_id": int(c),
                         "bbox": [b[0], b[1], w, h], "area": w * h, "iscrowd": int(d)})  # fmt: skip
    gt = {"images": [{"id": k} for k in range(VAL_IMAGES)], "annotations": anns,
          "categories": [{"id": c} for c in range(records.num_classes)]}  # fmt: skip
    dets = [{**r, "image_id": index[str(r["image_id"])]} for r in rows]
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = gt
        coco.createIndex()
        ev = COCOeval(coco, coco.loadRes(dets), "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    assert ev.stats[1] >= MAP50_FLOOR, f"AP50 {ev.stats[1]:.3f} < {MAP50_FLOOR}"
