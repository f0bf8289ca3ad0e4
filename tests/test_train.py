"""Training: augmentations keep boxes on objects, the loop's files, exact resume, NaN, time, DDP."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from detect.data._common import make_record
from detect.data.augment import AugmentConfig, AugmentedDataset, augment_hsv, flip_boxes_lr
from detect.data.types import DatasetRecords
from detect.engine import Hook, Stop, TrainConfig, train
from detect.engine.optim import EpochSampler, lr_factor
from detect.engine.state import load_resume_state, rng_state, set_rng_state
from detect.errors import DetectError

REPO = Path(__file__).resolve().parent.parent
COLOURS = [(0, 0, 255), (0, 255, 0), (255, 0, 0), (255, 255, 255), (0, 255, 255), (255, 0, 255)]


pytestmark = pytest.mark.usefixtures("one_thread")


def _rect_records(tmp_path: Path) -> DatasetRecords:
    """Six images (different sizes), each one rectangle of its own colour on black."""
    rng = np.random.default_rng(0)
    images = []
    for i, colour in enumerate(COLOURS):
        h, w = (80, 120) if i % 2 else (96, 64)
        img = np.zeros((h, w, 3), np.uint8)
        x1, y1 = int(rng.integers(0, w // 2)), int(rng.integers(0, h // 2))
        x2, y2 = x1 + int(rng.integers(12, w // 2)), y1 + int(rng.integers(12, h // 2))
        img[y1:y2, x1:x2] = colour
        path = tmp_path / f"{i}.png"
        cv2.imwrite(str(path), img)
        images.append(make_record(path, i, w, h, [(x1, y1, x2, y2)], [i]))
    return DatasetRecords(
        names=[str(i) for i in range(6)], images=images, category_ids=list(range(6)),
        format="yaml", source=tmp_path, split="train",
    )  # fmt: skip


def _mask(img_chw: torch.Tensor, colour_bgr) -> np.ndarray:
    rgb = img_chw.permute(1, 2, 0).numpy().astype(int)
    want = np.array(colour_bgr[::-1])
    return np.abs(rgb - want).max(-1) < 60  # [S,S]


@pytest.mark.parametrize("mosaic", [0.0, 1.0])
def test_augmented_boxes_stay_on_their_objects(tmp_path, mosaic):
    recs = _rect_records(tmp_path)
    cfg = AugmentConfig(mosaic=mosaic, hsv_h=0, hsv_s=0, hsv_v=0, fliplr=0.5, min_area=0.0)
    ds = AugmentedDataset(recs, 64, cfg, seed=3)
    checked = 0
    for epoch in range(4):
        ds.set_epoch(epoch)
        for i in range(len(ds)):
            img, targets, idx = ds[i]
            assert img.shape == (3, 64, 64) and img.dtype == torch.uint8 and idx == i
            classes = targets[:, 0].long().tolist()
            for row in targets:
                c = int(row[0])
                if classes.count(c) > 1:  # the same image twice in one mosaic
                    continue
                x1, y1, x2, y2 = row[1:].tolist()
                m = _mask(img, COLOURS[c])
                inside = m[int(np.ceil(y1)) : int(y2), int(np.ceil(x1)) : int(x2)]
                assert inside.size and inside.mean() > 0.8, (epoch, i, c, inside.mean())
                if mosaic == 0:  # the whole object is visible: its pixels' extent is the box
                    ys, xs = np.nonzero(m)
                    np.testing.assert_allclose(
                        [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], [x1, y1, x2, y2], atol=2
                    )
                checked += 1
    assert checked >= 20


def test_augmentation_is_deterministic_per_seed_epoch_index(tmp_path):
    recs = _rect_records(tmp_path)
    a, b = AugmentedDataset(recs, 64, seed=1), AugmentedDataset(recs, 64, seed=1)
    a.set_epoch(2)
    b.set_epoch(2)
    for i in (4, 0, 4):  # order does not matter
        ia, ta, _ = a[i]
        ib, tb, _ = b[i]
        assert torch.equal(ia, ib) and torch.equal(ta, tb)
    b.set_epoch(3)
    assert not torch.equal(a[1][0], b[1][0])


def test_hsv_and_flip():
    img = np.zeros((8, 8, 3), np.uint8)
    img[:, :4] = (0, 200, 0)  # green half (hue 60; red, hue 0, is a fixed point)
    img[:, 4:] = 128  # grey: no saturation, so a hue shift leaves it alone
    out = img.copy()
    augment_hsv(out, np.random.default_rng(0), 0.5, 0, 0)
    assert np.array_equal(out[:, 4:], img[:, 4:]) and not np.array_equal(out[:, :4], img[:, :4])
    same = img.copy()
    augment_hsv(same, np.random.default_rng(0), 0, 0, 0)
    assert np.array_equal(same, img)
    b = np.array([[1.0, 2.0, 5.0, 7.0]], np.float32)
    assert np.array_equal(flip_boxes_lr(b, 10), [[5.0, 2.0, 9.0, 7.0]])
    assert np.array_equal(flip_boxes_lr(flip_boxes_lr(b, 10), 10), b)


def test_sampler_shards_and_skips():
    s0, s1 = EpochSampler(10, seed=0, rank=0, world=2), EpochSampler(10, seed=0, rank=1, world=2)
    a, b = list(s0), list(s1)
    assert len(a) == len(b) == 5 and sorted(a + b) == list(range(10))
    s0.set_epoch(0, start=2)
    assert list(s0) == a[2:] and len(s0) == 3
    s0.set_epoch(1)
    assert list(s0) != a  # a new order each epoch


def test_schedule_and_rng_state_roundtrip():
    assert lr_factor(0, 0.01) == 1 and abs(lr_factor(1, 0.01) - 0.01) < 1e-12
    assert abs(lr_factor(0.5, 0.01) - 0.505) < 1e-12
    state = json.loads(json.dumps(rng_state()))  # survives JSON
    x = (np.random.rand(), torch.rand(3), __import__("random").random())
    set_rng_state(state)
    y = (np.random.rand(), torch.rand(3), __import__("random").random())
    assert x[0] == y[0] and torch.equal(x[1], y[1]) and x[2] == y[2]


# ---------------------------------------------------------------------------------------------
# The loop, on a tiny synthetic set


@pytest.fixture(scope="module")
def synth_data(tmp_path_factory) -> Path:
    from detect.synth import SynthConfig, make_synth

    out = tmp_path_factory.mktemp("synth") / "data"
    make_synth(out, SynthConfig(train=16, val=4, size=64, seed=5, max_objects=3, min_scale=0.15))
    return out / "data.yaml"


def _cfg(data: Path, out: Path, **kw) -> TrainConfig:
    base = dict(
        data=str(data), epochs=2, imgsz=64, batch=8, workers=0, width=0.25, out=str(out),
        anchors="auto", warmup_min_iters=2,
    )  # fmt: skip
    return TrainConfig.create(**{**base, **kw})


def _resume(run_dir: Path) -> TrainConfig:
    return TrainConfig.create(resume=str(run_dir), workers=0)


class StopAfter(Hook):
    """Asks the trainer to stop (as Ctrl-C does) after `steps` steps."""

    def __init__(self, steps: int) -> None:
        self.steps = steps

    def after_step(self) -> None:
        if self.trainer.iteration >= self.steps:
            self.trainer.request_stop(Stop.interrupted)


def _csv(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _tensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(path))


def test_train_files_and_exact_resume_mid_epoch(synth_data, tmp_path):
    from detect.models.weights_file import load_weights

    events = []
    a = train(_cfg(synth_data, tmp_path / "a"), lambda e: events.append(type(e).__name__))
    run = a.run_dir
    assert a.stopped == "epochs" and a.epochs == 2
    for f in ("args.json", "results.csv", "results.png", "resume.safetensors"):
        assert (run / f).is_file(), f
    rows = _csv(run / "results.csv")
    assert [r["epoch"] for r in rows] == ["1", "2"] and all(r["val_map"] != "" for r in rows)
    assert all(int(r["images"]) == 16 for r in rows)
    args = json.loads((run / "args.json").read_text())
    assert args["config"]["epochs"] == 2 and args["anchors"]["source"] == "auto"
    assert args["config"]["assigner"] == "tal"
    model, meta = load_weights(run / "weights" / "best.safetensors")
    assert meta["training"]["val_map"] == pytest.approx(a.map)
    assert meta["anchors"] == args["model"]["anchors"] != [[]]
    kinds = {"RunStart", "EpochStart", "StepEnd", "ValStart", "ValEnd", "EpochEnd", "RunEnd"}
    assert kinds <= set(events)

    # Same run, interrupted after the first batch (as Ctrl-C), then resumed: identical weights.
    b = train(_cfg(synth_data, tmp_path / "b"), extra_hooks=[StopAfter(1)])
    assert b.stopped == "interrupted"
    state, _ = load_resume_state(b.run_dir / "resume.safetensors")
    assert (state["epoch"], state["batch_start"]) == (0, 1)
    b2 = train(_resume(b.run_dir))
    assert b2.run_dir == b.run_dir and b2.epochs == 2 and b2.stopped == "epochs"
    ta, tb = (
        _tensors(run / "weights/last.safetensors"),
        _tensors(b.run_dir / "weights/last.safetensors"),
    )
    assert ta.keys() == tb.keys()
    for k in ta:
        assert torch.equal(ta[k], tb[k]), k
    rows_b = _csv(b.run_dir / "results.csv")
    assert [r["val_map"] for r in rows_b] == [r["val_map"] for r in rows]


def test_nan_loss_stops_and_keeps_last_good_checkpoint(synth_data, tmp_path):
    from detect.losses import DetectionLoss

    real = DetectionLoss()
    calls = []

    def nan_later(*args):
        loss, terms = real(*args)
        calls.append(1)
        return (loss * float("nan") if len(calls) > 2 else loss), terms  # epoch 2 goes bad

    with pytest.raises(DetectError, match="loss became nan at epoch 2"):
        train(_cfg(synth_data, tmp_path / "n", anchors=None), loss=nan_later)
    run = tmp_path / "n"
    state, _ = load_resume_state(run / "resume.safetensors")
    assert state["epoch"] == 1  # the good epoch-1 checkpoint is intact
    from detect.models.weights_file import load_weights

    load_weights(run / "weights" / "last.safetensors")


def test_time_budget_stops_validates_and_saves(synth_data, tmp_path):
    r = train(_cfg(synth_data, tmp_path / "t", epochs=None, time=0.01, anchors=None))
    assert r.stopped == "time" and r.epochs >= 1
    rows = _csv(r.run_dir / "results.csv")
    assert rows[-1]["val_map"] != ""
    assert (r.run_dir / "weights" / "best.safetensors").is_file()


def test_bad_options_are_one_line_errors(synth_data, tmp_path):
    with pytest.raises(DetectError, match="imgsz"):
        train(_cfg(synth_data, tmp_path / "x", imgsz=50))
    with pytest.raises(DetectError, match="optimizer"):
        train(_cfg(synth_data, tmp_path / "x", optimizer="lbfgs"))
    with pytest.raises(DetectError, match="assigner 'atss'"):
        train(_cfg(synth_data, tmp_path / "x", assigner="atss"))
    with pytest.raises(DetectError, match="not a training run folder"):
        train(_resume(tmp_path))


def test_config_assigner_default_and_old_runs():
    assert TrainConfig().task.assigner == "tal"
    # args.json of a run saved before the setting existed: it trained with the YOLOv2 rule
    assert TrainConfig.from_dict({"data": "d.yaml"}).task.assigner == "yolov2"
    assert TrainConfig.from_dict({"data": "d.yaml", "assigner": "tal"}).task.assigner == "tal"


def test_ddp_two_cpu_processes(synth_data, tmp_path):
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
        "--standalone", "-m", "detect", "train", str(synth_data), "--epochs", "1",
        "--imgsz", "64", "--batch", "4", "--workers", "0", "--out", str(out),
    ]  # fmt: skip
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=REPO, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    args = json.loads((out / "args.json").read_text())
    assert args["world_size"] == 2
    rows = _csv(out / "results.csv")
    # Each rank trained on its half: the images count is summed over both ranks.
    assert len(rows) == 1 and int(rows[0]["images"]) == 16 and rows[0]["val_map"] != ""
    assert (out / "weights" / "last.safetensors").is_file()
    assert not (tmp_path / "ddp-2").exists()  # only rank 0 made a run folder


def test_xy_scale_default_explicit_and_inherited_from_weights(tmp_path):
    from detect.engine.tasks.detector import start_model, xy_scale_for
    from detect.models import ModelConfig, build_model, save_weights
    from detect.settings import DetectorConfig

    assert xy_scale_for(DetectorConfig(), "tiny", None) == 2.0  # three positive cells per box
    assert xy_scale_for(DetectorConfig(), "yolov2", None) == 1.0  # the exact YOLOv2 decode
    assert xy_scale_for(DetectorConfig(xy_scale=1.5), "tiny", None) == 1.5
    old = build_model(ModelConfig(num_classes=2, width=0.25))  # xy_scale 1 (pre-stretch files)
    w = save_weights(tmp_path / "old.safetensors", old)
    arch, source = start_model(DetectorConfig(), str(w))  # --model not given: the file's
    assert arch == "tiny" and source["width"] == 0.25
    assert xy_scale_for(DetectorConfig(), arch, source) == 1.0  # fine-tuning keeps its decode
    assert start_model(DetectorConfig(model="yolov2"), str(w)) == ("yolov2", None)


def _assert_same_samples(plain, cached, epochs) -> None:
    """Every sample of every epoch in `epochs`: the same image and targets from both datasets."""
    for epoch in epochs:
        plain.set_epoch(epoch)
        cached.set_epoch(epoch)
        for i in range(len(plain)):
            ia, ta, _ = plain[i]
            ib, tb, _ = cached[i]
            assert torch.equal(ia, ib) and torch.equal(ta, tb)


def test_ram_cache_gives_the_same_samples(tmp_path):
    recs = _rect_records(tmp_path)
    plain, cached = AugmentedDataset(recs, 64, seed=2), AugmentedDataset(recs, 64, seed=2)
    seen = []
    rep = cached.cache_images(lambda done, total: seen.append((done, total)))
    assert seen[-1] == (6, 6) and rep.bytes == sum(im.nbytes for im, _, _ in cached._cache)
    assert rep.folder is None and rep.images == 6
    _assert_same_samples(plain, cached, epochs=(0, 1))
    for p in tmp_path.glob("*.png"):
        p.unlink()  # the cache no longer reads the files
    with pytest.raises(DetectError):
        plain[0]
    assert cached[0][0].shape == (3, 64, 64)


def test_disk_cache_gives_the_same_samples_and_is_reused(tmp_path):
    """`--cache disk`: the same samples as decoding each time, files reused by a second run,
    a new file when an image changes, and a damaged file costs a decode, not a wrong sample."""
    from detect.data.augment import disk_cache_name

    recs = _rect_records(tmp_path)
    folder = tmp_path / "cache"
    plain, cached = AugmentedDataset(recs, 64, seed=2), AugmentedDataset(recs, 64, seed=2)
    rep = cached.cache_images(disk=folder)
    files = sorted(folder.glob("*.npz"))
    assert (rep.images, rep.reused, len(files)) == (6, 0, 6)
    assert rep.bytes == sum(f.stat().st_size for f in files) and cached._cache is None
    _assert_same_samples(plain, cached, epochs=(0, 1))
    again = AugmentedDataset(recs, 64, seed=2).cache_images(disk=folder)
    assert (again.reused, len(list(folder.glob("*.npz")))) == (6, 6)
    assert disk_cache_name(recs.images[0].path, 96) != files[0].name  # another --imgsz
    first = recs.images[0].path
    (folder / disk_cache_name(first, 64)).write_bytes(b"not a zip")  # damaged
    sample = cached[0]
    plain.set_epoch(1)
    cached.set_epoch(1)
    assert torch.equal(plain[0][0], cached[0][0]) and sample[0].shape == (3, 64, 64)
    os.utime(first, ns=(1, 1))  # an edited image: its key changes
    assert AugmentedDataset(recs, 64, seed=2).cache_images(disk=folder).reused == 5
    blocked = tmp_path / "file"
    blocked.write_text("not a folder")
    with pytest.raises(DetectError, match="--cache disk: cannot write .*file"):
        AugmentedDataset(recs, 64, seed=2).cache_images(disk=blocked / "cache")


def test_fraction_single_cls_freeze_save_period_close_mosaic_and_finished_resume(
    synth_data, tmp_path
):
    """The ultralytics-style options in one short run, then --resume on the finished run: an
    error that says so and how to train further, and a warning naming the options it ignores."""
    from typer.testing import CliRunner

    from detect.cli.main import app
    from detect.engine import events as E
    from detect.models.weights_file import load_weights

    mosaic = []

    def on(e):
        if isinstance(e, E.EpochStart):
            mosaic.append(e.mosaic)

    cfg = _cfg(synth_data, tmp_path / "o", fraction=0.5, single_cls=True, freeze="backbone",
               save_period=1, close_mosaic_epochs=1)  # fmt: skip
    r = train(cfg, on)
    rows = _csv(r.run_dir / "results.csv")
    assert [int(x["images"]) for x in rows] == [8, 8]  # half of the 16 training images
    assert all(x["val_precision"] != "" and x["val_recall"] != "" for x in rows)
    assert mosaic == [True, False]  # no mosaic in the last epoch
    args = json.loads((r.run_dir / "args.json").read_text())
    assert args["frozen"] == ["stem", "stage2", "stage3", "stage4", "stage5"]
    w1, w2 = (_tensors(r.run_dir / f"weights/epoch{k}.safetensors") for k in (1, 2))
    assert torch.equal(w1["backbone.stem.conv.weight"], w2["backbone.stem.conv.weight"])  # frozen
    assert not torch.equal(w1["heads.0.box.1.weight"], w2["heads.0.box.1.weight"])  # trained
    _, meta = load_weights(r.run_dir / "weights/best.safetensors")
    assert meta["names"] == ["object"]
    from detect.cli.train import class_table, epoch_line

    table = class_table(r.best_eval, r.best_epoch)  # the closing per-class table
    assert "│ object " in table and "│ all " in table and "mAP50-95" in table
    from detect.engine.results import read_results

    line = epoch_line(read_results(r.run_dir / "results.csv")[-1], False)
    assert len(line) < 80 and line.split()[0] == "2" and len(line.split()) == 9

    with pytest.raises(DetectError, match="is finished: all 2 epochs are done.*--weights"):
        train(_resume(r.run_dir))
    res = CliRunner().invoke(app, ["train", "--resume", str(r.run_dir), "--epochs", "5",
                                   "--batch", "4", "--workers", "0"])  # fmt: skip
    assert isinstance(res.exception, DetectError) and "is finished" in str(res.exception)
    assert "ignored: --epochs, --batch" in res.output.replace("\n", " ")
