"""The training engine's rules, each alone, on a one-layer model (detectron2's test_engine style):
the loop, patience, close-mosaic, the time budget, multi-scale, NaN losses, resume state, and
the window task's resume through the whole engine."""

from __future__ import annotations

import math
import random
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from detect.engine import Hook, Stop, TrainConfig, Trainer, train
from detect.engine import hooks as H
from detect.engine.optim import EpochSampler
from detect.engine.state import rng_state
from detect.engine.tasks.detector import multi_scale
from detect.errors import DetectError

pytestmark = pytest.mark.usefixtures("one_thread")


class LineTask:
    """Fit y = 2x + 1 with nn.Linear(1, 1); `validate` returns the scripted (mAP50, mAP50-95)."""

    clip_grad = None
    default_epochs = 3
    val_images = 4

    def __init__(self, n: int = 16, batch: int = 4, maps=(), loss=None) -> None:
        torch.manual_seed(0)
        self.model = nn.Linear(1, 1)
        self.x = torch.linspace(-1, 1, n)[:, None]
        self.y = 2 * self.x + 1
        self.batch, self.sampler = batch, EpochSampler(n, seed=0)
        self.maps, self.loss = list(maps), loss
        self.mosaic_on = True
        self.epochs_seen: list[tuple[int, bool]] = []  # (epoch, mosaic) per loader

    def steps_per_epoch(self, epoch: int) -> int:
        return math.ceil(self.sampler.per_rank / self.batch)

    def loader(self, epoch: int):
        self.epochs_seen.append((epoch, self.mosaic_on))
        idx = list(self.sampler)
        return [(self.x[idx[i : i + self.batch]], self.y[idx[i : i + self.batch]])
                for i in range(0, len(idx), self.batch)]  # fmt: skip

    def step(self, model, batch, iteration, autocast):
        x, y = batch
        with autocast():
            out = model(x)
        loss = self.loss(out, y) if self.loss else ((out - y) ** 2).mean()
        return loss, {"cls": loss.detach()}, len(x)

    def validate(self, model, progress):
        return self.maps.pop(0) if self.maps else (0.0, 0.0)


def _trainer(task: LineTask, hooks, max_epochs: int = 3) -> Trainer:
    opt = torch.optim.SGD(task.model.parameters(), lr=0.1)
    return Trainer(task, opt, hooks, max_epochs=max_epochs)


def test_loop_runs_every_step_and_hook_in_order():
    calls = []

    class Record(Hook):
        def before_epoch(self):
            calls.append(("epoch", self.trainer.epoch))

        def after_step(self):
            calls.append(("step", self.trainer.iteration))

    task = LineTask()
    mse = lambda: ((task.model(task.x) - task.y) ** 2).mean().item()  # noqa: E731
    before = mse()
    t = _trainer(task, [Record()], max_epochs=2)
    assert t.train() == Stop.epochs and (t.epoch, t.iteration) == (2, 8)
    assert calls[:5] == [("epoch", 0), ("step", 1), ("step", 2), ("step", 3), ("step", 4)]
    assert calls[5] == ("epoch", 1) and len(calls) == 10
    assert mse() < before / 4  # it learned


def test_patience_stops_after_n_validations_without_improvement():
    # fitness 0.1 mAP50 + 0.9 mAP: epoch 1 best, 2 and 3 worse -> patience 2 stops after 3
    maps = [(0.5, 0.5), (0.4, 0.4), (0.5, 0.45), (0.9, 0.9)]
    task = LineTask(maps=maps)
    best = H.BestModel()
    t = _trainer(task, [H.Validate(1), best, H.EarlyStop(2)], max_epochs=10)
    assert t.train() == Stop.patience
    assert t.epoch == 3 and (best.epoch, best.map) == (1, (0.5, 0.5)) and len(task.maps) == 1
    # an improvement resets the count; validating every 2nd epoch counts validations, not epochs
    task = LineTask(maps=[(0.1, 0.1), (0.2, 0.2), (0.1, 0.1), (0.1, 0.1)])
    t = _trainer(task, [H.Validate(2), H.BestModel(), H.EarlyStop(2)], max_epochs=10)
    assert t.train() == Stop.patience and t.epoch == 8
    # 0: never
    task = LineTask(maps=[(0.1, 0.1)] + [(0.0, 0.0)] * 5)
    assert _trainer(task, [H.Validate(1), H.BestModel(), H.EarlyStop(0)], 6).train() == "epochs"


