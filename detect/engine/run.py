"""`train(TrainConfig, callback)` -> TrainResult: a run from its settings. Never prints.

It reads the data, builds the task (detector or window classifier), the optimizer and the hooks,
restores a resumed run, and hands them to the one `Trainer`. AdamW (or SGD) with linear warmup
then cosine decay, scheduled by iterations for `epochs` or by wall-clock for `time` (the cosine
ends when the budget ends); AMP on CUDA (detectors); DDP when launched by torchrun.

Run folder (never overwritten): weights/best.safetensors and weights/last.safetensors (EMA
weights for a detector, written atomically each epoch), results.csv, args.json, results.png,
data-report.txt and resume.safetensors (model, EMA and optimizer tensors; scalars and RNG states
as JSON in its metadata; no pickle), so `resume=RUN_DIR` continues exactly where it stopped,
mid-epoch included.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel

from detect.data.augment import disk_cache_dir
from detect.engine import hooks as H
from detect.engine.data import load_training_data, write_data_report
from detect.engine.distributed import init_dist
from detect.engine.events import (
    Cached,
    CacheProgress,
    Callback,
    DataRead,
    RunEnd,
    RunStart,
    Transferred,
)
from detect.engine.optim import build_optimizer
from detect.engine.report import write_val_report
from detect.engine.results import read_results
from detect.engine.state import RESUME_FILE, load_resume_state
from detect.engine.tasks import DetectorTask, WindowTask
from detect.engine.trainer import Stop, Trainer, TrainResult
from detect.errors import DetectError
from detect.files import atomic_write_json, check_writable, new_run_dir
from detect.models import load_weights
from detect.settings import Cache, DetectorConfig, TrainConfig


def resume_config(run_dir: Path, device: str, workers: int | None = None) -> TrainConfig:
    """The saved configuration of run folder `run_dir`, except what only says how to run it
    here (`device`, `workers`). DetectError if it is not a training run folder."""
    args = run_dir / "args.json"
    if not args.is_file():
        raise DetectError(f"{run_dir}: not a training run folder (no args.json)")
    try:
        saved = json.loads(args.read_text())["config"]
        cfg = TrainConfig.from_dict(saved)
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise DetectError(f"{args}: unreadable ({e})") from None
    cfg.run.device, cfg.run.resume = device, str(run_dir)
    if workers is not None and isinstance(cfg.task, DetectorConfig):
        cfg.task.workers = workers
    return cfg


def train(
    cfg: TrainConfig,
    callback: Callback | None = None,
    extra_hooks: Sequence[H.Hook] = (),
    loss: Callable | None = None,
) -> TrainResult:
    """Train as `cfg` says (`cfg.run.resume`: continue that run folder, from its args.json).

    `callback(event)` receives detect.engine.events on rank 0; `extra_hooks` run after the
    built-in ones (e.g. one that calls `trainer.request_stop`); `loss` replaces the task's
    loss (same signature: `DetectionLoss` for a detector, `(logits, labels)` for the window
    task). Raises DetectError for bad input, and when the loss becomes NaN/inf (the last good
    checkpoint stays in the run folder); WriteError (`cannot write PATH: reason`) before reading
    the data when the run folder's place is read-only, unwritable or full, and when a
    checkpoint cannot be written (the previous one stays intact; the message says how to
    continue with --resume).
    """
    if cfg.run.resume:
        workers = cfg.task.workers if isinstance(cfg.task, DetectorConfig) else None
        cfg = resume_config(Path(cfg.run.resume), cfg.run.device, workers)
    cfg.check()
    run, tcfg = cfg.run, cfg.task
    dist = init_dist(run.device)

    def emit(event: Any) -> None:
        if dist.main and callback is not None:
            callback(event)

    if dist.main:  # a read-only or full destination is known before the data is read
        out = Path(run.out)
        check_writable(Path(run.resume) / RESUME_FILE if run.resume else
                       out.parent / run.name if run.name else out)  # fmt: skip
    torch.manual_seed(run.seed + dist.rank)
    np.random.seed(run.seed + dist.rank)
    random.seed(run.seed + dist.rank)
    train_rec, val_rec = load_training_data(
        run.data, (run.train_split, run.val_split), run.max_images, run.strict,
        lambda tr, va: emit(DataRead(tr, va)), run.fraction, run.single_cls,
    )  # fmt: skip

    state, tensors = None, None
    if run.resume:
        run_dir = Path(run.resume)
        state, tensors = _resume_state(run_dir, tcfg)
        finished_run(run_dir, cfg, state)
    else:
        out = Path(run.out)  # only rank 0 makes a run folder; the others never touch it
        run_dir = new_run_dir(out.parent / run.name if run.name else out) if dist.main else out
    task = _make_task(tcfg, run, train_rec, val_rec, dist, state, loss)
    if getattr(task, "transfer", None) is not None:
        emit(Transferred(task.transfer.line(), tuple(task.frozen)))
    lr0 = run.lr or (0.01 if run.optimizer == "sgd" else 0.001)
    budget = run.time * 60 if run.time else None
    max_epochs = run.epochs or (10**9 if run.time else task.default_epochs)
    hooks = _hooks(cfg, task, lr0, budget, run_dir, dist.main)
    optimizer = build_optimizer(task.model, run.optimizer, lr0, run.weight_decay, run.momentum)
    amp = dist.device.type == "cuda" and isinstance(task, DetectorTask)
    trainer = Trainer(task, optimizer, [*hooks, *extra_hooks], dist, max_epochs, run_dir,
                      callback, amp)  # fmt: skip
    if isinstance(task, DetectorTask) and tcfg.cache:
        disk = disk_cache_dir() if tcfg.cache == Cache.disk else None
        emit(Cached(task.cache_images(lambda done, total: emit(CacheProgress(done, total)), disk)))
    if state is not None:
        _restore(trainer, state, tensors, run_dir)
    if dist.world > 1:
        ids = [dist.device.index] if dist.device.type == "cuda" else None
        task.model = DistributedDataParallel(task.model, device_ids=ids)
    if dist.main and not run.resume:
        _write_args(run_dir, cfg, task, lr0, dist)
        write_data_report(run_dir, train_rec, val_rec)

    emit(RunStart(run_dir, run.epochs, run.time, str(dist.device), dist.world,
                  len(train_rec.images), len(val_rec.images),
                  trainer.epoch if run.resume else None))  # fmt: skip
    stopped = trainer.train()
    best = trainer.hook(H.BestModel)
    if dist.main and best.eval is not None and stopped != "interrupted":
        write_val_report(run_dir / "val", best.eval, val_rec)  # (what the best weights found)
    dist.barrier()
    emit(RunEnd(run_dir, stopped, best.epoch, best.map[0], best.map[1], trainer.elapsed()))
    dist.close()
    main_dir = run_dir if dist.main else Path()
    wdir = main_dir / "weights" if dist.main else Path()
    return TrainResult(
        run_dir=main_dir, best=wdir / "best.safetensors", last=wdir / "last.safetensors",
        epochs=trainer.epoch, best_epoch=best.epoch, map50=best.map[0], map=best.map[1],
        seconds=trainer.elapsed(), stopped=stopped, rows=trainer.rows, best_eval=best.eval,
    )  # fmt: skip


def finished_run(run_dir: Path, cfg: TrainConfig, state: dict) -> None:
    """Raise DetectError when the run in `run_dir` has nothing left to do (its epochs done,
    its time budget spent, or stopped early by --patience), saying how to train it further."""
    run = cfg.run
    epochs = run.epochs or (None if run.time else cfg.task.default_epochs)
    done = int(state.get("epoch", 0))
    why = None
    if epochs is not None and done >= epochs:
        why = f"all {epochs} epochs are done"
    elif run.time and float(state.get("elapsed_before", 0)) >= run.time * 60:
        why = f"its {run.time:g}-minute budget is spent ({done} epochs)"
    elif run.patience > 0 and int(state.get("bad_vals", 0)) >= run.patience:
        why = f"it stopped early after {run.patience} validations without improvement"
    if why is None:
        return
    best = state.get("best_map") or [-1, -1]
    score = f"; best mAP50-95 {best[1]:.4f}" if best[1] >= 0 else ""
    data = run.data if " " not in run.data else f"'{run.data}'"
    raise DetectError(
        f"{run_dir} is finished: {why}{score}; nothing to resume. To train it further, start "
        f"a new run from its weights: detect train {data} --weights "
        f"{run_dir / 'weights' / 'last.safetensors'} --epochs N"
    )


def _make_task(
    tcfg: Any, run: Any, train_rec: Any, val_rec: Any, dist: Any, state: dict | None, loss: Any
) -> DetectorTask | WindowTask:
    """The task `tcfg` names, with a resumed run's model config when `state` is given."""
    common = dict(
        train_rec=train_rec, val_rec=val_rec, device=dist.device,
        model_config=state["model_config"] if state else None, weights=run.weights,
        seed=run.seed, rank=dist.rank, world=dist.world, loss=loss,
    )  # fmt: skip
    if isinstance(tcfg, DetectorConfig):
        anchor_info = state.get("anchor_info") if state else None
        frozen = state.get("frozen") if state else None
        return DetectorTask(tcfg, anchor_info=anchor_info, frozen=frozen, **common)
    return WindowTask(tcfg, **common)


