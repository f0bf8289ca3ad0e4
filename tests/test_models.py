"""Detectors: output shapes, YOLOv2 decoding against hand-computed and brute-force values,
the published YOLOv2 figures, bias initialisation, BN fusion."""

from __future__ import annotations

import math

import pytest
import torch

from detect.errors import DetectError
from detect.models import ModelConfig, build_model, split_anchors
from detect.models.common import TWH_CLIP, head_bias, layer_table, set_head_bias

ANCHORS = [
    [[0.02, 0.03], [0.04, 0.02], [0.05, 0.05]],
    [[0.1, 0.2], [0.25, 0.125], [0.2, 0.2]],
    [[0.4, 0.3], [0.5, 0.8], [0.9, 0.9]],
]


def small_tiny(num_classes: int = 4, **kw) -> torch.nn.Module:
    cfg = ModelConfig(num_classes=num_classes, anchors=ANCHORS, width=0.25, **kw)
    return build_model(cfg).eval()


@pytest.mark.parametrize("hw", [(320, 320), (256, 320)])
def test_tiny_shapes_per_level(hw):
    m = small_tiny(num_classes=4)
    x = torch.rand(2, 3, *hw)
    with torch.no_grad():
        raw = m(x)
        dec = m.predict(x)
    assert m.strides == [8, 16, 32] and m.num_anchors == [3, 3, 3]
    for p, s in zip(raw, m.strides, strict=True):
        assert p.shape == (2, 3, hw[0] // s, hw[1] // s, 9)
    n = sum(3 * (hw[0] // s) * (hw[1] // s) for s in m.strides)
    assert dec.shape == (2, n, 9)


def test_decode_hand_computed_cell():
    """One chosen cell/anchor on the stride-16 level of a non-square 256x320 input."""
    m = small_tiny(num_classes=2)
    hw = (256, 320)
    raw = [torch.zeros(1, 3, hw[0] // s, hw[1] // s, 7) for s in (8, 16, 32)]
    # level 1 (stride 16, grid 16 x 20), anchor 1 = (0.25, 0.125), cell column 5, row 3
    raw[1][0, 1, 3, 5] = torch.tensor([0.0, math.log(3), math.log(2), 0.0, 0.0, 2.0, -1.0])
    dec = m.decode(raw, hw)
    offset = 3 * 32 * 40  # rows of level 0
    row = dec[0, offset + 1 * 16 * 20 + 3 * 20 + 5]
    cx, cy = (0.5 + 5) * 16, (0.75 + 3) * 16  # sigmoid(0) = 0.5, sigmoid(log 3) = 0.75
    # anchor fraction * the model's imgsz (320, whatever the input) * exp(tw)
    w, h = 0.25 * 320 * 2, 0.125 * 320
    expected = [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2, 0.5]
    expected += [1 / (1 + math.exp(-2.0)), 1 / (1 + math.exp(1.0))]
    torch.testing.assert_close(row, torch.tensor(expected), rtol=0, atol=1e-4)


def test_decode_stretched_offset_hand_computed():
    """xy_scale 2 (YOLOv5's 2 * sigmoid - 0.5): sigmoid 0.75 -> 1.0 cell, 0.25 -> 0.0."""
    m = small_tiny(num_classes=2, xy_scale=2.0)
    raw = [torch.zeros(1, 3, 64 // s, 64 // s, 7) for s in (8, 16, 32)]
    raw[0][0, 0, 2, 1, :2] = torch.tensor([math.log(3), -math.log(3)])  # sigmoid 0.75, 0.25
    row = m.decode(raw, (64, 64))[0, 2 * 8 + 1]
    cx, cy = (1 + 2 * 0.75 - 0.5) * 8, (2 + 2 * 0.25 - 0.5) * 8  # 16 px, 16 px
    torch.testing.assert_close(row[:2] + row[2:4], torch.tensor([2 * cx, 2 * cy]))
    # The offset spans (-0.5, 1.5) cells: a centre half a cell past either edge is reachable.
    raw[0][0, 0, 2, 1, :2] = torch.tensor([30.0, -30.0])
    row = m.decode(raw, (64, 64))[0, 2 * 8 + 1]
    torch.testing.assert_close((row[:2] + row[2:4]) / 2, torch.tensor([2.5 * 8, 1.5 * 8]))


def test_decode_matches_brute_force_loop():
    m = small_tiny(num_classes=3)
    hw = (64, 96)
    g = torch.Generator().manual_seed(0)
    raw = [torch.randn(2, 3, hw[0] // s, hw[1] // s, 8, generator=g) for s in (8, 16, 32)]
    dec = m.decode(raw, hw)
    rows = []
    for lvl, p in enumerate(raw):
        _, na, gh, gw, _ = p.shape
        for b in range(2):
            for a in range(na):
                for y in range(gh):
                    for x in range(gw):
                        t = p[b, a, y, x].tolist()
                        sig = [1 / (1 + math.exp(-v)) for v in t]
                        cx = (sig[0] + x) * hw[1] / gw
                        cy = (sig[1] + y) * hw[0] / gh
                        # anchors: fractions of the model's imgsz, fixed pixels at any input
                        w = ANCHORS[lvl][a][0] * m.cfg.imgsz * math.exp(t[2])
                        h = ANCHORS[lvl][a][1] * m.cfg.imgsz * math.exp(t[3])
                        rows.append((b, [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2, *sig[4:]]))
    # rows were produced level-major within each image, as decode orders them
    ref = torch.stack([torch.tensor([r for bb, r in rows if bb == b]) for b in range(2)])
    torch.testing.assert_close(dec, ref, rtol=1e-5, atol=1e-3)


def test_decode_clamps_size_and_stays_finite():
    m = small_tiny(num_classes=1)
    raw = [torch.full((1, 3, 320 // s, 320 // s, 6), 1e4) for s in (8, 16, 32)]
    dec = m.decode(raw, (320, 320))
    assert torch.isfinite(dec).all()
    w = dec[..., 2] - dec[..., 0]
    assert w.max() <= 0.9 * 320 * math.exp(TWH_CLIP) + 1e-2


def test_decode_is_differentiable():
    m = small_tiny(num_classes=2)
    x = torch.rand(1, 3, 64, 64)
    m.train()
    dec = m.predict(x)
    dec[..., :6].sum().backward()  # box, objectness and one class: both head branches
    for branch in (m.heads[0].box[-1], m.heads[0].cls[-1]):
        assert branch.weight.grad is not None and branch.weight.grad.abs().sum() > 0


def test_decoupled_head_layout_matches_a_single_conv():
    """The two branches interleave per anchor as one 1x1 conv head would: (box, obj, classes)."""
    m = small_tiny(num_classes=4)
    head = m.heads[1]
    x = torch.rand(2, head.box[0].conv.in_channels, 5, 7)
    with torch.no_grad():
        out = head(x).view(2, 3, 9, 5, 7)
        torch.testing.assert_close(out[:, :, :5], head.box(x).view(2, 3, 5, 5, 7))
        torch.testing.assert_close(out[:, :, 5:], head.cls(x).view(2, 3, 4, 5, 7))
    table = torch.arange(27.0).view(3, 9)
    set_head_bias(head, table)
    torch.testing.assert_close(head_bias(head, 3), table)


def test_bias_init_priors():
    m = small_tiny(num_classes=4)
    for head, s in zip(m.heads, m.strides, strict=True):
        b = head_bias(head, 3)
        torch.testing.assert_close(b[:, 4], torch.full((3,), math.log(8 / (640 / s) ** 2)))
        torch.testing.assert_close(b[:, 5:], torch.full((3, 4), math.log(0.6 / 3.01)))
        assert (b[:, :4] == 0).all()


def test_yolov2_published_figures():
    """darknet yolo.cfg (COCO) at 608: 50,983,561 = 50,962,889 trainable + 20,672 BN stats."""
    with torch.device("meta"):  # shapes and counts only: no memory, no compute
        m = build_model(ModelConfig(arch="yolov2", num_classes=80, imgsz=608))
        raw = m(torch.empty(1, 3, 608, 608))
    trainable = sum(p.numel() for p in m.parameters() if p.requires_grad)
    bn_stats = sum(
        b.numel() for n, b in m.named_buffers() if n.endswith(("running_mean", "running_var"))
    )
    assert trainable == 50_962_889
    assert bn_stats == 20_672
    assert trainable + bn_stats == 50_983_561
    assert len(raw) == 1 and raw[0].shape == (1, 5, 19, 19, 85)  # 19 x 19 x 425
    table = layer_table(m, 608)  # the darknet table its neck provides
    assert len(table) == 31 and table[-1][-1] == "19 x 19 x 425"
    assert table[27][1:] == ("reorg", "", "/ 2", "38 x 38 x 64", "19 x 19 x 256")
    assert table[28][-1] == "19 x 19 x 1280"


def test_fuse_keeps_outputs():
    m = small_tiny(num_classes=3)
    g = torch.Generator().manual_seed(1)
    for mod in m.modules():  # non-trivial BN statistics so the fold matters
        if isinstance(mod, torch.nn.BatchNorm2d):
            mod.running_mean.copy_(torch.randn(mod.num_features, generator=g) * 0.1)
            mod.running_var.copy_(torch.rand(mod.num_features, generator=g) + 0.5)
            mod.weight.data.copy_(torch.rand(mod.num_features, generator=g) + 0.5)
    x = torch.rand(2, 3, 96, 96)
    with torch.no_grad():
        ref = m.predict(x)
        out = m.fuse().predict(x)
    assert not any(isinstance(mod, torch.nn.BatchNorm2d) for mod in m.modules())
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-3)


def test_config_round_trip_and_validation():
    cfg = ModelConfig(num_classes=2, names=["cat", "dog"], width=0.5)
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(DetectError):
        build_model(ModelConfig(arch="nope", num_classes=2))
    with pytest.raises(DetectError):
        ModelConfig.from_dict({**cfg.to_dict(), "anchors": [[[0.1, 0.1]]]})  # 1 level for tiny
    with pytest.raises(DetectError):
        ModelConfig.from_dict({**cfg.to_dict(), "names": ["only-one"]})


def test_split_anchors_by_area():
    flat = [[0.5, 0.5], [0.01, 0.02], [0.2, 0.1], [0.05, 0.05], [0.9, 0.8], [0.1, 0.1]]
    levels = split_anchors(flat, 3)
    assert levels == [
        [[0.01, 0.02], [0.05, 0.05]],
        [[0.1, 0.1], [0.2, 0.1]],
        [[0.5, 0.5], [0.9, 0.8]],
    ]
    with pytest.raises(DetectError):
        split_anchors(flat[:5], 3)


def test_info_cli_prints_yolov2_figures():
    from typer.testing import CliRunner

    from detect.cli.main import app

    r = CliRunner().invoke(app, ["info", "--model", "yolov2", "--imgsz", "608", "--classes", "80"])
    assert r.exit_code == 0, r.output
    for text in ["50,983,561", "50,962,889", "20,672", "19 x 19 x 425", "reorg", "GFLOPs"]:
        assert text in r.output


def test_info_cli_on_weights_file(tmp_path):
    from typer.testing import CliRunner

    from detect.cli.main import app
    from detect.models.weights_file import save_weights

    m = small_tiny(num_classes=2, names=["cat", "dog"], xy_scale=2.0)
    w = save_weights(tmp_path / "m.safetensors", m, {"training": {"epochs": 3, "map50": 0.5}})
    r = CliRunner().invoke(app, ["info", str(w)])
    assert r.exit_code == 0, r.output
    total = f"{sum(p.numel() for p in m.parameters()):,}"  # trainable params, as printed
    for text in ["0=cat, 1=dog", "2 * sigmoid(t) - 0.5", total, "GFLOPs", "0.0200"]:
        assert text in r.output, text
    # the training summary as a table, not JSON; the layer table as for --model
    assert "Training summary" in r.output and '"epochs"' not in r.output
    assert any(
        line.split()[:2] == ["epochs", "3"] for line in r.output.replace("│", " ").splitlines()
    )
    assert "size/stride" in r.output and "conv" in r.output