def test_close_mosaic_turns_mosaic_off_for_the_last_part_of_the_run():
    task = LineTask()
    schedule = H.LRSchedule(0.1, 0.01, 0, None)  # progress by iterations: epoch e starts at e/4
    t = _trainer(task, [schedule, H.CloseMosaic(0.25, schedule.progress)], max_epochs=4)
    t.train()
    assert task.epochs_seen == [(0, True), (1, True), (2, True), (3, False)]
    # alone: the rule is progress < 1 - fraction
    fake = SimpleNamespace(task=SimpleNamespace(mosaic_on=None))
    hook = H.CloseMosaic(0.1, lambda: 0.85)
    hook.trainer = fake
    hook.before_epoch()
    assert fake.task.mosaic_on is True
    hook.progress = lambda: 0.9
    hook.before_epoch()
    assert fake.task.mosaic_on is False


class _Clock(SimpleNamespace):
    def elapsed(self):
        return self.now


def test_time_budget_keeps_room_for_the_final_validation():
    budget = H.TimeBudget(100.0)
    stops = []
    clock = _Clock(now=0.0, request_stop=stops.append, elapsed_before=0.0, images_seen=10,
                   t_start=0.0, task=SimpleNamespace(val_images=40))  # fmt: skip
    budget.trainer = clock
    budget.last_val_seconds = 10.0  # reserve 1.5 x 10 + 3 = 18 s
    clock.now = 81.9
    budget.after_step()
    assert stops == []
    clock.now = 82.0
    budget.after_step()
    assert stops == [Stop.time]
    # before the first validation: half the time of training on as many samples, + 2 s
    budget.last_val_seconds = None
    clock.t_start = __import__("time").perf_counter() - 5.0  # 10 samples in 5 s: 0.5 s each
    clock.now = 100 - 1.5 * (0.5 * 0.5 * 40 + 2.0) - 3.0 - 1.0  # 1 s of room left
    assert not budget.out_of_time()
    clock.now += 1.5
    assert budget.out_of_time()
    # a resumed run whose budget is spent stops before its first step; no budget: never
    stops.clear()
    clock.elapsed_before = 100.0
    budget.before_train()
    assert stops == [Stop.time] and not H.TimeBudget(None).out_of_time()


def test_time_budget_stops_the_loop_mid_epoch():
    task = LineTask(n=64, batch=4)
    budget = H.TimeBudget(1e-3)  # already spent after the first step
    t = _trainer(task, [budget, H.Validate(5, budget)], max_epochs=3)
    assert t.train() == Stop.time
    assert (t.epoch, t.iteration) == (1, 1)  # the epoch ends there, and is validated
    assert budget.last_val_seconds is not None


def test_multi_scale_sides_and_boxes():
    x = torch.rand(2, 3, 64, 64)
    targets = torch.tensor([[0, 1, 8.0, 16.0, 32.0, 48.0]])
    sides = set()
    for seed in range(40):
        expect = int(random.Random(seed).uniform(32, 128)) // 32 * 32  # [0.5, 1.5] x 64 + 32
        y, t = multi_scale(x, targets, 64, random.Random(seed))
        assert y.shape == (2, 3, expect, expect)
        torch.testing.assert_close(t[:, 2:], targets[:, 2:] * expect / 64)
        assert torch.equal(t[:, :2], targets[:, :2])
        sides.add(expect)
    assert sides == {32, 64, 96}  # 0.5 x to 1.5 x imgsz, multiples of 32
    same, t = multi_scale(x, targets, 64, SimpleNamespace(uniform=lambda a, b: 70.0))
    assert same is x and t is targets  # the drawn side is the input's: nothing to do


def test_nan_loss_is_an_error_naming_the_step():
    task = LineTask(loss=lambda out, y: out.sum() * float("nan"))
    with pytest.raises(DetectError, match="loss became nan at epoch 1, batch 1"):
        _trainer(task, []).train()


class StopAfter(Hook):
    """Asks the trainer to stop, as Ctrl-C does, after `steps` steps."""

    def __init__(self, steps: int) -> None:
        self.steps = steps

    def after_step(self) -> None:
        if self.trainer.iteration >= self.steps:
            self.trainer.request_stop(Stop.interrupted)