def _restore(trainer: Trainer, state: dict, tensors: dict, run_dir: Path) -> None:
    """A resumed run's tensors, counters, hook states, RNG and results rows."""
    if state.get("rng"):
        trainer.load_tensors_and_state(tensors, state)
    else:  # a window run saved before resume files: after its last epoch, fresh optimizer
        trainer.load_tensors(tensors)
        trainer.epoch = int(state["epoch"])
        trainer.elapsed_before = float(state["elapsed_before"])
        trainer.hook(H.BestModel).load_state_dict(state)
    if trainer.dist.main:  # (a process killed while saving may have renamed results.csv but
        # not the resume state, which is renamed last: rows past the state's epoch are redone)
        rows = read_results(run_dir / "results.csv")
        trainer.rows = [r for r in rows if r["epoch"] <= trainer.epoch]


def _write_args(run_dir: Path, cfg: TrainConfig, task: Any, lr0: float, dist: Any) -> None:
    """args.json: the full configuration (flat, what --resume reads) and what it resolved to."""
    args = {
        "config": cfg.to_dict(), **task.args(), "lr": lr0, "device": str(dist.device),
        "world_size": dist.world, "train_images": len(task.train_rec.images),
        "val_images": task.val_images,
    }  # fmt: skip
    atomic_write_json(run_dir / "args.json", args)


