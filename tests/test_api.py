"""`from detect import Detector`: inputs of every kind, results, the same numbers as the library."""

from __future__ import annotations

import json
import subprocess
import sys
import types

import cv2
import numpy as np
import pytest

from detect import DetectError
from detect.resources import default_predict_weights, shapes_weights
from detect.synth import SynthConfig, make_synth


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """A tiny shapes set (8 train, 4 val images at 320) with a 12-frame clip."""
    out = tmp_path_factory.mktemp("api") / "shapes"
    make_synth(out, SynthConfig(train=8, val=4, seed=11, video=True, frames=12, **EASY))
    return out


EASY = {"min_scale": 0.15, "max_objects": 3, "max_occlusion": 0.1, "clutter": False}


@pytest.fixture(scope="module")
def det():
    from detect import Detector

    return Detector(shapes_weights())


def _labels(path):
    rows = np.loadtxt(path, ndmin=2)
    cxcy, wh = rows[:, 1:3] * 320, rows[:, 3:5] * 320
    return np.concatenate([cxcy - wh / 2, cxcy + wh / 2], 1), rows[:, 0].astype(int)


def test_import_detect_stays_light():
    code = (
        "import sys, detect; a = 'torch' in sys.modules or 'cv2' in sys.modules; "
        "detect.Detector; print(a, 'torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]  # and reaching Detector loads no torch


def test_default_detector_is_the_shipped_model():
    from detect import Detector

    d = Detector()
    assert d.weights == default_predict_weights("auto")  # detect.resources decides
    assert len(d.names) == 20 and "person" in d.names


def test_finds_the_drawn_shapes(det, data):
    """Oracle: the synthetic labels. Every labelled shape is found, its box within a few px."""
    from detect.iou import pairwise_iou

    img_path = data / "images" / "val" / "000000.jpg"
    r = det(img_path)[0]
    gt, cls = _labels(data / "labels" / "val" / "000000.txt")
    iou = pairwise_iou(gt, r.boxes.astype(np.float64))
    best = iou.argmax(1)
    assert (iou.max(1) > 0.8).all()
    np.testing.assert_array_equal(r.classes[best], cls)
    assert r.boxes.dtype == np.float32 and r.boxes.shape == (len(r), 4)
    assert r.scores.dtype == np.float32 and r.classes.dtype == np.int64
    assert r.names == det.names and r.path == str(img_path) and r.orig_shape == (320, 320)
    assert (np.diff(r.scores) <= 0).all()


def test_same_numbers_as_the_library_predictor(det, data):
    from detect.inference.run import make_predictor
    from detect.settings import PredictConfig

    img = cv2.imread(str(data / "images" / "val" / "000001.jpg"))
    lib = make_predictor(str(shapes_weights()), PredictConfig(conf=0.1), "cpu")([img])[0]
    r = det(img, conf=0.1)[0]
    np.testing.assert_array_equal(r.dets, lib)


def test_one_array_is_one_image_and_rgb_is_said(det, data):
    bgr = cv2.imread(str(data / "images" / "val" / "000002.jpg"))
    one = det(bgr)
    assert isinstance(one, list) and len(one) == 1  # (the bare predictor gave 320 results)
    rgb = np.ascontiguousarray(bgr[:, :, ::-1])
    as_rgb = det(rgb, channels="rgb")[0]
    np.testing.assert_array_equal(as_rgb.dets, one[0].dets)
    assert not np.array_equal(det(rgb)[0].dets, one[0].dets)  # RGB read as BGR: other boxes
    from PIL import Image

    np.testing.assert_array_equal(det(Image.fromarray(rgb))[0].dets, one[0].dets)
    many = det([bgr, rgb[:, :, ::-1], np.stack([bgr, bgr])[0]])
    assert len(many) == 3  # (batched: the same boxes up to float rounding of the batch's kernels)
    for m in many:
        np.testing.assert_allclose(m.dets, one[0].dets, atol=1e-3)
    assert len(det(np.stack([bgr, bgr]))) == 2  # [B, H, W, 3]: a batch
    gray = det(cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY))[0]
    assert gray.orig_shape == (320, 320)


@pytest.mark.parametrize(
    ("bad", "match"),
    [
        (np.zeros((64, 64, 3), np.float32), r"uint8.*float32 \[64x64x3\].*255"),
        (np.zeros((3, 64, 64), np.uint8), r"\[H, W, 3\].*3x64x64.*transpose"),
        (np.zeros((64, 64, 2), np.uint8), r"\[H, W, 3\].*64x64x2"),
        ({"not": "an image"}, "got dict"),
        ([], "empty list"),
    ],
)
def test_wrong_inputs_name_what_was_expected(det, bad, match):
    with pytest.raises(DetectError, match=match):
        det(bad)


def test_bare_predictor_refuses_one_array():
    from detect.inference.run import make_predictor
    from detect.settings import PredictConfig

    p = make_predictor(str(default_predict_weights("cpu")), PredictConfig(), "cpu")
    with pytest.raises(DetectError, match=r"pass \[image\]"):
        p(np.zeros((64, 64, 3), np.uint8))


