"""The pieces of the training loop, one rule each (detectron2's hooks).

`detect.engine.run.train` registers them in this order, which is the order they run in:
LRSchedule, EMA, Interrupt, TimeBudget, CloseMosaic, Progress, Validate, BestModel, EarlyStop,
Checkpoint, EpochEvents. Each can be driven alone by a trainer-like object (tests/test_engine.py).
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from torch import Tensor, nn

from detect.engine.events import (
    EpochEnd,
    EpochStart,
    StepEnd,
    ValEnd,
    ValProgress,
    ValStart,
)
from detect.engine.optim import ModelEMA, lr_factor, warmup_factor
from detect.engine.results import write_results
from detect.engine.state import RESUME_FILE, save_resume_state
from detect.engine.trainer import Hook, Stop
from detect.files import WriteError, all_or_nothing, remove_temps
from detect.models import save_weights
from detect.models.weights_file import upgrade_keys


class LRSchedule(Hook):
    """Linear warmup over `warmup_iters` steps, then cosine from `lr0` to `lr0 * lrf` over the
    run: by iterations for a number of epochs, by wall-clock with a time budget (`budget_s`),
    so the cosine ends when the budget does."""

    def __init__(self, lr0: float, lrf: float, warmup_iters: int, budget_s: float | None) -> None:
        self.lr0, self.lrf, self.warmup_iters, self.budget_s = lr0, lrf, warmup_iters, budget_s

    def progress(self) -> float:
        """0..1 through the run."""
        t = self.trainer
        if self.budget_s is not None:
            return t.elapsed() / self.budget_s
        return t.iteration / (t.max_epochs * t.steps_in_epoch)

    def before_step(self) -> None:
        t = self.trainer
        lr = self.lr0 * warmup_factor(t.iteration, self.warmup_iters)
        lr *= lr_factor(self.progress(), self.lrf)
        for g in t.optimizer.param_groups:
            g["lr"] = lr
        t.lr = lr


class EMA(Hook):
    """Exponential moving average of the weights after every step (YOLOv5's ModelEMA); the
    average is what is validated and saved."""

    def __init__(self, model: nn.Module, decay: float, tau: float) -> None:
        self.ema = ModelEMA(model, decay, tau)

    def before_train(self) -> None:
        self.trainer.eval_model = self.ema.ema

    def after_step(self) -> None:
        self.ema.update(self.trainer.task.model)

    def state_dict(self) -> dict[str, Any]:
        return {"ema_updates": self.ema.updates}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.ema.updates = int(state["ema_updates"])

    def tensors(self) -> dict[str, Tensor]:
        return {f"ema.{k}": v for k, v in self.ema.ema.state_dict().items()}

    def load_tensors(self, tensors: dict[str, Tensor]) -> None:
        n = len("ema.")
        state = {k[n:]: v for k, v in tensors.items() if k.startswith("ema.")}
        self.ema.ema.load_state_dict(upgrade_keys(state, self.ema.ema))


class Interrupt(Hook):
    """Ctrl-C (or SIGTERM: a `kill`, a container stop) sets a flag instead of raising, checked
    after every step (the state saved is never half-updated) and after validation; a second
    one raises as usual. Only in the main thread (where Python delivers signals)."""

    signals = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.hit = False
        self._old: dict[int, Any] = {}

    def _handler(self, signum: int, frame: Any) -> None:
        if self.hit:
            raise KeyboardInterrupt
        self.hit = True

    def before_train(self) -> None:
        if threading.current_thread() is threading.main_thread():
            self._old = {s: signal.signal(s, self._handler) for s in self.signals}

    def after_train(self) -> None:
        for s, old in self._old.items():
            signal.signal(s, old)
        self._old = {}

    def after_step(self) -> None:
        if self.hit:
            self.trainer.request_stop(Stop.interrupted)

    def after_epoch(self) -> None:
        if self.hit:
            self.trainer.request_stop(Stop.interrupted)


class TimeBudget(Hook):
    """Stop training when the final validation and saving would no longer fit in `budget_s`:
    elapsed + 1.5 x (the last validation's seconds) + 3 s. Before the first validation its
    length is guessed as half the time to train on as many samples as there are val images,
    plus 2 s."""

    def __init__(self, budget_s: float | None) -> None:
        self.budget_s = budget_s
        self.last_val_seconds: float | None = None

    def out_of_time(self) -> bool:
        if self.budget_s is None:
            return False
        t = self.trainer
        reserve = self.last_val_seconds
        if reserve is None:  # not validated yet: guess from the training speed
            per_sample = (time.perf_counter() - t.t_start) / max(1, t.images_seen)
            reserve = 0.5 * per_sample * t.task.val_images + 2.0
        return t.elapsed() + 1.5 * reserve + 3.0 >= self.budget_s

    def before_train(self) -> None:
        if self.budget_s is not None and self.trainer.elapsed_before >= self.budget_s:
            self.trainer.request_stop(Stop.time)  # a resumed run whose budget is spent

    def after_step(self) -> None:
        if self.out_of_time():
            self.trainer.request_stop(Stop.time)

    def state_dict(self) -> dict[str, Any]:
        return {"last_val_seconds": self.last_val_seconds}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.last_val_seconds = state.get("last_val_seconds")


class CloseMosaic(Hook):
    """Mosaic off for the last `fraction` of the run (as a fraction of the schedule's
    progress), and for the last `epochs` epochs (YOLOv8's close_mosaic), decided at the start
    of each epoch. With a time budget an epoch's share of the run is measured: the progress
    so far over the epochs so far (the first epoch keeps mosaic)."""

    def __init__(self, fraction: float, progress: Callable[[], float], epochs: int = 0) -> None:
        self.fraction, self.progress, self.epochs = fraction, progress, epochs

    def before_epoch(self) -> None:
        t, p = self.trainer, self.progress()
        on = p < 1 - self.fraction
        if self.epochs:
            if t.max_epochs < 10**9:  # an epoch limit: exact
                on = on and t.epoch < t.max_epochs - self.epochs
            elif t.epoch > 0:
                on = on and p < 1 - self.epochs * p / t.epoch
        t.task.mosaic_on = on


class Progress(Hook):
    """EpochStart and StepEnd events (loss terms averaged over the epoch so far, speed)."""

    def before_epoch(self) -> None:
        t = self.trainer
        self.t_last = time.perf_counter()
        mosaic = bool(getattr(t.task, "mosaic_on", False))
        t.emit(EpochStart(t.epoch, t.steps_in_epoch, t.epoch_step, mosaic))

    def after_step(self) -> None:
        t = self.trainer
        now = time.perf_counter()
        rate = t.step_samples / max(now - self.t_last, 1e-9)
        self.t_last = now
        t.emit(StepEnd(t.epoch, t.epoch_step, t.steps_in_epoch, t.stats.means(), t.lr, rate))


class Validate(Hook):
    """At the end of every `every`-th epoch, and of the last one (epoch limit or time): the
    task's validation of the evaluated weights (EMA when on), on rank 0. Sets
    `trainer.val` = (mAP50, mAP50-95), or None when not validated."""

    def __init__(self, every: int, budget: TimeBudget | None = None) -> None:
        self.every, self.budget = every, budget

    def after_epoch(self) -> None:
        t = self.trainer
        t.val = t.val_pr = None
        if not t.epoch_complete:
            return
        last = t.stop_reason == Stop.time or t.epoch + 1 >= t.max_epochs
        if not (last or (t.epoch + 1) % self.every == 0) or not t.dist.main:
            return
        t0 = time.perf_counter()
        t.emit(ValStart(t.task.val_images))
        m50, m, *pr = t.task.validate(
            t.eval_model, lambda done, total: t.emit(ValProgress(done, total))
        )
        seconds = time.perf_counter() - t0
        if self.budget is not None:
            self.budget.last_val_seconds = seconds
        t.val, t.val_pr = (m50, m), (tuple(pr[:2]) if len(pr) >= 2 else None)
        t.emit(ValEnd(m50, m, seconds, *(t.val_pr or (None, None))))


class BestModel(Hook):
    """Fitness 0.1 mAP50 + 0.9 mAP50-95 (YOLOv5's); sets `trainer.improved` (None: not
    validated this epoch). Before the first validation every epoch counts as best, so a best
    file exists from the first epoch on."""

    def __init__(self) -> None:
        self.fitness, self.epoch, self.map = -1.0, -1, (-1.0, -1.0)
        self.eval: Any = None  # the task's EvalResult of the best epoch, when it keeps one

    def after_epoch(self) -> None:
        t = self.trainer
        t.improved = None
        if not t.epoch_complete or not t.dist.main:
            return
        if t.val is None:
            t.is_best = self.epoch < 0
            return
        m50, m = t.val
        fitness = 0.1 * m50 + 0.9 * m
        t.improved = t.is_best = fitness > self.fitness
        if t.improved:
            self.fitness, self.epoch, self.map = fitness, t.epoch + 1, (m50, m)
            self.eval = getattr(t.task, "last_eval", None)

    def state_dict(self) -> dict[str, Any]:
        return {"best_fitness": self.fitness, "best_epoch": self.epoch, "best_map": list(self.map)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.fitness, self.epoch = float(state["best_fitness"]), int(state["best_epoch"])
        self.map = tuple(state["best_map"])


class EarlyStop(Hook):
    """Stop after `patience` validations in a row without a better fitness (0: never)."""

    def __init__(self, patience: int) -> None:
        self.patience, self.bad = patience, 0

    def after_epoch(self) -> None:
        improved = getattr(self.trainer, "improved", None)
        if improved is None:
            return
        self.bad = 0 if improved else self.bad + 1
        if self.patience > 0 and self.bad >= self.patience:
            self.trainer.request_stop(Stop.patience)

    def state_dict(self) -> dict[str, Any]:
        return {"bad_vals": self.bad}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.bad = int(state["bad_vals"])


class Checkpoint(Hook):
    """At the end of every epoch (and of an interrupted one), on rank 0: the results row, the
    evaluated weights as weights/last.safetensors (and best.safetensors when best; every
    `period` epochs epochN.safetensors too), results.csv and .png, and the resume state.
    `summary()` is the weights' training summary, `extra` more resume scalars (the model
    config).

    A checkpoint is written all or nothing: every file to a temporary name first, renamed into
    place only when all are written, the resume state last (a process killed between the
    renames resumes from the previous state and redoes the epoch exactly). A checkpoint that
    cannot be written (disk full) raises WriteError saying which checkpoint the run folder
    still holds and how to continue; the temporary files of a killed process are removed when
    the run resumes."""

    def __init__(
        self,
        run_dir: Path,
        summary: Callable[[], dict],
        extra: dict[str, Any],
        period: int = 0,
    ) -> None:
        self.run_dir, self.summary, self.extra, self.period = run_dir, summary, extra, period
        self.saved: tuple[int, int] | None = None  # (epoch, batch) of the checkpoint on disk

    def before_train(self) -> None:
        t = self.trainer
        if t.dist.main and (self.run_dir / RESUME_FILE).is_file():  # a resumed run
            self.saved = (t.epoch, t.epoch_step)
            for folder in (self.run_dir, self.run_dir / "weights"):
                if folder.is_dir():
                    remove_temps(folder)

    def after_epoch(self) -> None:
        t = self.trainer
        if t.dist.main:
            if t.epoch_complete:
                t.rows.append(self.row())
                t.epoch += 1  # saved state points at the next epoch
                t.epoch_step = 0
                try:
                    self.save(best=bool(getattr(t, "is_best", False)))
                    if self.period and t.epoch % self.period == 0:  # (t.epoch is 1-based here)
                        wdir = self.run_dir / "weights"
                        meta = {"training": self.summary()}
                        with self._failure_hint():
                            save_weights(wdir / f"epoch{t.epoch}.safetensors", t.eval_model, meta)
                finally:
                    t.epoch -= 1
            else:
                self.save(best=False)
        t.dist.barrier()

    def row(self) -> dict[str, Any]:
        t = self.trainer
        means = t.stats.means()
        row = {
            "epoch": t.epoch + 1, "box_loss": means.get("box", 0.0),
            "obj_loss": means.get("obj", 0.0), "cls_loss": means.get("cls", 0.0),
            "val_precision": "", "val_recall": "", "val_map50": "", "val_map": "",
            "lr": t.optimizer.param_groups[0]["lr"],
            "images": t.epoch_images, "seconds": round(t.stats.seconds, 2),
        }  # fmt: skip
        if t.val is not None:
            row["val_map50"], row["val_map"] = round(t.val[0], 5), round(t.val[1], 5)
        if getattr(t, "val_pr", None) is not None:
            row["val_precision"], row["val_recall"] = (round(v, 5) for v in t.val_pr)
        row["elapsed"] = round(t.elapsed(), 1)
        return row

    def save(self, best: bool) -> None:
        t = self.trainer
        wdir = self.run_dir / "weights"
        meta = {"training": self.summary()}
        with self._failure_hint(), all_or_nothing():
            save_weights(wdir / "last.safetensors", t.eval_model, meta)
            if best:
                save_weights(wdir / "best.safetensors", t.eval_model, meta)
            write_results(self.run_dir, t.rows)
            state = {**t.state_dict(), **self.extra}
            save_resume_state(self.run_dir / RESUME_FILE, t.tensors(), state)  # (renamed last)
        self.saved = (t.epoch, t.epoch_step)

    @contextmanager
    def _failure_hint(self) -> Iterator[None]:
        """A WriteError inside says what the run folder still holds and how to go on."""
        try:
            yield
        except WriteError as e:
            if self.saved is None:
                hint = "; no checkpoint was saved yet: free some space and start the run again"
            else:
                epoch, batch = self.saved
                at = f"epoch {epoch}" if batch == 0 else f"epoch {epoch + 1}, batch {batch}"
                hint = (
                    f"; {self.run_dir} keeps its checkpoint of {at} intact: free some space, "
                    f"then continue with: detect train --resume {self.run_dir}"
                )
            raise WriteError(e.path, e.reason, hint) from None


class EpochEvents(Hook):
    """The EpochEnd event, after the epoch's files are written."""

    def after_epoch(self) -> None:
        t = self.trainer
        if t.epoch_complete and t.dist.main:
            best = t.hook(BestModel)
            t.emit(EpochEnd(t.rows[-1], bool(getattr(t, "is_best", False)), best.epoch))
