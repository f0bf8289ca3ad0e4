"""detect.runtime: torch-free inference on exported models.

Oracles: the PyTorch model's `predict` (each runtime's output, square and rectangular inputs),
`detect.data.transforms` (letterbox), torchvision.ops (NMS) and `detect.boxes.postprocess`.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
import torchvision
from hypothesis import given, settings
from hypothesis import strategies as st

from detect import runtime as rt
from detect.boxes import postprocess as torch_postprocess
from detect.data.transforms import letterbox as torch_letterbox
from detect.data.transforms import unletterbox_boxes as torch_unletterbox
from detect.errors import DetectError
from detect.models import ModelConfig, build_model, load_weights
from detect.models.common import set_head_bias
from detect.models.export import export_model
from detect.resources import shapes_weights

IMGSZ = 96


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    m = build_model(ModelConfig(num_classes=3, width=0.25, imgsz=IMGSZ, xy_scale=2.0))
    with torch.no_grad():  # non-trivial BN statistics and head biases
        for mod in m.modules():
            if isinstance(mod, torch.nn.BatchNorm2d):
                mod.running_mean.uniform_(-0.2, 0.2)
                mod.running_var.uniform_(0.5, 1.5)
        for head, a in zip(m.heads, m.num_anchors, strict=True):
            set_head_bias(head, torch.randn(a, m.num_outputs))
    return m.eval()


@pytest.fixture(scope="module")
def exports(model, tmp_path_factory):
    import copy

    from detect.models.export import _openvino, export_metadata

    d = tmp_path_factory.mktemp("exp")
    meta = {"training": {"epochs": 3}}
    onnx_path = export_model(copy.deepcopy(model), "onnx", d / "m.onnx", IMGSZ, meta)
    # the OpenVINO export converts these very ONNX bytes (one trace for both)
    info = export_metadata(model, IMGSZ, meta)
    ov_path = _openvino(onnx_path.read_bytes(), info, d / "m_openvino")
    return {"onnx": onnx_path, "openvino": ov_path}


@pytest.fixture(scope="module")
def loaded(exports):
    return {fmt: rt.load_exported(path) for fmt, path in exports.items()}


def _batch(b, h, w, seed=1):
    return np.random.default_rng(seed).integers(0, 256, (b, 3, h, w), dtype=np.uint8)


@pytest.mark.parametrize("fmt", ["onnx", "openvino"])
@pytest.mark.parametrize("hw", [(IMGSZ, IMGSZ), (64, IMGSZ), (IMGSZ, 32)])
def test_runtime_matches_pytorch(model, loaded, fmt, hw):
    """Square and rectangular inputs (dynamic H, W): the decode follows the grid size."""
    m = loaded[fmt]
    assert m.backend == ("onnxruntime" if fmt == "onnx" else "openvino")
    assert m.names == ["0", "1", "2"] and m.imgsz == IMGSZ and m.stride == 32 and m.dynamic
    assert m.meta["training"] == {"epochs": 3} and m.meta["config"]["num_classes"] == 3
    x = _batch(3, *hw)
    with torch.no_grad():
        ref = model.predict(torch.from_numpy(x).float() / 255).numpy()
    got = m(x)
    assert got.dtype == np.float32 and got.shape == ref.shape
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=2e-3)
    np.testing.assert_allclose(m(x.astype(np.float32) / 255), got, rtol=1e-5, atol=1e-4)


def test_runtime_imports_no_torch(exports):
    code = (
        "import sys, numpy as np\n"
        "from detect.runtime import load_exported, postprocess, letterbox_batch\n"
        "for p in sys.argv[1:]:\n"
        "    m = load_exported(p)\n"
        "    x, metas = letterbox_batch([np.zeros((50, 80, 3), np.uint8)], m.imgsz)\n"
        "    postprocess(m(x))\n"
        "bad = sorted(k for k in sys.modules if k.split('.')[0] in ('torch', 'torchvision'))\n"
        "print(bad)\n"
    )
    r = subprocess.run(
        [sys.executable, "-c", code, str(exports["onnx"]), str(exports["openvino"])],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"


def test_bf16_only_where_supported(exports):
    import openvino as ov

    m = rt.load_exported(exports["openvino"], precision="bf16")
    if "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"):
        assert m.precision == "bf16" and not m.note
    else:  # this machine (AVX2 only): the f32 fallback, and it says why
        assert m.precision == "f32" and "bf16" in m.note
    onnx = rt.load_exported(exports["onnx"], precision="bf16")
    assert onnx.precision == "f32" and "OpenVINO" in onnx.note
    with pytest.raises(DetectError, match="precision"):
        rt.load_exported(exports["onnx"], precision="fp8")


def test_input_checks(loaded):
    m = loaded["onnx"]
    with pytest.raises(DetectError, match="multiples of 32"):
        m(_batch(1, 96, 80))
    with pytest.raises(DetectError, match=r"\[B, 3, H, W\]"):
        m(np.zeros((96, 96, 3), np.uint8))


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # the legacy exporter's notices
def test_fixed_size_export_is_reported(model, tmp_path):
    """An export with a fixed S x S input (before dynamic H and W) runs at S x S only."""
    import copy
    import io

    import onnx

    buf = io.BytesIO()
    torch.onnx.export(
        copy.deepcopy(model),
        (torch.zeros(1, 3, IMGSZ, IMGSZ),),
        buf,
        dynamo=False,
        input_names=["images"],
        dynamic_axes={"images": {0: "batch"}},
    )
    proto = onnx.load_from_string(buf.getvalue())
    for k, v in {"names": json.dumps(["a", "b", "c"]), "imgsz": str(IMGSZ)}.items():
        proto.metadata_props.add(key=k, value=v)
    path = tmp_path / "old.onnx"
    path.write_bytes(proto.SerializeToString())
    m = rt.load_exported(path)
    assert not m.dynamic and m.names == ["a", "b", "c"]
    assert m(_batch(2, IMGSZ, IMGSZ)).shape[0] == 2
    with pytest.raises(DetectError, match="96 x 96 inputs only"):
        m(_batch(1, 64, IMGSZ))


def test_bad_files_name_the_path(exports, tmp_path):
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    )
    foreign = tmp_path / "foreign.onnx"
    onnx.save(helper.make_model(graph), str(foreign))
    with pytest.raises(DetectError, match="foreign.onnx: an ONNX model, but not a detect export"):
        rt.load_exported(foreign)
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a model")
    with pytest.raises(DetectError, match="junk.onnx: not a loadable ONNX model"):
        rt.load_exported(junk)
    with pytest.raises(DetectError, match="not found"):
        rt.load_exported(tmp_path / "missing.onnx")
    (tmp_path / "empty_openvino").mkdir()
    with pytest.raises(DetectError, match="empty_openvino: not an OpenVINO export of detect"):
        rt.load_exported(tmp_path / "empty_openvino")
    with pytest.raises(DetectError, match="not an exported model"):
        rt.load_exported(shapes_weights())
    assert rt.is_exported(exports["onnx"]) and rt.is_exported(exports["openvino"])
    assert not rt.is_exported(shapes_weights())
    # model.xml itself names the folder
    assert rt.load_exported(exports["openvino"] / "model.xml").backend == "openvino"


# ---------------------------------------------------------------------------------------------
# Letterbox


@pytest.mark.parametrize("hw", [(480, 640), (640, 480), (100, 37), (320, 320), (1000, 150)])
@pytest.mark.parametrize("size", [96, 320])
def test_square_letterbox_equals_transforms(hw, size):
    img = np.random.default_rng(0).integers(0, 256, (*hw, 3), dtype=np.uint8)
    out, scale, pad = rt.letterbox(img, size)
    ref, ref_scale, ref_pad = torch_letterbox(img, size)
    assert np.array_equal(out, ref) and scale == ref_scale and pad == ref_pad


@pytest.mark.parametrize(
    "hw, shape, pad",
    [
        ((480, 640), (256, 320), (0, 8)),  # 4:3 landscape: 320 x 240 -> 320 x 256, 8 px bands
        ((640, 480), (320, 256), (8, 0)),  # portrait
        ((333, 500), (224, 320), (0, 5)),  # 320 x 213 (round(333 * 0.64)) -> 224, (224-213)//2
        ((320, 320), (320, 320), (0, 0)),
        ((100, 1000), (32, 320), (0, 0)),  # 320 x 32 exactly: no padding at all
    ],
)
def test_rect_letterbox_hand_computed(hw, shape, pad):
    """Ultralytics' LetterBox(auto=True) at 320: the smallest multiple of 32 per side."""
    img = np.full((*hw, 3), 7, np.uint8)
    out, scale, got_pad = rt.letterbox(img, 320, auto=True)
    assert out.shape[:2] == shape and got_pad == pad
    assert rt.letterbox_shape(hw, 320, auto=True) == shape
    assert scale == min(320 / hw[0], 320 / hw[1])
    # the square letterbox is the rectangular one with more grey around it
    sq, _, sq_pad = rt.letterbox(img, 320)
    dy, dx = sq_pad[1] - pad[1], sq_pad[0] - pad[0]
    assert np.array_equal(sq[dy : dy + shape[0], dx : dx + shape[1]], out)


