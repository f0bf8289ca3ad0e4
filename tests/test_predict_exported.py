"""`detect predict` on an exported model (ONNX Runtime, OpenVINO) against the PyTorch path, the
rectangular letterbox against the square one, and tiled inference wired through the predictor.

The shipped shapes model predicts `detect synth` images of several aspects; the exported model
must give the same detections (same classes, boxes within 0.5 px) through the same outputs
(annotated images, label files, the COCO results list).
"""

from __future__ import annotations

import json
import subprocess
import sys
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from detect import tiling
from detect.cli.main import app
from detect.inference import PredictConfig, run_predict
from detect.inference.predictor import Predictor
from detect.models import load_weights
from detect.models.export import _openvino, export_metadata, export_model
from detect.resources import shapes_weights
from detect.synth import EASY, SynthConfig, render_image

SHAPES = shapes_weights()
# (rows, cols) kept of each 640 x 640 render: 4:3 landscape, square, portrait, wide
CROPS = [(480, 640), (640, 640), (640, 400), (360, 640)]


def _render(i: int) -> np.ndarray:
    cfg = SynthConfig(size=640, **{**EASY, "min_objects": 3})
    img, _, _ = render_image(np.random.default_rng([11, i]), cfg)
    return np.ascontiguousarray(img[..., ::-1])  # RGB -> BGR, as cv2 reads


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    d = tmp_path_factory.mktemp("imgs")
    paths = []
    for i, (h, w) in enumerate(CROPS):
        path = d / f"im{i}.png"
        cv2.imwrite(str(path), np.ascontiguousarray(_render(i)[:h, :w]))
        paths.append(path)
    return paths


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    d = tmp_path_factory.mktemp("exp")
    model, meta = load_weights(SHAPES)
    imgsz = int(meta["imgsz"])
    onnx_path = export_model(model, "onnx", d / "shapes-tiny.onnx", imgsz, meta)
    model, meta = load_weights(SHAPES)
    info = export_metadata(model, imgsz, meta)  # one trace for both formats
    ov_path = _openvino(onnx_path.read_bytes(), info, d / "shapes-tiny_openvino")
    return {"onnx": onnx_path, "openvino": ov_path}


def _assert_same(a: np.ndarray, b: np.ndarray, px: float, score: float = 1e-3) -> None:
    """Same detections: count, classes (in score order), boxes within `px`, scores."""
    assert a.shape == b.shape, (a, b)
    np.testing.assert_array_equal(a[:, 5], b[:, 5])
    np.testing.assert_allclose(a[:, :4], b[:, :4], atol=px, rtol=0)
    np.testing.assert_allclose(a[:, 4], b[:, 4], atol=score, rtol=0)


def _by_file(rows: list[dict]) -> dict[str, np.ndarray]:
    out: dict[str, list] = {}
    for r in rows:
        x, y, w, h = r["bbox"]
        out.setdefault(r["file_name"], []).append(
            [x, y, x + w, y + h, r["score"], r["category_id"]]
        )
    return {k: np.array(sorted(v, key=lambda t: -t[4]), np.float64) for k, v in out.items()}


def test_onnx_predict_matches_pytorch_through_the_same_outputs(images, exported, tmp_path):
    runs = {}
    for name, weights in [("pytorch", SHAPES), ("onnx", exported["onnx"])]:
        s = run_predict(
            [str(p) for p in images], weights, PredictConfig(batch=2), device="cpu",
            out=tmp_path / name, save_txt=True, save_json=tmp_path / f"{name}.json",
        )  # fmt: skip
        runs[name] = s
    pt, ox = runs["pytorch"], runs["onnx"]
    assert ox.device == "cpu (onnxruntime)" and pt.device == "cpu"
    assert ox.names == pt.names and ox.imgsz == pt.imgsz  # carried by the export
    assert ox.frames == pt.frames == len(images) and pt.detections >= 2 * len(images)
    assert (ox.saved_images, ox.saved_labels) == (pt.saved_images, pt.saved_labels)
    for sub in ("", "labels"):
        files = sorted(p.name for p in (pt.run_dir / sub).iterdir() if p.is_file())
        assert files and files == sorted(
            p.name for p in (ox.run_dir / sub).iterdir() if p.is_file()
        )
    a = _by_file(json.loads((tmp_path / "pytorch.json").read_text()))
    b = _by_file(json.loads((tmp_path / "onnx.json").read_text()))
    assert a.keys() == b.keys() and len(a) == len(images)
    for k in a:
        _assert_same(a[k], b[k], px=0.5)


