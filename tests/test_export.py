"""Export: onnxruntime, OpenVINO and TorchScript outputs match PyTorch's `predict` within 1e-4,
with a batch size other than the one traced and at other input sizes, square or not (dynamic
batch, height and width: the decode follows the grid)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from detect.cli.main import app
from detect.errors import DetectError
from detect.models import ModelConfig, build_model
from detect.models.common import set_head_bias
from detect.models.weights_file import load_weights, save_weights

IMGSZ = 96


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    torch.manual_seed(0)
    # xy_scale 2: the stretched centre offset that trained tiny models use
    model = build_model(ModelConfig(num_classes=3, width=0.25, imgsz=IMGSZ, xy_scale=2.0))
    with torch.no_grad():  # random, non-trivial BN statistics and head biases
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
        for head, a in zip(model.heads, model.num_anchors, strict=True):
            set_head_bias(head, torch.randn(a, model.num_outputs))
    return save_weights(tmp_path_factory.mktemp("w") / "m.safetensors", model.eval())


@pytest.fixture(scope="module")
def reference(weights):
    model, _ = load_weights(weights)  # unfused PyTorch model: the oracle
    x = torch.rand(3, 3, IMGSZ, IMGSZ, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        return x, model.predict(x)


def _export(weights, fmt, tmp_path):
    out = tmp_path / f"m.{fmt}"
    r = CliRunner().invoke(app, ["export", str(weights), "--format", fmt, "--out", str(out)])
    assert r.exit_code == 0, r.output
    return out


def _other_sizes(weights):
    """(input, PyTorch output) at 64 x 96 and 128 x 64: sizes the export was not traced at."""
    model, _ = load_weights(weights)
    g = torch.Generator().manual_seed(2)
    out = []
    for hw in [(64, IMGSZ), (128, 64)]:
        x = torch.rand(2, 3, *hw, generator=g)
        with torch.no_grad():
            out.append((x, model.predict(x)))
    return out


def test_onnx_matches_pytorch(weights, reference, tmp_path):
    import onnx
    import onnxruntime as ort

    out = _export(weights, "onnx", tmp_path)
    proto = onnx.load(str(out))
    assert proto.opset_import[0].version >= 17
    props = {p.key: p.value for p in proto.metadata_props}
    assert json.loads(props["names"]) == ["0", "1", "2"] and props["imgsz"] == str(IMGSZ)
    assert props["format"] == "detect-export" and json.loads(props["strides"]) == [8, 16, 32]
    assert len(json.loads(props["anchors"])) == 3 and "num_classes" in json.loads(props["config"])
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    x, ref = reference
    (got,) = sess.run(None, {"images": x.numpy()})  # batch 3, traced with batch 1
    assert got.shape == tuple(ref.shape)
    np.testing.assert_allclose(got, ref.numpy(), rtol=1e-4, atol=1e-4)
    for x, ref in _other_sizes(weights):
        (got,) = sess.run(None, {"images": x.numpy()})
        assert got.shape == tuple(ref.shape)
        np.testing.assert_allclose(got, ref.numpy(), rtol=1e-4, atol=1e-4)


def test_openvino_matches_pytorch(weights, reference, tmp_path):
    import openvino as ov

    r = CliRunner().invoke(app, ["export", str(weights), "--format", "openvino"])
    assert r.exit_code == 0, r.output
    out = weights.parent / f"{weights.stem}_openvino"  # the default: a folder beside W
    assert sorted(p.name for p in out.iterdir()) == ["metadata.json", "model.bin", "model.xml"]
    meta = json.loads((out / "metadata.json").read_text())
    assert meta["names"] == ["0", "1", "2"] and meta["imgsz"] == IMGSZ and meta["stride"] == 32
    assert meta["format"] == "detect-export" and meta["config"]["num_classes"] == 3
    compiled = ov.Core().compile_model(str(out / "model.xml"), "CPU")
    for x, ref in [reference, *_other_sizes(weights)]:
        got = compiled(x.numpy())[0]
        assert got.shape == tuple(ref.shape)
        np.testing.assert_allclose(got, ref.numpy(), rtol=1e-4, atol=1e-4)


def test_openvino_folder_is_replaced_whole(tmp_path):
    from detect.models.export import _replace_dir

    dst, new = tmp_path / "m_openvino", tmp_path / "new"
    dst.mkdir()
    (dst / "stale.txt").write_text("old")
    new.mkdir()
    (new / "model.xml").write_text("new")
    _replace_dir(new, dst)
    assert sorted(p.name for p in dst.iterdir()) == ["model.xml"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m_openvino"]  # no leftovers
    (tmp_path / "file").write_text("x")
    new.mkdir()
    with pytest.raises(DetectError, match="not a folder"):
        _replace_dir(new, tmp_path / "file")


@pytest.mark.filterwarnings("ignore::FutureWarning")  # torch.jit.load deprecation
def test_torchscript_matches_pytorch(weights, reference, tmp_path):
    out = _export(weights, "torchscript", tmp_path)
    extra = {"meta.json": ""}
    ts = torch.jit.load(str(out), _extra_files=extra)
    assert json.loads(extra["meta.json"])["imgsz"] == IMGSZ
    x, ref = reference
    with torch.no_grad():
        got = ts(x)
        torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-4)
        for x, ref in _other_sizes(weights):
            torch.testing.assert_close(ts(x), ref, rtol=1e-4, atol=1e-4)


def test_export_rejects_unknown_format(weights, tmp_path):
    r = CliRunner().invoke(app, ["export", str(weights), "--format", "tflite"])
    assert r.exit_code != 0 and "tflite" in str(r.exception)