def test_letterbox_batch_shares_one_shape():
    imgs = [np.zeros((480, 640, 3), np.uint8), np.zeros((600, 800, 3), np.uint8)]
    x, metas = rt.letterbox_batch(imgs, 320)
    assert x.shape == (2, 3, 256, 320) and x.dtype == np.uint8
    assert metas[0] == rt.Letterbox(0.5, (0, 8), (480, 640))
    x, metas = rt.letterbox_batch([*imgs, np.zeros((640, 480, 3), np.uint8)], 320)
    assert x.shape == (3, 3, 320, 320)  # portrait + landscape: square
    assert metas[2].pad == (40, 0)
    x, _ = rt.letterbox_batch(imgs, 320, auto=False)
    assert x.shape == (2, 3, 320, 320)
    # BGR in, RGB out, channels first
    img = np.zeros((32, 32, 3), np.uint8)
    img[..., 0] = 200  # blue
    x, _ = rt.letterbox_batch([img], 32)
    assert x[0, 2].min() == 200 and x[0, 0].max() == 0


def test_unletterbox_inverts_letterbox_and_equals_transforms():
    rng = np.random.default_rng(3)
    boxes = np.sort(rng.uniform(0, 500, (50, 2, 2)), axis=1).reshape(50, 4)[:, [0, 2, 1, 3]]
    boxes = boxes.astype(np.float32)
    for auto in (False, True):
        _, scale, pad = rt.letterbox(np.zeros((500, 700, 3), np.uint8), 320, auto=auto)
        there = rt.letterbox_boxes(boxes, scale, pad)
        back = rt.unletterbox_boxes(there, scale, pad, (500, 700))
        np.testing.assert_allclose(back, boxes, atol=1e-3)
        assert back.dtype == np.float32
        np.testing.assert_array_equal(back, torch_unletterbox(there, scale, pad, (500, 700)))
    clipped = rt.unletterbox_boxes(np.array([[-20.0, -5, 400, 400]]), 0.5, (0, 8), (480, 640))
    np.testing.assert_allclose(clipped, [[0, 0, 640, 480]])