def test_openvino_predictor_matches_pytorch(images, exported):
    imgs = [cv2.imread(str(p)) for p in images]
    cfg = PredictConfig(batch=4)
    ref = Predictor(SHAPES, cfg)(imgs)
    ov = Predictor(exported["openvino"], cfg)
    assert ov.runtime == "openvino" and ov.names == Predictor(SHAPES, cfg).names
    for a, b in zip(ref, ov(imgs), strict=True):
        _assert_same(a, b, px=0.5)


def test_exported_predictor_honours_agnostic_nms(images, exported):
    """--agnostic-nms reaches the numpy NMS of an exported model as it does the PyTorch one."""
    imgs = [cv2.imread(str(p)) for p in images]
    cfg = PredictConfig(batch=4, conf=0.001, iou=0.3, agnostic_nms=True)
    ref = Predictor(SHAPES, cfg)(imgs)
    per_class = Predictor(SHAPES, PredictConfig(batch=4, conf=0.001, iou=0.3))(imgs)
    assert sum(map(len, ref)) < sum(map(len, per_class))  # the option changes something here
    for a, b in zip(ref, Predictor(exported["onnx"], cfg)(imgs), strict=True):
        _assert_same(a, b, px=0.5)


class RedBoxModel(torch.nn.Module):
    """Finds the pure red pixels of its RGB input and returns their bounding box as class 0."""

    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))
        self.cfg = SimpleNamespace(arch="tiny", imgsz=320, names=["red"])
        self.shapes: list[tuple[int, int]] = []

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        self.shapes.append(tuple(x.shape[2:]))
        out = []
        for im in x:  # [3,H,W] RGB 0..1
            ys, xs = ((im[0] > 0.8) & (im[1] < 0.2) & (im[2] < 0.2)).nonzero(as_tuple=True)
            box = [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]  # pixel edges
            out.append(torch.tensor([[*map(float, box), 1.0, 1.0]]))
        return torch.stack(out)  # [B,1,6]


