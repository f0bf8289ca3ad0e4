"""The window classifier: config, dense -> conv rewrite, weights round trip."""

from __future__ import annotations

import pytest
import torch

from detect.errors import DetectError
from detect.models.window import (
    WindowClassifier,
    WindowConfig,
    build_window_model,
    to_conv,
)

pytestmark = pytest.mark.usefixtures("one_thread")


def _random_model(seed: int = 0, **cfg) -> WindowClassifier:
    """A model with non-trivial BN statistics, in eval mode (what inference sees)."""
    torch.manual_seed(seed)
    model = build_window_model({"num_classes": 3, **cfg})
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.2)
    return model.eval()


@pytest.mark.parametrize(
    "imgsz, channels", [(32, [16, 32]), (48, [8, 16]), (40, [8, 8, 16]), (24, [8])]
)
def test_feature_size_and_stride_match_the_trunk(imgsz: int, channels: list[int]) -> None:
    model = build_window_model({"num_classes": 2, "imgsz": imgsz, "channels": channels})
    feat = model.trunk(torch.zeros(1, 3, imgsz, imgsz))
    assert feat.shape[-1] == feat.shape[-2] == model.cfg.feature_size
    assert model.stride == 2 ** len(channels)
    assert model.eval()(torch.zeros(2, 3, imgsz, imgsz)).shape == (2, 3)  # C + background


@pytest.mark.parametrize("hidden", [[], [32], [24, 16]])
def test_to_conv_on_one_crop_equals_the_dense_model(hidden: list[int]) -> None:
    model = _random_model(hidden=hidden)
    conv = to_conv(model).eval()
    x = torch.rand(5, 3, 32, 32)
    with torch.no_grad():
        dense = model(x)  # [5, 4]
        out = conv(x)  # [5, 4, 1, 1]: one window per crop
    assert out.shape == (5, 4, 1, 1)
    torch.testing.assert_close(out[:, :, 0, 0], dense, atol=1e-5, rtol=1e-5)


def test_to_conv_reuses_weights_without_retraining() -> None:
    model = _random_model()
    conv = to_conv(model)
    first_dense = next(m for m in model.head if isinstance(m, torch.nn.Linear))
    first_conv = next(m for m in conv.head if isinstance(m, torch.nn.Conv2d))
    f = model.cfg.feature_size
    assert first_conv.kernel_size == (f, f)
    assert torch.equal(first_conv.weight.flatten(1), first_dense.weight)
    assert conv.trunk is model.trunk  # shared, not copied
    later = [m for m in conv.head if isinstance(m, torch.nn.Conv2d)][1:]
    assert later and all(m.kernel_size == (1, 1) for m in later)