def test_rect_letterbox_gives_the_square_boxes():
    """The shipped model on a 4:3 photo-like image: rectangular input (320 x 256, 20% fewer
    pixels) finds the boxes of the square one, mapped back within rounding."""
    net, _ = load_weights(shapes_weights())
    net.fuse()
    img = _shapes_image(640, 480)
    found = {}
    for auto in (False, True):
        x, metas = rt.letterbox_batch([img], 320, auto=auto)
        with torch.no_grad():
            dec = net.predict(torch.from_numpy(x).float() / 255).numpy()
        d = rt.postprocess(dec, conf=0.25)[0]
        d[:, :4] = rt.unletterbox_boxes(d[:, :4], metas[0].scale, metas[0].pad, (480, 640))
        found[auto] = d
    assert x.shape[2:] == (256, 320)
    sq, rect = found[False], found[True]
    assert len(sq) >= 3 and len(rect) == len(sq)
    for row in sq:  # each square box has a rectangular twin of its class within 4 px
        err = np.abs(rect[:, :4] - row[:4]).max(1)
        j = err.argmin()
        assert err[j] < 4.0 and rect[j, 5] == row[5]


def _shapes_image(w: int, h: int) -> np.ndarray:
    """A `detect synth` image (easy settings, several objects) cropped to w x h."""
    from detect.synth import EASY, SynthConfig, render_image

    cfg = SynthConfig(size=max(w, h), **{**EASY, "min_objects": 5, "max_objects": 6})
    img, _, _ = render_image(np.random.default_rng(4), cfg)
    return np.ascontiguousarray(img[:h, :w])


# ---------------------------------------------------------------------------------------------
# NMS and post-processing


def _boxes(rng, n, ties):
    if ties:  # integer corners and a few score values: IoU exactly at thresholds, equal scores
        xy = rng.integers(0, 20, (n, 2)).astype(np.float32)
        wh = rng.integers(0, 8, (n, 2)).astype(np.float32)
        scores = (rng.integers(0, 4, n) / 4).astype(np.float32)
    else:
        xy = rng.uniform(-10, 100, (n, 2)).astype(np.float32)
        wh = rng.uniform(0.5, 40, (n, 2)).astype(np.float32)
        scores = rng.uniform(0, 1, n).astype(np.float32)
    return np.concatenate([xy, xy + wh], 1), scores