def test_state_dict_round_trip_continues_exactly():
    """Stop after 4 steps, restore the state into a fresh trainer: the weights of one
    uninterrupted run (the resume file stores exactly these tensors and scalars)."""

    def run(extra=(), state=None):
        task = LineTask(n=12, batch=4)
        hooks = [H.LRSchedule(0.1, 0.01, 2, None), H.EMA(task.model, 0.9, 2.0), H.BestModel()]
        t = _trainer(task, [*hooks, *extra], max_epochs=3)
        if state is not None:
            t.load_tensors_and_state(*state)
        t.train()
        return t

    full = run()
    part = run(extra=[StopAfter(4)])
    assert part.stop_reason == Stop.interrupted and (part.epoch, part.epoch_step) == (1, 1)
    resumed = run(state=(part.tensors(), {**part.state_dict(), "rng": rng_state()}))
    assert resumed.iteration == full.iteration == 9
    for k, v in full.tensors().items():
        assert torch.equal(v, resumed.tensors()[k]), k


# --------------------------------------------------------------------------- the window task


@pytest.fixture(scope="module")
def window_data(tmp_path_factory) -> Path:
    from detect.synth import SynthConfig, make_synth

    out = tmp_path_factory.mktemp("wsynth") / "d"
    make_synth(out, SynthConfig(train=4, val=1, size=64, seed=3, max_objects=2, min_scale=0.3))
    return out / "data.yaml"


def _window_cfg(data: Path, out: Path, **kw) -> TrainConfig:
    base = dict(data=str(data), epochs=1, batch=8, imgsz=24, device="cpu", out=str(out))
    return TrainConfig.create(model="window", **{**base, **kw})


def test_window_task_resumes_mid_epoch_exactly(window_data):
    """The window task under the trainer, stopped after 2 steps and restored into a fresh task:
    the crops, their order, the augmentation and the dropout masks continue as in one run."""
    from detect.data import load_dataset
    from detect.engine.optim import build_optimizer
    from detect.engine.tasks import WindowTask
    from detect.settings import WindowTrainConfig

    train_rec, val_rec = load_dataset(window_data, "train"), load_dataset(window_data, "val")

    def run(extra=(), state=None):
        torch.manual_seed(0)
        task = WindowTask(WindowTrainConfig(window=24, batch=8), train_rec, val_rec, "cpu")
        opt = build_optimizer(task.model, "adamw", 1e-3, 5e-4, 0.9)
        t = Trainer(task, opt, [H.LRSchedule(1e-3, 0.01, 0, None), *extra], max_epochs=2)
        if state is not None:
            t.load_tensors_and_state(*state)
        t.train()
        return t

    full = run()
    part = run(extra=[StopAfter(3)])
    assert part.stop_reason == Stop.interrupted and part.iteration == 3
    resumed = run(state=(part.tensors(), {**part.state_dict(), "rng": rng_state()}))
    assert resumed.iteration == full.iteration > 4 and resumed.epoch == 2
    for k, v in full.tensors().items():
        assert torch.equal(v, resumed.tensors()[k]), k


def test_window_run_of_the_old_trainer_resumes_after_its_last_epoch(window_data, tmp_path):
    """Runs saved before the engine had no resume file: continue from last.safetensors."""
    r = train(_window_cfg(window_data, tmp_path / "old"))
    (r.run_dir / "resume.safetensors").unlink()
    args = (r.run_dir / "args.json").read_text().replace('"epochs": 1', '"epochs": 2')
    (r.run_dir / "args.json").write_text(args)
    r2 = train(TrainConfig.create(resume=str(r.run_dir)))
    assert r2.epochs == 2 and len((r.run_dir / "results.csv").read_text().splitlines()) == 3


def test_config_split_create_and_old_args():
    cfg = TrainConfig.create(model="window", data="d.yaml", imgsz=48)
    assert cfg.task.window == 48 and cfg.to_dict()["model"] == "window"
    with pytest.raises(DetectError, match="has no option anchors"):
        TrainConfig.create(model="window", anchors="auto")
    # the old flat args.json of a window run: imgsz 320 (the detector default) meant 32
    old = {"data": "d.yaml", "model": "window", "imgsz": 320, "batch": 32, "mosaic": 1.0}
    cfg = TrainConfig.from_dict(old)
    assert (cfg.task.window, cfg.task.batch, cfg.run.data) == (32, 32, "d.yaml")
    assert TrainConfig.from_dict(TrainConfig.create(imgsz=64).to_dict()).task.imgsz == 64