def test_paths_folders_globs_and_videos(det, data, tmp_path):
    folder = data / "images" / "val"
    lazy = det(folder)
    assert isinstance(lazy, types.GeneratorType)  # read as it goes
    rs = list(lazy)
    assert [r.path for r in rs] == [str(p) for p in sorted(folder.glob("*.jpg"))]
    assert len(det(str(folder / "*.jpg"), stream=False)) == 4
    frames = list(det(data / "video.mp4"))
    assert [r.frame for r in frames] == list(range(12)) and frames[0].path.endswith("video.mp4")
    (tmp_path / "bad.jpg").write_text("not an image")
    (tmp_path / "good.jpg").write_bytes((folder / "000000.jpg").read_bytes())
    got = list(det(tmp_path))
    assert [r.error is None for r in got] == [False, True] and len(got[0]) == 0
    with pytest.raises(DetectError, match="no such file"):
        det(tmp_path / "missing.jpg")


def test_result_plot_coco_and_supervision(det, data, monkeypatch):
    r = det(data / "images" / "val" / "000000.jpg")[0]
    before = r.orig_img.copy()
    drawn = r.plot()
    assert drawn.shape == before.shape and drawn.dtype == np.uint8
    assert np.array_equal(r.orig_img, before) and not np.array_equal(drawn, before)
    rows = r.to_coco()
    assert len(rows) == len(r) and rows[0]["image_id"] == 0  # the stem 000000, an int
    x, y, w, h = rows[0]["bbox"]
    np.testing.assert_allclose([x, y, x + w, y + h], r.boxes[0], atol=1e-3)
    f = r.supervision_fields()
    assert f["xyxy"].shape == (len(r), 4) and f["tracker_id"] is None
    assert list(f["data"]["class_name"]) == [r.names[c] for c in r.classes]
    monkeypatch.setitem(sys.modules, "supervision", None)  # not installed
    with pytest.raises(DetectError, match="supervision_fields"):
        r.to_supervision()
    fake = types.SimpleNamespace(Detections=lambda **kw: kw)
    monkeypatch.setitem(sys.modules, "supervision", fake)
    assert r.to_supervision()["class_id"].tolist() == r.classes.tolist()


def test_options_per_call_and_unknown_ones(det, data):
    img = data / "images" / "val" / "000000.jpg"
    low, high = det(img, conf=0.01)[0], det(img, conf=0.5)[0]
    assert len(low) >= len(high) and (high.scores >= 0.5).all()
    assert det(img, classes=[1])[0].classes.tolist() in ([], [1] * len(det(img, classes=[1])[0]))
    with pytest.raises(DetectError, match="unknown option cnf"):
        det(img, cnf=0.5)
    with pytest.raises(DetectError, match="--conf must be in"):
        det(img, conf=2)


def test_track_in_one_call_equals_frame_by_frame_with_persist(det, data):
    whole = list(det.track(data / "video.mp4"))
    assert len(whole) == 12 and all(r.ids is not None for r in whole)
    cap = cv2.VideoCapture(str(data / "video.mp4"))
    steps = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        steps.append(det.track(frame, persist=True)[0])  # a user's own loop, one frame a call
    cap.release()
    for a, b in zip(whole, steps, strict=True):
        np.testing.assert_array_equal(a.ids, b.ids)
        np.testing.assert_allclose(a.boxes, b.boxes, atol=1e-4)
    # the clip's 3 shapes, each one id from its first frame to its last
    ids = {int(i) for r in whole for i in r.ids}
    assert len(ids) == len(np.unique(np.loadtxt(data / "video_gt.txt", delimiter=",")[:, 1]))
    assert "track_id" in whole[5].to_coco()[0]


def test_training_table_equals_evaluate(tmp_path):
    """Issue 26: the same weights on the same split score the same mAP in the training table,
    in Detector.evaluate and in `detect evaluate DATA --weights W` (one set of validation
    settings). A one-epoch fine-tune of the shapes model on 4 images."""
    from typer.testing import CliRunner

    from detect import Detector
    from detect.cli.main import make_app

    make_synth(tmp_path / "d", SynthConfig(train=4, val=4, seed=9, **EASY))
    yaml = str(tmp_path / "d" / "data.yaml")
    det = Detector(shapes_weights(), device="cpu")
    run = det.train(yaml, epochs=1, batch=4, workers=0, out=str(tmp_path / "runs" / "train"))
    assert det.weights == run.best  # the detector now predicts with the trained weights
    val = sorted(p.name for p in (run.run_dir / "val").iterdir())  # a first look at the best
    assert val == ["confusion_matrix.png", "pr_all.png", "val_batch0_labels.jpg",
                   "val_batch0_pred.jpg"]  # fmt: skip
    ev = det.evaluate(yaml)
    assert run.map50 > 0.3  # (a real score, not two zeros)
    assert (ev.map50, ev.map) == (run.map50, run.map)
    r = CliRunner().invoke(
        make_app(["evaluate"]), ["evaluate", yaml, "--weights", str(run.best), "--json", "-"]
    )
    assert r.exit_code == 0, r.output
    coco = json.loads(r.stdout[r.stdout.index("{") :])["coco"]
    assert (coco["AP50"], coco["AP"]) == (run.map50, run.map)


def test_export_then_predict_with_the_export(det, data, tmp_path):
    path = det.export("onnx", out=tmp_path / "shapes.onnx")
    from detect import Detector

    onnx = Detector(path)
    assert onnx.runtime == "onnxruntime" and onnx.names == det.names
    img = data / "images" / "val" / "000003.jpg"
    a, b = det(img)[0], onnx(img)[0]
    np.testing.assert_array_equal(a.classes, b.classes)
    np.testing.assert_allclose(a.boxes, b.boxes, atol=0.5)
    with pytest.raises(DetectError, match="exported model cannot be trained"):
        onnx.train(data / "data.yaml")