def _hooks(
    cfg: TrainConfig, task: Any, lr0: float, budget: float | None, run_dir: Path, main: bool
) -> list[H.Hook]:
    """The built-in hooks of a run, in the order they run."""
    run, tcfg = cfg.run, cfg.task
    detector = isinstance(tcfg, DetectorConfig)
    warmup = 0
    if detector:
        warmup = max(tcfg.warmup_min_iters, round(tcfg.warmup_epochs * task.steps_per_epoch(0)))
    schedule = H.LRSchedule(lr0, run.lrf, warmup, budget)
    time_budget = H.TimeBudget(budget)

    def summary() -> dict[str, Any]:
        t, best = schedule.trainer, schedule.trainer.hook(H.BestModel)
        return {
            "data": str(run.data), **task.summary(), "epochs": t.epoch,
            "seconds": round(t.elapsed(), 1), "optimizer": run.optimizer, "lr": lr0,
            "seed": run.seed, "val_map50": best.map[0], "val_map": best.map[1],
            "best_epoch": best.epoch, "train_images": len(task.train_rec.images),
            "val_images": task.val_images, "command": run.command,
        }  # fmt: skip

    hooks: list[H.Hook] = [schedule]
    if detector:
        hooks.append(H.EMA(task.model, tcfg.ema_decay, tcfg.ema_tau))
    hooks += [H.Interrupt(), time_budget]
    if detector:
        hooks.append(H.CloseMosaic(tcfg.close_mosaic, schedule.progress, tcfg.close_mosaic_epochs))
    hooks += [
        H.Progress(), H.Validate(run.val_every, time_budget), H.BestModel(),
        H.EarlyStop(run.patience),
        H.Checkpoint(run_dir, summary, task.resume_extra(), run.save_period),
        H.EpochEvents(),
    ]  # fmt: skip
    return hooks


def _resume_state(run_dir: Path, tcfg: Any) -> tuple[dict, dict]:
    """(scalars, tensors) of a run's resume file. A window run saved before the engine had no
    resume file: it continues after its last finished epoch from weights/last.safetensors
    (fresh optimizer, as that trainer did)."""
    path = run_dir / RESUME_FILE
    if path.is_file() or isinstance(tcfg, DetectorConfig):
        return load_resume_state(path)
    model, _ = load_weights(run_dir / "weights" / "last.safetensors")
    rows = read_results(run_dir / "results.csv")
    val = [r for r in rows if r.get("val_map") not in ("", None)]
    fit = [0.1 * r["val_map50"] + 0.9 * r["val_map"] for r in val]
    best = val[int(np.argmax(fit))] if fit else None
    state = {
        "model_config": model.cfg.to_dict(), "epoch": len(rows),
        "elapsed_before": float(rows[-1]["elapsed"]) if rows else 0.0,
        "best_fitness": max(fit, default=-1.0), "best_epoch": best["epoch"] if best else -1,
        "best_map": [best["val_map50"], best["val_map"]] if best else [-1.0, -1.0],
    }  # fmt: skip
    return state, {f"model.{k}": v for k, v in model.state_dict().items()}


__all__ = ["Stop", "TrainResult", "resume_config", "train"]
