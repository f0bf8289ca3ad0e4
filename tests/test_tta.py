"""Test-time augmentation (`detect predict --augment`, detect.inference.tta): the pass sides
(hand-computed), the mirror mapping, the merge against torchvision's batched NMS, a model that
finds one red box seen through every pass, and PyTorch vs ONNX Runtime agreement; and the fp16
model `--half` runs, against float32."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from test_predict_exported import RedBoxModel, _render
from torchvision.ops import batched_nms
from typer.testing import CliRunner

from detect.cli.main import app
from detect.inference.predictor import Predictor
from detect.inference.tta import flip_boxes_lr, merge_passes, tta_sides
from detect.models import load_weights
from detect.models.export import export_model
from detect.resources import shapes_weights
from detect.settings import PredictConfig

SHAPES = shapes_weights()


def test_tta_sides_round_to_the_stride():
    # 320 * 0.83 = 265.6 -> 8.3 strides -> 256; 320 * 0.67 = 214.4 -> 6.7 -> 224
    assert tta_sides(320, 32, [1.0, 0.83, 0.67]) == [320, 256, 224]
    assert tta_sides(416, 32, [1.0, 0.83, 0.67]) == [416, 352, 288]  # 345.3 -> 352, 278.7 -> 288
    assert tta_sides(64, 32, [0.3]) == [32]  # never below one stride


def test_flip_boxes_lr_by_hand():
    d = np.array([[10, 5, 30, 25, 0.9, 2]], np.float32)
    np.testing.assert_array_equal(flip_boxes_lr(d, 100), np.float32([[70, 5, 90, 25, 0.9, 2]]))
    np.testing.assert_array_equal(flip_boxes_lr(flip_boxes_lr(d, 100), 100), d)


@pytest.mark.parametrize("agnostic", [False, True])
def test_merge_passes_is_batched_nms(agnostic):
    rng = np.random.default_rng(3)
    passes = []
    for n in (40, 0, 25):
        xy = rng.uniform(0, 200, (n, 2))
        wh = rng.uniform(5, 60, (n, 2))
        passes.append(np.column_stack([xy, xy + wh, rng.uniform(0.1, 1, n), rng.integers(0, 3, n)]))
    cfg = PredictConfig(iou=0.5, max_det=30, agnostic_nms=agnostic)
    got = merge_passes([p.astype(np.float32) for p in passes], cfg)
    d = torch.from_numpy(np.concatenate(passes).astype(np.float32))
    cls = torch.zeros(len(d), dtype=torch.int64) if agnostic else d[:, 5].long()
    keep = batched_nms(d[:, :4], d[:, 4], cls, 0.5)[:30]
    np.testing.assert_array_equal(got, d[keep].numpy())
    assert len(got) == 30 and (np.diff(got[:, 4]) <= 0).all()


def test_every_pass_sees_the_object_and_one_box_survives():
    """A red box off-centre (a wrong mirror mapping would leave a second box): the three passes
    run at 320, 256 and 224 (rect letterbox of a 480 x 640 image), and the merged box is the
    object within the resize's rounding."""
    img = np.full((480, 640, 3), 60, np.uint8)
    img[96:240, 80:300] = (0, 0, 255)  # BGR red, x 80..300, y 96..240
    model = RedBoxModel()
    out = Predictor(model, PredictConfig(conf=0.5, augment=True))([img])[0]
    assert model.shapes == [(256, 320), (192, 256), (192, 224)]
    assert len(out) == 1
    np.testing.assert_allclose(out[0, :4], [80, 96, 300, 240], atol=3.0)  # 1 px at 224 = 2.9 px


def test_tta_onnx_matches_pytorch(tmp_path):
    imgs = [np.ascontiguousarray(_render(i)[:480]) for i in range(3)]
    model, meta = load_weights(SHAPES)
    onnx = export_model(model, "onnx", tmp_path / "m.onnx", int(meta["imgsz"]), meta)
    cfg = PredictConfig(augment=True, batch=3)
    ref, got = Predictor(SHAPES, cfg)(imgs), Predictor(onnx, cfg)(imgs)
    plain = Predictor(SHAPES, PredictConfig(batch=3))(imgs)
    assert sum(map(len, ref)) >= 6 and any(
        a.shape != b.shape or not np.allclose(a, b) for a, b in zip(ref, plain, strict=True)
    )  # the passes change something
    for a, b in zip(ref, got, strict=True):
        assert a.shape == b.shape
        np.testing.assert_array_equal(a[:, 5], b[:, 5])
        np.testing.assert_allclose(a[:, :4], b[:, :4], atol=0.5, rtol=0)


def test_cli_augment_and_half(tmp_path):
    path = tmp_path / "a.png"
    cv2.imwrite(str(path), _render(0))
    r = CliRunner().invoke(app, ["predict", str(path), "--augment", "--out", str(tmp_path / "o")])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "o" / "a.png").is_file()
    if not torch.cuda.is_available():
        r = CliRunner().invoke(app, ["predict", str(path), "--half", "--no-images"])
        assert "--half needs a CUDA device" in str(r.exception)
    r = CliRunner().invoke(
        app, ["predict", str(path), "--augment", "--method", "sliding", "--no-images"]
    )
    assert "--augment works with --method yolo only" in str(r.exception)


def test_half_model_decodes_like_float32():
    """What `--half` runs (weights and input in fp16, output cast to float32 for NMS), checked on
    the CPU, where torch also has fp16 convolutions: the confident boxes of the shapes model move
    less than 0.5 px. (The CLI refuses --half off CUDA: it is slower there, not faster.)"""
    model, _ = load_weights(SHAPES)
    model.fuse().eval()
    x = torch.from_numpy(np.stack([_render(i)[:320, :320, ::-1] for i in range(3)]).copy())
    x = x.permute(0, 3, 1, 2).float() / 255
    with torch.inference_mode():
        ref = model.predict(x)
        got = model.half().predict(x.half()).float()
    conf = ref[..., 4] * ref[..., 5:].max(-1).values > 0.25
    assert conf.sum() >= 5
    assert (got[..., :4] - ref[..., :4]).abs()[conf].max() < 0.5
    assert (got[..., 4:] - ref[..., 4:]).abs().max() < 0.01