def test_rect_letterbox_maps_boxes_back_as_the_square_one():
    """Rectangular input = the square one with its padding cropped to a stride multiple: the
    same resize, so a box found in it maps back to the same original pixels (within rounding)."""
    cases = [((480, 640), (256, 320)), ((640, 400), (320, 224)), ((360, 640), (192, 320)),
             ((333, 517), (224, 320)), ((640, 640), (320, 320))]  # fmt: skip
    for (h, w), shape in cases:
        img = np.full((h, w, 3), 60, np.uint8)
        img[h // 5 : h // 2, w // 3 : w - 7] = (0, 0, 255)  # red in BGR
        got = {}
        for rect in (True, False):
            model = RedBoxModel()
            got[rect] = Predictor(model, PredictConfig(conf=0.5, rect=rect))([img])[0]
            assert model.shapes == [shape if rect else (320, 320)]
        _assert_same(got[True], got[False], px=1e-3)


def test_rect_letterbox_keeps_the_real_models_detections(images):
    """The trained model on 4:3, portrait and wide images at fewer pixels: every confident
    detection of the square letterbox is found again (same class, within 1.5 input pixels).
    Objects touching a padded border can move more (gray context there in training)."""
    rect = Predictor(SHAPES, PredictConfig(rect=True))
    square = Predictor(SHAPES, PredictConfig(rect=False))
    found = 0
    for p in images:
        im = cv2.imread(str(p))
        a, b = rect([im])[0], square([im])[0]
        tol = 1.5 * max(im.shape[:2]) / square.imgsz  # 1.5 input px in image pixels
        for row in b[b[:, 4] >= 0.5]:
            same = a[a[:, 5] == row[5]]
            assert len(same) and np.abs(same[:, :4] - row[:4]).max(1).min() <= tol, row
            found += 1
    assert found >= 10


def _sahi_merge(rows: np.ndarray, method: str) -> list:
    from sahi.postprocess.combine import GreedyNMMPostprocess, NMSPostprocess
    from sahi.prediction import ObjectPrediction

    preds = [
        ObjectPrediction(bbox=r[:4].tolist(), category_id=int(r[5]), score=float(r[4]))
        for r in rows
    ]
    cls = NMSPostprocess if method == "nms" else GreedyNMMPostprocess
    out = cls(match_threshold=0.5, match_metric="IOS", class_agnostic=False)(preds)
    return sorted(
        (
            tuple(np.float32(o.bbox.to_xyxy()).tolist()),
            np.float32(o.score.value).item(),
            o.category.id,
        )
        for o in out
    )


@pytest.mark.parametrize("method", ["nms", "nmm"])
def test_tiled_predict_equals_tiles_merged_by_sahi(method, exported):
    pytest.importorskip("sahi", reason="the oracle: `make install` installs sahi (no deps)")
    from sahi.postprocess.backends import set_postprocess_backend

    set_postprocess_backend("numpy")
    big = np.concatenate(
        [np.concatenate([_render(2 * r + c)[:480] for c in range(2)], 1) for r in range(2)], 0
    )  # 960 x 1280, four renders
    cfg = PredictConfig(tile=320, overlap=0.2, merge=method, batch=8)
    got = Predictor(exported["onnx"], cfg)([big])[0]
    # the same steps by hand: each window and the whole image alone, shifted, merged by SAHI
    # square letterbox: the whole image shares its batch with square tiles
    plain = Predictor(exported["onnx"], PredictConfig(batch=1, rect=False))
    windows = tiling.tile_windows(1280, 960, 320, 0.2)
    rows = [plain([np.ascontiguousarray(tiling.crop(big, w))])[0] for w in windows]
    rows = [
        np.concatenate((tiling.shift_boxes(r[:, :4], w), r[:, 4:]), 1)
        for r, w in zip(rows, windows, strict=True)
    ]
    rows = np.concatenate([*rows, plain([big])[0]])
    assert len(got) and len(got) < len(rows)
    ours = sorted(
        (tuple(r[:4].tolist()), np.float32(r[4]).item(), int(r[5])) for r in got.astype(np.float32)
    )
    ref = _sahi_merge(rows, method)
    assert len(ours) == len(ref)
    for (bo, so, co), (br, sr, cr) in zip(ours, ref, strict=True):
        assert co == cr and abs(so - sr) < 1e-4
        np.testing.assert_allclose(bo, br, atol=0.5)  # batched vs one tile at a time


def test_cli_predict_exported_with_tiles(exported, tmp_path):
    big = tmp_path / "big.png"
    cv2.imwrite(str(big), np.concatenate([_render(0), _render(1)], 1))  # 640 x 1280
    for weights in (exported["onnx"], exported["openvino"]):
        r = CliRunner().invoke(
            app,
            ["predict", str(big), "--weights", str(weights), "--tile", "320", "--overlap",
             "0.25", "--merge", "nmm", "--no-images", "--save-json", "-"],
        )  # fmt: skip
        assert r.exit_code == 0, r.output
        rows = json.loads(r.stdout)
        assert rows and {row["file_name"] for row in rows} == {"big.png"}
    r = CliRunner().invoke(app, ["predict", str(big), "--tile", "8", "--no-images"])
    assert "--tile must be >= 32" in str(r.exception)  # run() prints it as `error: ...`


def test_exported_predict_never_imports_torch(images, exported, tmp_path):
    """The whole `detect predict --weights model.onnx` process, PyTorch never loaded."""
    out = tmp_path / "run"
    argv = ["detect", "predict", str(images[0]), "--weights", str(exported["onnx"]), "--out",
            str(out), "--save-txt"]  # fmt: skip
    code = (
        f"import sys\nsys.argv = {argv!r}\nfrom detect.cli.main import run\n"
        "try:\n    run()\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
        "print([m for m in ('torch', 'torchvision') if m in sys.modules])"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().splitlines()[-1] == "[]"
    assert (out / images[0].name).is_file() and (out / "labels" / f"{images[0].stem}.txt").is_file()