def test_conv_output_cells_are_the_crops_at_stride_multiples() -> None:
    model = _random_model(seed=1)
    conv = to_conv(model)
    s, w = model.stride, model.cfg.imgsz
    img = torch.rand(1, 3, 57, 70)
    with torch.no_grad():
        out = conv(img)[0]  # [4, Ho, Wo]
        for i, j in [(0, 0), (2, 5), ((57 - w) // s, (70 - w) // s)]:
            crop = img[:, :, i * s : i * s + w, j * s : j * s + w]
            torch.testing.assert_close(out[:, i, j], model(crop)[0], atol=1e-5, rtol=1e-5)


def test_config_round_trip_and_validation() -> None:
    cfg = WindowConfig(num_classes=2, names=["a", "b"], imgsz=48, channels=[8, 16], hidden=[16])
    assert WindowConfig.from_dict(cfg.to_dict()) == cfg
    assert WindowConfig.from_dict({**cfg.to_dict(), "unknown": 1}) == cfg
    with pytest.raises(DetectError):
        WindowConfig.from_dict({"num_classes": 2, "names": ["a"]})
    with pytest.raises(DetectError):
        build_window_model({"imgsz": 8, "channels": [8, 8]})  # no feature map left
    with pytest.raises(DetectError):
        WindowConfig.from_dict({"arch": "tiny"})
    with pytest.raises(DetectError):
        WindowConfig.from_dict([1, 2])


def test_weights_round_trip_gives_the_window_model_back(tmp_path) -> None:
    from detect.models.weights_file import load_weights, save_weights

    model = _random_model(seed=2, names=["x", "y", "z"])
    path = save_weights(tmp_path / "w.safetensors", model, {"training": {"epochs": 1}})
    loaded, meta = load_weights(path)
    assert isinstance(loaded, WindowClassifier)
    assert loaded.cfg == model.cfg
    assert meta["names"] == ["x", "y", "z"]
    x = torch.rand(3, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x))


def test_sampled_squares_positives_and_clean_negatives() -> None:
    import numpy as np
    import torchvision

    from detect.engine.tasks.window import NEG_IOU, sample_crops, sample_squares

    boxes = np.array([[10, 20, 50, 40], [100, 60, 130, 110], [60, 5, 70, 95]], np.float32)
    classes = np.array([2, 0, 1])
    sq = sample_squares(boxes, classes, 3, (120, 160), 32, np.random.default_rng(0), 3.0)
    pos, neg = sq[:3], sq[3:]
    assert pos[:, 3].tolist() == [2, 0, 1] and (neg[:, 3] == 3).all() and len(neg) >= 4
    # positives: centred on their object (+-10% of the side), side ~ the longest box side
    longest = np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
    assert ((pos[:, 2] >= 0.9 * longest - 1e-6) & (pos[:, 2] <= 1.25 * longest + 1e-6)).all()
    centre = pos[:, :2] + pos[:, 2:3] / 2
    box_centre = (boxes[:, :2] + boxes[:, 2:]) / 2
    assert (np.abs(centre - box_centre) <= 0.1 * pos[:, 2:3] + 1e-6).all()
    # negatives: inside the image, IoU with every object < NEG_IOU (torchvision's IoU)
    nb = torch.tensor(np.c_[neg[:, :2], neg[:, :2] + neg[:, 2:3]]).float()
    assert (nb[:, :2] >= -1e-4).all() and (nb[:, 2] <= 160 + 1e-4).all()
    assert (nb[:, 3] <= 120 + 1e-4).all()
    assert (torchvision.ops.box_iou(nb, torch.from_numpy(boxes)) < NEG_IOU).all()
    img = np.random.default_rng(1).integers(0, 256, (120, 160, 3), dtype=np.uint8)
    crops, labels = sample_crops(img, boxes, classes, 3, 32, np.random.default_rng(0), 3.0)
    assert crops.shape == (len(sq), 32, 32, 3) and labels.tolist() == sq[:, 3].tolist()


def test_window_task_writes_a_run_folder(tmp_path) -> None:
    from detect.engine import TrainConfig, train
    from detect.models import load_weights
    from detect.synth import SynthConfig, make_synth

    data = tmp_path / "shapes"
    make_synth(data, SynthConfig(train=6, val=2, size=96, seed=3, max_objects=3, min_scale=0.3))
    events: list[str] = []
    cfg = TrainConfig.create(
        data=str(data / "data.yaml"), model="window", epochs=2, batch=32, device="cpu",
        out=str(tmp_path / "runs" / "w"), imgsz=24,
    )  # fmt: skip
    res = train(cfg, lambda event: events.append(type(event).__name__))
    assert res.epochs == 2 and res.stopped == "epochs"
    for name in ("weights/best.safetensors", "weights/last.safetensors", "results.csv",
                 "args.json", "results.png"):  # fmt: skip
        assert (res.run_dir / name).is_file(), name
    lines = (res.run_dir / "results.csv").read_text().splitlines()
    assert len(lines) == 3 and "val_map50" in lines[0]
    model, meta = load_weights(res.last)
    assert isinstance(model, WindowClassifier) and model.cfg.imgsz == 24
    assert model.cfg.names == meta["names"] and len(model.cfg.names) == 6
    assert events[:2] == ["DataRead", "RunStart"] and events[-1] == "RunEnd"
    assert "EpochEnd" in events
