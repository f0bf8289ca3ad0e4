"""The training loop, once for every task (detectron2's TrainerBase: a loop that calls hooks).

`Trainer.train()` runs epochs of steps; everything else is a hook (detect.engine.hooks): the
LR schedule, EMA weights, the time budget, Ctrl-C, close-mosaic, validation, the best model,
early stopping, checkpoints, progress events. Hooks run in the order given, around each step
and epoch, and stop the run by `request_stop(reason)`; every rank then stops at the same step.

What is trained comes from a `Task` (detect.engine.tasks): its model, its batches, its loss
and its validation. The trainer's `state_dict()` gathers its counters and its hooks' state,
which the resume file stores (`--resume` continues bit for bit, mid-epoch included).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import Tensor, nn

from detect.engine.distributed import Dist
from detect.engine.events import Callback, Event
from detect.engine.optim import EpochSampler, unwrap
from detect.engine.state import load_optimizer_state, optimizer_state, set_rng_state
from detect.errors import DetectError
from detect.models.weights_file import upgrade_keys


class Stop(StrEnum):
    """Why a run ended."""

    epochs = "epochs"  # all epochs done
    time = "time"  # the --time budget is spent
    patience = "patience"  # --patience validations without improvement
    interrupted = "interrupted"  # Ctrl-C (or a hook asked): state saved for --resume


class Task(Protocol):
    """What the trainer needs from a task (detect.engine.tasks.DetectorTask, WindowTask)."""

    model: nn.Module  # what is trained (built by the task)
    sampler: EpochSampler  # the order of the training samples; the trainer sets epoch / start
    batch: int  # samples per step (per process)
    default_epochs: int  # without --epochs and --time
    val_images: int  # images of the val split (time budget estimate)
    clip_grad: float | None  # gradient norm clip (None: none)

    def loader(self, epoch: int) -> Iterable[Any]:
        """The batches of one epoch, in `sampler` order (the trainer set its start)."""
        ...

    def steps_per_epoch(self, epoch: int) -> int: ...

    def step(
        self, model: nn.Module, batch: Any, iteration: int, autocast: Callable
    ) -> tuple[Tensor, dict, int]:
        """(loss to backpropagate, named terms (detached scalars), samples in the batch); the
        forward pass runs under `autocast()` (mixed precision on CUDA, else a no-op)."""
        ...

    def validate(self, model: nn.Module, progress: Any) -> tuple[float, ...]:
        """(mAP50, mAP50-95) of `model` on the val split, each >= 0, optionally followed by
        (precision, recall)."""
        ...


class Hook:
    """A piece of the loop; every method is a no-op unless overridden.

    `trainer` is set when the hook is registered. `state_dict` / `load_state_dict` hold what a
    resumed run needs (JSON scalars), `tensors` / `load_tensors` the tensors.
    """

    trainer: Trainer

    def before_train(self) -> None: ...
    def before_epoch(self) -> None: ...
    def before_step(self) -> None: ...
    def after_step(self) -> None: ...
    def after_epoch(self) -> None: ...
    def after_train(self) -> None: ...

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None: ...

    def tensors(self) -> dict[str, Tensor]:
        return {}

    def load_tensors(self, tensors: dict[str, Tensor]) -> None: ...


@dataclass
class EpochStats:
    """Running sums of the current epoch (kept in the resume state for a mid-epoch stop)."""

    terms: dict[str, float] = field(default_factory=dict)  # summed loss terms
    steps: int = 0
    images: int = 0  # samples trained on by this process
    seconds: float = 0.0

    def means(self) -> dict[str, float]:
        return {k: v / max(self.steps, 1) for k, v in self.terms.items()}


@dataclass
class TrainResult:
    """What a run produced."""

    run_dir: Path
    best: Path  # weights/best.safetensors
    last: Path  # weights/last.safetensors
    epochs: int  # epochs completed (a partial last epoch counts)
    best_epoch: int  # epoch of the best validation fitness (-1 if never validated)
    map50: float  # val mAP50 of the best weights (-1 if never validated)
    map: float  # val mAP50-95 of the best weights
    seconds: float  # training wall-clock, all sessions
    stopped: Stop
    rows: list[dict] = field(default_factory=list)  # results.csv rows
    best_eval: Any = None  # the best epoch's detect.metrics.EvalResult on the val split (None:
    # not validated in this session, e.g. a resumed run whose best came before)


class Trainer:
    """Runs `task` with `optimizer` for `max_epochs` (or until a hook stops it).

    Args:
        task: the model and data (see `Task`); `task.model` may be wrapped in DDP.
        optimizer: over the task model's parameters.
        hooks: the loop's pieces, run in this order.
        dist: the process group (`Dist()`: one process).
        max_epochs: the epoch limit.
        run_dir: where the hooks write (rank 0).
        callback: receives the hooks' events (rank 0 only).
        amp: float16 autocast and a grad scaler (CUDA).
    """

    def __init__(
        self,
        task: Task,
        optimizer: torch.optim.Optimizer,
        hooks: Sequence[Hook],
        dist: Dist | None = None,
        max_epochs: int = 1,
        run_dir: Path = Path(),
        callback: Callback | None = None,
        amp: bool = False,
    ) -> None:
        self.task, self.optimizer = task, optimizer
        self.dist = dist or Dist()
        self.max_epochs, self.run_dir, self.callback = max_epochs, run_dir, callback
        self.scaler = torch.amp.GradScaler("cuda") if amp else None
        self.autocast = _autocast_fp16 if amp else nullcontext
        self.eval_model: nn.Module = unwrap(task.model)  # validated and saved (EMA: its copy)
        # Progress counters (state_dict).
        self.epoch = 0  # current epoch, 0-based
        self.epoch_step = 0  # steps done in the current epoch
        self.iteration = 0  # steps done in the run
        self.elapsed_before = 0.0  # training seconds of earlier sessions
        self.stats = EpochStats()
        self.rows: list[dict] = []  # results.csv rows (rank 0)
        # Per-session facts the hooks read.
        self.t_start = time.perf_counter()
        self.images_seen = 0  # samples this session, all ranks (speed estimates)
        self.steps_in_epoch = 0
        self.epoch_images = 0  # samples of the finished epoch, all ranks
        self.step_samples = 0  # samples of the last step, all ranks
        self.lr = 0.0
        self.stop_reason: Stop | None = None
        self.epoch_complete = False
        # What the end-of-epoch hooks found (Validate, BestModel).
        self.val: tuple[float, float] | None = None  # (mAP50, mAP50-95) if validated
        self.val_pr: tuple[float, float] | None = None  # (precision, recall) when given
        self.improved: bool | None = None  # a better fitness (None: not validated)
        self.is_best = False  # these weights become best.safetensors
        self.hooks = list(hooks)
        for h in self.hooks:
            h.trainer = self

    # -- what hooks use ---------------------------------------------------------------------

    def emit(self, event: Event) -> None:
        if self.dist.main and self.callback is not None:
            self.callback(event)

    def elapsed(self) -> float:
        """Training seconds, all sessions."""
        return self.elapsed_before + (time.perf_counter() - self.t_start)

    def request_stop(self, reason: Stop) -> None:
        """Stop at the end of this step (this epoch for reasons decided there); the first
        reason given wins."""
        if self.stop_reason is None:
            self.stop_reason = Stop(reason)

    def hook(self, kind: type) -> Any:
        """The registered hook of this type, or None."""
        return next((h for h in self.hooks if isinstance(h, kind)), None)

    # -- the loop ------------------------------------------------------------------------------

    def train(self) -> Stop:
        """Run until the epochs are done or a hook stops the run; returns why it stopped."""
        self.t_start = time.perf_counter()
        self._call("before_train")
        try:
            while self.stop_reason is None and self.epoch < self.max_epochs:
                self.run_epoch()
        finally:
            self._call("after_train")
        return self.stop_reason or Stop.epochs

    def run_epoch(self) -> None:
        """One epoch (possibly resumed mid-way, possibly cut short by a stop)."""
        task = self.task
        self.steps_in_epoch = task.steps_per_epoch(self.epoch)
        task.sampler.set_epoch(self.epoch, self.epoch_step * task.batch)
        self.epoch_complete = False
        self._call("before_epoch")
        task.model.train()
        t_epoch = time.perf_counter()
        for batch in task.loader(self.epoch):
            self._call("before_step")
            self.run_step(batch)
            self._call("after_step")
            if self._agree(Stop.interrupted, Stop.time):  # every rank stops at the same step
                break
        self.stats.seconds += time.perf_counter() - t_epoch
        self.epoch_images = self.dist.sum(self.stats.images)  # what every rank trained on
        self.epoch_complete = self.stop_reason != Stop.interrupted
        self._call("after_epoch")
        self._agree(Stop.time, Stop.patience, Stop.interrupted)
        if self.epoch_complete:
            self.epoch += 1
            self.epoch_step = 0
            self.stats = EpochStats()

    def _agree(self, *order: Stop) -> bool:
        """Give every rank the stop reason some rank has (the first of `order` that any rank
        has); True when the run stops."""
        flags = self.dist.any(*(self.stop_reason == r for r in order))
        for reason, flag in zip(order, flags, strict=True):
            if flag:
                self.stop_reason = reason
                return True
        return self.stop_reason is not None

    def run_step(self, batch: Any) -> None:
        """Forward, loss, backward and optimizer step on one batch."""
        model, opt = self.task.model, self.optimizer
        loss, terms, n = self.task.step(model, batch, self.iteration, self.autocast)
        (bad,) = self.dist.any(not bool(torch.isfinite(loss)))
        if bad:
            raise DetectError(
                f"loss became {loss.item()} at epoch {self.epoch + 1}, batch "
                f"{self.epoch_step + 1}: training stopped; the last good checkpoint is in "
                f"{self.run_dir / 'weights'} (try a lower --lr)"
            )
        opt.zero_grad(set_to_none=True)
        clip = self.task.clip_grad
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.unscale_(opt)
            if clip:
                nn.utils.clip_grad_norm_(model.parameters(), clip)
            self.scaler.step(opt)
            self.scaler.update()
        else:
            loss.backward()
            if clip:
                nn.utils.clip_grad_norm_(model.parameters(), clip)
            opt.step()
        self.iteration += 1
        self.epoch_step += 1
        self.step_samples = n * self.dist.world
        self.images_seen += self.step_samples  # for speed and time estimates
        for k, v in terms.items():
            self.stats.terms[k] = self.stats.terms.get(k, 0.0) + float(v)
        self.stats.steps += 1
        self.stats.images += n

    def _call(self, method: str) -> None:
        for h in self.hooks:
            getattr(h, method)()

    # -- resume state --------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """The loop's counters and every hook's state, as JSON-able scalars."""
        state: dict[str, Any] = {
            "epoch": self.epoch,
            "batch_start": self.epoch_step,
            "iteration": self.iteration,
            "elapsed_before": self.elapsed(),
            "epoch_acc": None if self.epoch_complete else _acc_dict(self.stats),
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
            **optimizer_state(self.optimizer)[1],
        }
        for h in self.hooks:
            state.update(h.state_dict())
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.epoch, self.epoch_step = int(state["epoch"]), int(state["batch_start"])
        self.iteration = int(state["iteration"])
        self.elapsed_before = float(state["elapsed_before"])
        acc = state.get("epoch_acc")
        self.stats = _acc_stats(acc) if acc else EpochStats()
        if self.scaler is not None and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        for h in self.hooks:
            h.load_state_dict(state)

    def load_tensors_and_state(self, tensors: dict[str, Tensor], state: dict[str, Any]) -> None:
        """Restore a resume file (`detect.engine.state.load_resume_state`); RNG states last."""
        self.load_tensors(tensors)
        load_optimizer_state(self.optimizer, tensors, state)
        self.load_state_dict(state)
        set_rng_state(state["rng"])

    def tensors(self) -> dict[str, Tensor]:
        out = {f"model.{k}": v for k, v in unwrap(self.task.model).state_dict().items()}
        out.update(optimizer_state(self.optimizer)[0])
        for h in self.hooks:
            out.update(h.tensors())
        return out

    def load_tensors(self, tensors: dict[str, Tensor]) -> None:
        n = len("model.")
        model = unwrap(self.task.model)
        model.load_state_dict(
            upgrade_keys({k[n:]: v for k, v in tensors.items() if k.startswith("model.")}, model)
        )
        for h in self.hooks:
            h.load_tensors(tensors)


def _autocast_fp16() -> torch.autocast:
    return torch.autocast("cuda", dtype=torch.float16)


_TERM_ORDER = ("box", "obj", "cls")  # the resume file's "loss" list (older files have it)


def _acc_dict(s: EpochStats) -> dict[str, Any]:
    return {
        "loss": [s.terms.get(k, 0.0) for k in _TERM_ORDER],
        "terms": dict(s.terms),
        "n": s.steps,
        "images": s.images,
        "seconds": s.seconds,
    }


def _acc_stats(acc: dict[str, Any]) -> EpochStats:
    terms = acc.get("terms") or dict(zip(_TERM_ORDER, acc["loss"], strict=True))
    return EpochStats(dict(terms), int(acc["n"]), int(acc["images"]), float(acc["seconds"]))


def val_figures(res: Any) -> tuple[float, float, float, float]:
    """(mAP50, mAP50-95, precision, recall) of a `detect.metrics` result, as a task's `validate`
    returns them: P and R at the confidence of the best F1 over all classes (as ultralytics
    prints them); 0 where undefined (no detections, or nothing found)."""
    point = res.operating.all if res.operating is not None else {}
    p, r = (float(point.get(k, 0.0)) for k in ("precision", "recall"))
    p, r = (v if v == v else 0.0 for v in (p, r))  # NaN (no detections): 0
    p = p if r > 0 else 0.0  # nothing found: no precision to speak of
    return max(res.map50, 0.0), max(res.map, 0.0), p, r


def steps(samples: int, batch: int) -> int:
    """Steps of an epoch of `samples` per process at `batch` per step."""
    return math.ceil(samples / batch)
