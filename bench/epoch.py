"""Training cost per epoch: seconds per step of each model, frozen and not, at several sizes.

Each variant builds the training task `detect train` builds (same data pipeline, loss, AdamW,
channels_last), runs `--warmup` steps, then times `--steps` steps (forward, loss, backward,
optimizer step, batch 8 by default, the loader included), interleaved over `--rounds` rounds;
the median step time x the steps of one epoch of the data gives the epoch's cost. Both cores,
nothing else running:

    .venv/bin/python bench/epoch.py --data ../shared/voc2007-416 \\
        tiny@320 efficientnet-lite0@320:freeze=0 efficientnet-lite0@320 efficientnet-lite0@256

A variant is MODEL@SIZE[:key=value,...] with DetectorConfig fields (freeze, batch, ...).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import time

import torch

from detect.engine.data import load_training_data
from detect.engine.optim import build_optimizer
from detect.engine.tasks.detector import DetectorTask
from detect.settings import DetectorConfig


def parse(text: str) -> tuple[str, dict]:
    head, _, rest = text.partition(":")
    model, _, size = head.partition("@")
    kw: dict = {"model": model, "imgsz": int(size or 320)}
    for item in filter(None, rest.split(",")):
        k, _, v = item.partition("=")
        kw[k] = v if k == "freeze" else json.loads(v)
    return head + (f":{rest}" if rest else ""), kw


def time_steps(task: DetectorTask, opt: torch.optim.Optimizer, warmup: int, steps: int) -> float:
    """Median seconds per training step over `steps` steps, after `warmup` untimed ones."""
    model = task.model.train()
    it = iter(task.loader(0))
    times = []
    for i in range(warmup + steps):
        t0 = time.perf_counter()
        loss, _, _ = task.step(model, next(it), i, contextlib.nullcontext)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("variants", nargs="+")
    ap.add_argument("--data", required=True)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=2)
    a = ap.parse_args()
    train_rec, val_rec = load_training_data(a.data, ("train", "val"), None, False, lambda *_: None)
    per_epoch = len(train_rec.images)
    results: dict[str, list[float]] = {}
    for _ in range(a.rounds):
        for text in a.variants:
            name, kw = parse(text)
            cfg = DetectorConfig(**kw).check()
            task = DetectorTask(cfg, train_rec, val_rec, torch.device("cpu"), seed=0)
            opt = build_optimizer(task.model, "adamw", 0.001, 5e-4, 0.937)
            results.setdefault(name, []).append(time_steps(task, opt, a.warmup, a.steps))
    base = None
    print(f"{'variant':<34} {'s/step':>7} {'epoch min':>9} {'vs first':>8}  frozen")
    for text in a.variants:
        name, kw = parse(text)
        s = statistics.median(results[name])
        base = base or s
        epoch = s * (per_epoch / kw.get("batch", 8)) / 60
        print(f"{name:<34} {s:7.3f} {epoch:9.1f} {s / base:7.2f}x  {kw.get('freeze', 'default')}")


if __name__ == "__main__":
    main()