@settings(max_examples=100, deadline=None)
@given(
    seed=st.integers(0, 2**31),
    n=st.integers(0, 300),
    ties=st.booleans(),
    thr=st.sampled_from([0.0, 0.3, 1 / 3, 0.45, 0.5, 0.7, 1.0]),
)
def test_nms_equals_torchvision(seed, n, ties, thr):
    rng = np.random.default_rng(seed)
    boxes, scores = _boxes(rng, n, ties)
    classes = rng.integers(0, 4, n)
    tb, ts, tc = torch.from_numpy(boxes), torch.from_numpy(scores), torch.from_numpy(classes)
    got = rt.nms(boxes, scores, thr)
    assert got.dtype == np.int64
    np.testing.assert_array_equal(got, torchvision.ops.nms(tb, ts, thr).numpy())
    got = rt.batched_nms(boxes, scores, classes, thr)
    np.testing.assert_array_equal(got, torchvision.ops.batched_nms(tb, ts, tc, thr).numpy())


@pytest.mark.parametrize("ties", [False, True])
def test_nms_large_inputs_equal_torchvision(ties):
    """Above 512 boxes NMS takes its O(N)-memory path; above 1000 batched_nms goes per class
    (torchvision's switch). The kept set is torchvision's; in order up to equal scores."""
    rng = np.random.default_rng(5)
    boxes, scores = _boxes(rng, 2500, ties)
    classes = rng.integers(0, 7, 2500)
    tb, ts, tc = torch.from_numpy(boxes), torch.from_numpy(scores), torch.from_numpy(classes)
    for thr in (0.3, 0.5):
        np.testing.assert_array_equal(rt.nms(boxes, scores, thr), torchvision.ops.nms(tb, ts, thr))
        got = rt.batched_nms(boxes, scores, classes, thr)
        ref = torchvision.ops.batched_nms(tb, ts, tc, thr).numpy()
        assert np.array_equal(np.sort(got), np.sort(ref))
        np.testing.assert_array_equal(scores[got], scores[ref])  # same order up to ties


def test_nms_rejects_bad_shapes():
    with pytest.raises(DetectError, match=r"boxes must be an ndarray\[N, 4\]"):
        rt.nms(np.zeros((3, 5)), np.zeros(3), 0.5)
    with pytest.raises(DetectError, match="scores"):
        rt.batched_nms(np.zeros((3, 4)), np.zeros(2), np.zeros(3), 0.5)


def _decoded(rng, b, n, c, ties=False):
    xy = rng.uniform(0, 200, (b, n, 2))
    wh = rng.uniform(2, 60, (b, n, 2))
    probs = rng.uniform(0, 1, (b, n, 1 + c)) ** 2
    if ties:  # quantised: equal scores, equal class probabilities (argmax ties)
        xy, wh, probs = np.round(xy / 8) * 8, np.round(wh / 8) * 8, np.round(probs * 4) / 4
    return np.concatenate([xy, xy + wh, probs], -1).astype(np.float32)


@pytest.mark.parametrize(
    "kw",
    [
        {},
        {"conf": 0.05, "iou": 0.6},
        {"conf": 0.1, "multi_label": True},
        {"conf": 0.1, "classes": [0, 2]},
        {"conf": 0.05, "agnostic": True, "max_det": 7},
        {"conf": 0.0, "max_det": 0},
    ],
)
@pytest.mark.parametrize("ties", [False, True])
def test_postprocess_equals_torch(kw, ties):
    rng = np.random.default_rng(11)
    # with ties, at most 1000 candidates: above, torchvision orders equal scores by an unstable
    # sort (test_nms_large_inputs_equal_torchvision covers that path)
    dec = _decoded(rng, 3, 80 if ties else 400, 4, ties)
    got = rt.postprocess(dec, **kw)
    ref = torch_postprocess(torch.from_numpy(dec), **kw)
    assert len(got) == len(ref) == 3
    for g, r in zip(got, ref, strict=True):
        assert g.dtype == np.float32 and g.shape[1] == 6
        np.testing.assert_array_equal(g, r.numpy())


def test_postprocess_many_candidates_and_empty():
    """Evaluation settings (conf 0.001): thousands of candidates, torchvision's per-class path."""
    rng = np.random.default_rng(2)
    dec = _decoded(rng, 2, 3000, 3)
    for g, r in zip(
        rt.postprocess(dec, conf=0.001, max_det=300),
        torch_postprocess(torch.from_numpy(dec), conf=0.001, max_det=300),
        strict=True,
    ):
        np.testing.assert_array_equal(g, r.numpy())
    none = rt.postprocess(np.zeros((2, 10, 8), np.float32))
    assert [d.shape for d in none] == [(0, 6), (0, 6)]
    assert rt.postprocess(np.zeros((0, 10, 8), np.float32)) == []
    with pytest.raises(DetectError, match="5 \\+ C"):
        rt.postprocess(np.zeros((2, 10, 5), np.float32))
