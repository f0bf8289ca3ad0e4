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
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from detect import resources
from detect.resources import default_predict_weights, default_weights

REPO = Path(__file__).resolve().parent.parent
VOC416 = REPO.parent / "shared" / "voc2007-416"
VOC_WEIGHTS = REPO / "weights" / "voc-tiny.safetensors"
VOC_ONNX = REPO / "weights" / "voc-tiny.onnx"  # its export: `detect predict`'s CPU default
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


def test_the_voc_model_is_the_default(monkeypatch):
    assert VOC_WEIGHTS.is_file(), "the shipped VOC model is missing (weights/README.md)"
    assert default_weights() == VOC_WEIGHTS
    # predict: the ONNX export on the CPU, the safetensors where torch may find a GPU
    assert default_predict_weights("cpu") == VOC_ONNX
    assert default_predict_weights("cuda:0") == default_predict_weights("mps") == VOC_WEIGHTS
    monkeypatch.setattr(resources, "nvidia_gpu_visible", lambda: True)
    assert default_predict_weights("auto") == VOC_WEIGHTS
    monkeypatch.setattr(resources, "nvidia_gpu_visible", lambda: False)
    assert default_predict_weights("auto") == VOC_ONNX


def test_nvidia_gpu_visible_respects_cuda_visible_devices(monkeypatch):
    for hidden in ("", "-1"):
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", hidden)
        assert resources.nvidia_gpu_visible() is False


def test_shipped_onnx_is_the_export_of_the_shipped_weights(val_ids):
    """weights/voc-tiny.onnx was exported from this very voc-tiny.safetensors (the SHA-256 it
    records) and predicts what it predicts (PyTorch vs ONNX Runtime, 8 val photos)."""
    import cv2

    from detect.files import file_sha256
    from detect.inference.predictor import Predictor
    from detect.runtime import load_exported
    from detect.settings import PredictConfig

    exported = load_exported(VOC_ONNX)
    assert exported.meta["source"] == {
        "file": VOC_WEIGHTS.name,
        "sha256": file_sha256(VOC_WEIGHTS),
    }, "re-export it: detect export weights/voc-tiny.safetensors (weights/README.md)"
    imgs = [cv2.imread(str(VOC416 / "JPEGImages" / f"{i}.jpg")) for i in val_ids[:8]]
    cfg = PredictConfig(conf=0.05)
    ref, got = Predictor(VOC_WEIGHTS, cfg)(imgs), Predictor(exported, cfg)(imgs)
    assert sum(map(len, ref)) >= 8
    for a, b in zip(ref, got, strict=True):
        assert a.shape == b.shape
        np.testing.assert_array_equal(a[:, 5], b[:, 5])
        np.testing.assert_allclose(a[:, :4], b[:, :4], atol=0.5, rtol=0)
        np.testing.assert_allclose(a[:, 4], b[:, 4], atol=1e-3, rtol=0)


def test_default_predict_on_the_cpu_never_imports_torch(val_ids, tmp_path):
    """`detect predict photo.jpg` on a machine without a GPU: the shipped ONNX model, no torch."""
    photo = VOC416 / "JPEGImages" / f"{val_ids[0]}.jpg"
    argv = ["detect", "predict", str(photo), "--out", str(tmp_path / "run")]
    code = (
        f"import sys\nsys.argv = {argv!r}\nfrom detect.cli.main import run\n"
        "try:\n    run()\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
        "print([m for m in ('torch', 'torchvision') if m in sys.modules])"
    )
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}  # a CPU-only machine, even on a GPU box
    r = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().splitlines()[-1] == "[]"
    assert "onnxruntime" in r.stdout and (tmp_path / "run" / photo.name).is_file()


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
