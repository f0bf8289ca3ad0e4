"""Weights files: exact round trip, metadata, and a one-line DetectError naming the file for every
bad file (missing, truncated, foreign, tampered)."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save, save_file

from detect.errors import DetectError
from detect.models import ModelConfig, build_model
from detect.models.weights_file import init_from, load_weights, read_metadata, save_weights


@pytest.fixture()
def saved(tmp_path):
    cfg = ModelConfig(num_classes=3, names=["a", "b", "c"], width=0.25, imgsz=256)
    model = build_model(cfg)
    with torch.no_grad():  # move BN statistics off their defaults so they must round-trip
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
    model.eval()
    path = save_weights(tmp_path / "w.safetensors", model, {"training": {"epochs": 7}})
    return model, path


def test_round_trip_identical_outputs(saved):
    model, path = saved
    loaded, meta = load_weights(path)
    x = torch.rand(2, 3, 128, 128)
    with torch.no_grad():
        assert torch.equal(model.predict(x), loaded.predict(x))
    assert not loaded.training
    assert meta["names"] == ["a", "b", "c"] and meta["imgsz"] == 256
    assert meta["training"] == {"epochs": 7} and meta["detect_format"] == "1"
    assert meta["anchors"] == model.cfg.anchors and meta["config"]["arch"] == "tiny"
    assert loaded.cfg == model.cfg
    assert read_metadata(path) == meta


def test_metadata_values_are_strings(saved):
    _, path = saved
    with safe_open(str(path), framework="pt") as f:
        md = f.metadata()
    assert all(isinstance(v, str) for v in md.values())
    assert json.loads(md["config"])["width"] == 0.25


def _rewrite(src, dst, tensors=None, metadata=None):
    with safe_open(str(src), framework="pt") as f:
        md = dict(f.metadata())
        ts = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
    ts = tensors(ts) if tensors else ts
    md = metadata(md) if metadata else md
    dst.write_bytes(save(ts, metadata=md))
    return dst


def _assert_error(path, *words):
    with pytest.raises(DetectError) as e:
        load_weights(path)
    msg = str(e.value)
    assert str(path) in msg and "\n" not in msg
    for w in words:
        assert w in msg


def test_missing_file(tmp_path):
    _assert_error(tmp_path / "nope.safetensors", "not found")


@pytest.mark.parametrize("keep", [0.5, 0.99, 10])
def test_truncated_file(saved, tmp_path, keep):
    _, path = saved
    data = path.read_bytes()
    bad = tmp_path / "trunc.safetensors"
    bad.write_bytes(data[: int(len(data) * keep) if keep < 1 else keep])
    _assert_error(bad)


def test_not_safetensors(tmp_path):
    bad = tmp_path / "junk.safetensors"
    bad.write_bytes(b"\x80\x04pickle-ish bytes, never unpickled" * 4)
    _assert_error(bad)


def test_foreign_safetensors(tmp_path):
    bad = tmp_path / "foreign.safetensors"
    save_file({"weight": torch.zeros(3)}, str(bad), metadata={"format": "pt"})
    _assert_error(bad, "no detect metadata")


def test_shape_mismatch(saved, tmp_path):
    _, path = saved

    def grow(ts):
        k = next(k for k, v in ts.items() if v.ndim == 4)
        ts[k] = torch.zeros(ts[k].shape[0] + 1, *ts[k].shape[1:])
        return ts

    _assert_error(_rewrite(path, tmp_path / "shape.safetensors", tensors=grow), "do not match")


def test_missing_tensor(saved, tmp_path):
    _, path = saved

    def drop(ts):
        ts.pop(sorted(ts)[0])
        return ts

    _assert_error(_rewrite(path, tmp_path / "drop.safetensors", tensors=drop), "do not match")


def test_old_single_conv_head_is_named(saved, tmp_path):
    _, path = saved

    def old_head(ts):  # the layout before the decoupled head: one 1x1 conv per level
        ts = {k: v for k, v in ts.items() if not k.startswith("heads.")}
        for i in range(3):
            ts[f"heads.{i}.weight"] = torch.zeros(27, 8, 1, 1)
            ts[f"heads.{i}.bias"] = torch.zeros(27)
        return ts

    _assert_error(_rewrite(path, tmp_path / "old.safetensors", tensors=old_head), "old single-conv")


@pytest.mark.parametrize(
    "edit",
    [
        lambda md: {**md, "config": "{not json"},
        lambda md: {**md, "config": json.dumps({**json.loads(md["config"]), "arch": "nope"})},
        lambda md: {**md, "config": json.dumps({**json.loads(md["config"]), "num_classes": 5})},
        lambda md: {k: v for k, v in md.items() if k != "config"},
        lambda md: {**md, "detect_format": "99"},
    ],
    ids=["bad-json", "bad-arch", "class-count", "no-config", "format"],
)
def test_tampered_metadata(saved, tmp_path, edit):
    _, path = saved
    _assert_error(_rewrite(path, tmp_path / "meta.safetensors", metadata=edit))


def test_save_needs_cfg(tmp_path):
    with pytest.raises(DetectError):
        save_weights(tmp_path / "x.safetensors", torch.nn.Linear(2, 2))


def test_init_from_copies_parameters_or_names_the_misfit(saved):
    model, path = saved
    same = build_model(ModelConfig(num_classes=3, names=["a", "b", "c"], width=0.25))
    init_from(same, path, "--model tiny with 3 classes")
    for (k, a), b in zip(model.state_dict().items(), same.state_dict().values(), strict=True):
        assert torch.equal(a, b), k
    other = build_model(ModelConfig(num_classes=5, names=list("abcde"), width=0.25))
    with pytest.raises(DetectError, match=r"w\.safetensors: does not fit --model tiny with 5"):
        init_from(other, path, "--model tiny with 5 classes")
