"""Every setting of training and prediction, with its default, and the choices as enums.

Nothing here imports torch: the CLI takes its defaults, choices and help from these classes
(`detect --help` stays fast), the library checks them (`check()` raises DetectError).

Training: the run's settings (`RunConfig`, every task) and the task's own (`DetectorConfig`
for the detectors of detect.archs, `WindowTrainConfig` for `--model window`).

`TrainConfig` pairs them. Its flat form (`to_dict`, every field once plus "model") is what
args.json holds and `--resume` reads back; `from_dict` also reads the args.json of runs saved
before the split (one flat TrainConfig for both trainers), mapping what the old window trainer
reinterpreted.

Prediction: `PredictConfig` (`detect predict`, `detect evaluate --weights`, `detect bench`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from enum import StrEnum
from typing import Any

from detect.archs import ARCHS, DEFAULT
from detect.errors import DetectError


class Optimizer(StrEnum):
    adamw = "adamw"
    sgd = "sgd"


class Assigner(StrEnum):
    """Target assignment (detect.losses.assign): task-aligned (TOOD / YOLOv8) or YOLOv2's
    static rule by anchor shape."""

    tal = "tal"
    yolov2 = "yolov2"


class Cache(StrEnum):
    ram = "ram"  # decode and resize every training image once, keep them in RAM
    disk = "disk"  # ... and write them as files, read back each epoch (and by later runs)


# What `detect train --model` trains: a detector (a row of detect.archs.ARCHS), or the
# sliding-window classifier. Member names are the values with "-" as "_" (Model.tiny).
Model = StrEnum("Model", [(a.replace("-", "_"), a) for a in (*ARCHS, "window")])
DETECTORS = tuple(ARCHS)


@dataclass
class RunConfig:
    """Settings of a run, whatever it trains."""

    data: str = ""  # data set: YAML, COCO JSON or VOC folder
    epochs: int | None = None  # None: the task's default, or unlimited when `time` is given
    time: float | None = None  # wall-clock budget in minutes (validation and saving included)
    lr: float | None = None  # peak learning rate; None: 0.001 AdamW, 0.01 SGD
    optimizer: str = "adamw"  # "adamw" | "sgd"
    weight_decay: float = 5e-4  # on conv/linear weights only (not BN, not biases)
    momentum: float = 0.937  # SGD momentum / AdamW beta1 (YOLOv5's)
    lrf: float = 0.01  # final LR = lr * lrf at the end of the cosine
    patience: int = 50  # stop after this many validations without improvement (0: never)
    val_every: int = 1  # validate every N epochs (the last epoch always)
    seed: int = 0  # everything random derives from it
    device: str = "auto"  # auto | cpu | cuda | cuda:N | mps
    weights: str | None = None  # start from these weights (same classes) instead of scratch
    strict: bool = False  # refuse to train when a reader skipped or mended anything
    train_split: str = "train"  # split names in DATA
    val_split: str = "val"
    max_images: int | None = None  # use only the first N images of each split (quick runs)
    fraction: float = 1.0  # train on this fraction of the training images (the first ones)
    single_cls: bool = False  # every class becomes one, "object" (a class-agnostic detector)
    save_period: int = 0  # also keep weights/epochN.safetensors every N epochs (0: never)
    out: str = "runs/train"  # run folder (a new one: runs/train-2, ... if it exists)
    name: str | None = None  # run folder name under the parent of `out`
    resume: str | None = None  # run folder to continue
    command: str = ""  # the command line, recorded in the weights' training summary

    def check(self) -> RunConfig:
        """Raise DetectError for an impossible setting."""
        if self.epochs is not None and self.epochs < 1:
            raise DetectError(f"--epochs must be >= 1, got {self.epochs}")
        if self.time is not None and not self.time > 0:
            raise DetectError(f"--time must be > 0 minutes, got {self.time}")
        if self.val_every < 1:
            raise DetectError(f"--val-every must be >= 1, got {self.val_every}")
        if self.optimizer not in tuple(Optimizer):
            raise DetectError(f"unknown optimizer {self.optimizer!r} (use adamw or sgd)")
        if self.lr is not None and not self.lr > 0:
            raise DetectError(f"--lr must be > 0, got {self.lr}")
        if not 0 < self.fraction <= 1:
            raise DetectError(f"--fraction must be in (0, 1], got {self.fraction}")
        if self.save_period < 0:
            raise DetectError(f"--save-period must be >= 0, got {self.save_period}")
        return self


# Validation: one set of settings for training's per-epoch validation, `detect evaluate DATA
# --weights W` and `Detector.evaluate`, so that the same weights on the same data give the same
# mAP everywhere (docs/reference.md, Validation).
VAL_CONF = 0.001  # mAP integrates precision down to the lowest scores: keep them
VAL_IOU = 0.45  # NMS IoU: `detect predict`'s. Shapes val (120 images, shapes-tiny): mAP50-95
# 0.7045 at 0.45, 0.7042 at 0.6, 0.7043 at 0.7 (ultralytics' val default), mAP50 0.900 / 0.896
VAL_MAX_DET = 300


@dataclass
class DetectorConfig:
    """Settings of the detector task (`--model` a row of detect.archs.ARCHS)."""

    model: str | None = None  # a row of detect.archs.ARCHS; None: the architecture of
    # --weights, else tiny
    pretrained: bool = True  # an ImageNet-backbone family starts from its ImageNet weights
    imgsz: int = 320  # training and validation input side (multiple of 32)
    batch: int = 8  # images per step (per process under DDP); 8 beat 16 on a CPU time budget
    workers: int = 2  # DataLoader worker processes (0: load in the main process)
    multi_scale: bool = False  # random input side in [0.5, 1.5] x imgsz per batch
    anchors: str | None = None  # anchors JSON file, "auto" (k-means on the train boxes), None
    width: float = 1.0  # tiny model channel multiplier
    depth: float = 1.0  # tiny model residual blocks per stage multiplier
    xy_scale: float | None = None  # centre-offset stretch (ModelConfig.xy_scale); None: that of
    # --weights, else 2 for tiny (3 positive cells per box: +12% val mAP50-95 in a 20-min A/B)
    # and 1 for yolov2 (its exact decode)
    assigner: str = "tal"  # target assignment (LossConfig.assigner): "tal" (task-aligned) learned
    # +49% val mAP50-95 over "yolov2" (static, by anchor shape) in a 15-minute A/B
    warmup_epochs: float = 1.0  # linear LR warmup length (at least `warmup_min_iters` steps)
    warmup_min_iters: int = 50  # short runs still get a stable start
    ema_decay: float = 0.9999  # EMA decay, ramped up over the first ~2000 steps (YOLOv5)
    ema_tau: float = 2000.0  # ramp length of the EMA decay, in steps
    close_mosaic: float = 0.0  # fraction of the run at the end trained without mosaic (YOLOv8
    # uses 10 epochs; here val mAP fell in that phase in 4 of 4 timed runs, so off by default)
    close_mosaic_epochs: int = 0  # mosaic off for the last N epochs (`--close-mosaic N`, as
    # YOLOv8; with --time, N epochs' worth of the budget at the measured epoch length)
    freeze: str | None = None  # "N": the backbone's first N stages are frozen (no updates, fixed
    # BatchNorm statistics, no autograd); "backbone": all of it; None: the architecture's
    # default when starting from trained weights (Arch.freeze), else nothing
    mosaic: float = 1.0  # mosaic probability
    scale: float = 0.5  # random zoom 1 +- scale (AugmentConfig.scale)
    cache: str | None = None  # "ram" | "disk": decode and resize every training image once
    val_conf: float = VAL_CONF  # validation confidence threshold (mAP needs the low scores too)
    val_iou: float = VAL_IOU  # validation NMS IoU (runs before issue 26 recorded 0.7)

    default_epochs = 100  # without --epochs and --time

    def check(self) -> DetectorConfig:
        if self.model is not None and self.model not in DETECTORS:
            raise DetectError(f"unknown detector {self.model!r} (use {', '.join(DETECTORS)})")
        if self.imgsz < 32 or self.imgsz % 32:
            raise DetectError(f"--imgsz must be a positive multiple of 32, got {self.imgsz}")
        if self.batch < 1:
            raise DetectError(f"--batch must be >= 1, got {self.batch}")
        if self.workers < 0:
            raise DetectError(f"--workers must be >= 0, got {self.workers}")
        if self.assigner not in tuple(Assigner):
            raise DetectError(f"unknown assigner {self.assigner!r} (use tal or yolov2)")
        if self.cache not in (None, *Cache):
            raise DetectError(f"unknown --cache {self.cache!r} (use ram or disk)")
        if self.close_mosaic_epochs < 0:
            raise DetectError(f"--close-mosaic must be >= 0, got {self.close_mosaic_epochs}")
        if self.freeze is not None and not (self.freeze == "backbone" or self.freeze.isdigit()):
            raise DetectError(f"--freeze takes a number of blocks or 'backbone', got {self.freeze}")
        return self


MAX_WINDOW = 96  # old runs: an imgsz above this was a detector size, not a window side


@dataclass
class WindowTrainConfig:
    """Settings of the window classifier task (`--model window`)."""

    model: str = "window"
    window: int = 32  # W: the crop side the classifier sees, pixels (`--imgsz` for this task)
    batch: int = 8  # crops per step
    neg_ratio: float = 3.0  # background crops per object crop
    val_conf: float = VAL_CONF  # conv-sliding validation confidence threshold

    default_epochs = 15  # without --epochs and --time

    def check(self) -> WindowTrainConfig:
        if not 8 <= self.window <= MAX_WINDOW:
            raise DetectError(
                f"--imgsz for --model window is the window side, 8..{MAX_WINDOW} px; "
                f"got {self.window}"
            )
        if self.batch < 1:
            raise DetectError(f"--batch must be >= 1, got {self.batch}")
        return self


TaskConfig = DetectorConfig | WindowTrainConfig


@dataclass
class TrainConfig:
    """A run's settings and its task's; `train(TrainConfig(...))` trains it."""

    run: RunConfig = field(default_factory=RunConfig)
    task: TaskConfig = field(default_factory=DetectorConfig)

    def check(self) -> TrainConfig:
        self.run.check()
        self.task.check()
        return self

    def to_dict(self) -> dict[str, Any]:
        """The flat form args.json holds: every field of both, "model" naming the task."""
        return {**asdict(self.run), **asdict(self.task)}

    @classmethod
    def create(cls, model: str | None = None, **options: Any) -> TrainConfig:
        """From flat options (`data=..., epochs=2, imgsz=64`); `imgsz` is the window side for
        the window task. Raises DetectError for an option the task does not have."""
        task_cls = _task_class(model)
        if task_cls is WindowTrainConfig and "imgsz" in options:
            options["window"] = options.pop("imgsz")
        run_keys = {f.name for f in fields(RunConfig)}
        task_keys = {f.name for f in fields(task_cls)} - {"model"}
        unknown = sorted(set(options) - run_keys - task_keys)
        if unknown:
            raise DetectError(f"--model {model} has no option {', '.join(unknown)}")
        run = RunConfig(**{k: v for k, v in options.items() if k in run_keys})
        task = task_cls(**{k: v for k, v in options.items() if k in task_keys})
        if task_cls is DetectorConfig:
            task.model = None if model is None else str(model)
        return cls(run, task)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        """Read a flat dict (args.json "config"), this version's or an older one's.

        Older runs: no "assigner" means the YOLOv2 rule they trained with; the window trainer
        took `imgsz` <= 96 as its window side (else 32) and ignored the detector's options.
        """
        d = dict(d)
        model = d.get("model", DEFAULT)  # runs saved before --model could be omitted
        task_cls = _task_class(model)
        if task_cls is WindowTrainConfig and "window" not in d:
            imgsz = int(d.get("imgsz", 320))
            d["window"] = imgsz if imgsz <= MAX_WINDOW else WindowTrainConfig.window
        if task_cls is DetectorConfig:
            d = {"assigner": "yolov2", **d}
        run = RunConfig(**{f.name: d[f.name] for f in fields(RunConfig) if f.name in d})
        task = task_cls(**{f.name: d[f.name] for f in fields(task_cls) if f.name in d})
        return cls(run, task)


def _task_class(model: str | None) -> type[DetectorConfig] | type[WindowTrainConfig]:
    if model == Model.window:
        return WindowTrainConfig
    if model is None or model in DETECTORS:
        return DetectorConfig
    raise DetectError(f"unknown model {model!r} (use {', '.join(DETECTORS)} or window)")


@dataclass
class TrackerConfig:
    """ByteTrack's settings (`detect track`, `Detector.track`; detect.track.bytetrack), named as
    in ultralytics' `bytetrack.yaml`. The thresholds are the paper's (track_thresh 0.5, a new
    track at + 0.1), which scored as ultralytics' own on bench/track.py's clips."""

    high_thresh: float = 0.5  # first association: boxes scoring at least this
    low_thresh: float = 0.1  # second association: boxes scoring above this (and below high)
    new_track_thresh: float = 0.6  # an unmatched box scoring at least this starts a track
    match_thresh: float = 0.8  # first association: largest cost 1 - IoU x score of a match
    track_buffer: int = 30  # frames a lost track waits for its object (at 30 fps)
    fuse_score: bool = True  # first association cost 1 - IoU x score (MOT17); False: 1 - IoU

    def check(self) -> TrackerConfig:
        """Raise DetectError for an impossible setting."""
        for name in ("high_thresh", "low_thresh", "new_track_thresh", "match_thresh"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise DetectError(f"{name} must be in [0, 1], got {v}")
        if self.low_thresh > self.high_thresh:
            raise DetectError(
                f"low_thresh {self.low_thresh} is above high_thresh {self.high_thresh}"
            )
        if self.track_buffer < 0:
            raise DetectError(f"track_buffer must be >= 0 frames, got {self.track_buffer}")
        return self


class Method(StrEnum):
    """Which backend predicts: the YOLO detector or a window classifier slid over the image."""

    yolo = "yolo"
    sliding = "sliding"  # crop every window, classify the crops in batches
    conv_sliding = "conv-sliding"  # the classifier as a conv net, one pass per scale (OverFeat)


class Merge(StrEnum):
    """How `--tile` merges the boxes of overlapping tiles and the whole image (detect.tiling)."""

    nms = "nms"  # SAHI's NMS: a box overlapping a better one (IOS >= 0.5) is dropped
    nmm = "nmm"  # SAHI's greedy non-maximum merging: matching boxes become their union


@dataclass
class PredictConfig:
    """How to predict; the defaults are `detect predict`'s."""

    imgsz: int | None = None  # letterbox side; None: the size the weights were trained at
    conf: float = 0.25  # keep detections scoring at least this (obj * class prob)
    iou: float = 0.45  # NMS IoU threshold (per class)
    max_det: int = 300  # cap per image, highest scores kept
    classes: list[int] | None = None  # keep only these class ids
    multi_label: bool = False  # one row per (box, class) above conf: evaluation wants it
    agnostic_nms: bool = False  # NMS across classes: a box suppresses overlaps of any class
    batch: int = 8  # images per forward pass; larger amortises Python overhead
    method: Method | str = Method.yolo  # a window classifier's weights need a sliding method
    scales: str | Sequence[int] | None = None  # sliding: window sides in px (None: its default)
    stride: int | None = None  # sliding: window step in pixels (None: the classifier's stride)
    # letterbox to the smallest stride multiple holding the image (ultralytics' `auto`), not a
    # square: a 4:3 photo at 320 runs at 256 x 320, same boxes (the padding is not content)
    rect: bool = True
    augment: bool = False  # test-time augmentation: TTA_VARIANTS merged (detect.inference.tta)
    half: bool = False  # fp16 weights and inputs (CUDA only; decode and NMS stay float32)
    tile: int | None = None  # tiled inference: tile side in image pixels (None: off)
    overlap: float = 0.2  # tiles: fraction of the tile two neighbours share
    merge: Merge | str = Merge.nms  # tiles: how boxes across tiles are merged
    merge_threshold: float = 0.5  # tiles: boxes match at IOS (intersection / smaller) >= this

    def check(self) -> PredictConfig:
        """Raise DetectError for an impossible setting; `method` becomes a Method."""
        if self.method not in tuple(Method):
            names = ", ".join(m.value for m in Method)
            raise DetectError(f"unknown --method {self.method!r} (use {names})")
        self.method = Method(self.method)
        if self.imgsz is not None and (self.imgsz < 32 or self.imgsz % 32):
            raise DetectError(f"--imgsz must be a positive multiple of 32, got {self.imgsz}")
        if not 0.0 <= self.conf <= 1.0:
            raise DetectError(f"--conf must be in [0, 1], got {self.conf}")
        if not 0.0 <= self.iou <= 1.0:
            raise DetectError(f"--iou must be in [0, 1], got {self.iou}")
        if self.max_det < 1:
            raise DetectError(f"--max-det must be >= 1, got {self.max_det}")
        if self.batch < 1:
            raise DetectError(f"--batch must be >= 1, got {self.batch}")
        if self.merge not in tuple(Merge):
            raise DetectError(f"unknown --merge {self.merge!r} (use nms or nmm)")
        self.merge = Merge(self.merge)
        if self.tile is not None:
            if self.tile < 32:
                raise DetectError(f"--tile must be >= 32 pixels, got {self.tile}")
            if self.method != Method.yolo:
                raise DetectError("--tile works with --method yolo only")
        if not 0.0 <= self.overlap < 1.0:
            raise DetectError(f"--overlap must be in [0, 1), got {self.overlap}")
        if self.augment and self.method != Method.yolo:
            raise DetectError("--augment works with --method yolo only")
        if self.half and self.method != Method.yolo:
            raise DetectError("--half works with --method yolo only")
        if not 0.0 <= self.merge_threshold <= 1.0:
            raise DetectError(f"merge threshold must be in [0, 1], got {self.merge_threshold}")
        return self
