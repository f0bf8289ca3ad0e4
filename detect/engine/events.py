"""What a training run reports as it goes: one frozen dataclass per kind of event.

`train(cfg, callback)` calls `callback(event)` on rank 0 with these, in this order:
`DataRead`, (`Transferred`), (`CacheProgress`..., `Cached`), `RunStart`, then per epoch
`EpochStart`, `StepEnd` per step, (`ValStart`, `ValProgress`..., `ValEnd`), `EpochEnd`; finally
`RunEnd`. The callback only reports: stopping a run is `Trainer.request_stop` (a hook) or Ctrl-C,
never an exception.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from detect.data.augment import CacheReport
from detect.data.types import ReadReport


@dataclass(frozen=True)
class DataRead:
    """Both splits were read; what their readers skipped or mended."""

    train_report: ReadReport
    val_report: ReadReport


@dataclass(frozen=True)
class CacheProgress:
    """`--cache ram|disk`: `done` of `total` training images decoded (or found cached)."""

    done: int
    total: int


@dataclass(frozen=True)
class Cached:
    """`--cache` is ready: what was cached, where, how many bytes, how many reused."""

    report: CacheReport


@dataclass(frozen=True)
class Transferred:
    """A new model started from other weights (detect.models.transfer): what it took."""

    line: str  # "transferred 318/324 tensors from W; new class head for 3 classes: ..."
    frozen: tuple[str, ...]  # backbone stages frozen (`--freeze`)


@dataclass(frozen=True)
class RunStart:
    run_dir: Path
    epochs: int | None  # --epochs as given (None: the task's default or the time budget)
    time: float | None  # --time budget in minutes
    device: str
    world: int  # DDP processes
    train_images: int
    val_images: int
    resumed_epoch: int | None  # 0-based epoch a resumed run continues in; None for a new run


@dataclass(frozen=True)
class EpochStart:
    epoch: int  # 0-based
    batches: int  # steps in this epoch
    start: int  # steps already done (a run resumed mid-epoch)
    mosaic: bool  # the detector's mosaic augmentation is on


@dataclass(frozen=True)
class StepEnd:
    epoch: int  # 0-based
    batch: int  # steps done in this epoch (1-based)
    batches: int
    terms: dict[str, float]  # the task's loss terms, mean over the epoch so far ("box", ...)
    lr: float
    images_per_s: float  # training samples per second (images; crops for the window task)


@dataclass(frozen=True)
class ValStart:
    images: int


@dataclass(frozen=True)
class ValProgress:
    done: int
    total: int


@dataclass(frozen=True)
class ValEnd:
    map50: float  # val mAP at IoU 0.5
    map: float  # val mAP50-95
    seconds: float
    precision: float | None = None  # at the best-F1 confidence over all classes
    recall: float | None = None


@dataclass(frozen=True)
class EpochEnd:
    row: dict  # the epoch's results.csv row (engine.results.CSV_FIELDS; val_* "" if skipped)
    best: bool  # the weights of this epoch became best.safetensors
    best_epoch: int  # 1-based epoch of the best validation so far (-1: none yet)


@dataclass(frozen=True)
class RunEnd:
    run_dir: Path
    stopped: str  # a Stop value
    best_epoch: int
    map50: float
    map: float
    seconds: float


Event = (
    DataRead | CacheProgress | RunStart | EpochStart | StepEnd | ValStart | ValProgress
    | ValEnd | EpochEnd | RunEnd
)  # fmt: skip
Callback = Callable[[Event], None]
