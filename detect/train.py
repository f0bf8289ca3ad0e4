"""Training: `train(TrainConfig(...), callback)` -> TrainResult. Never prints.

The loop: AdamW (or SGD) with linear warmup then cosine decay, scheduled by iterations for
`epochs` or by wall-clock for `time` (the cosine ends when the budget ends); EMA weights (the
ones validated and saved); mosaic / scale / flip / HSV augmentation (detect.data.augment);
validation through detect.predict.predict_records + detect.metrics.evaluate; AMP on CUDA; DDP
when launched by torchrun (RANK / WORLD_SIZE / LOCAL_RANK set).

Run folder (never overwritten): weights/best.safetensors and weights/last.safetensors (EMA
weights, written atomically each epoch), results.csv, args.json, results.png, and resume.safetensors
(model, EMA and optimizer tensors; scalars and RNG states as JSON in its metadata; no pickle), so
`resume=RUN_DIR` continues exactly where it stopped, mid-epoch included.

Progress goes to `callback(event, info)`; events: "start", "epoch", "batch", "val_start",
"val_batch", "val", "epoch_end", "end" (info dicts documented at each call).
"""

from __future__ import annotations

import base64
import csv
import io
import json
import math
import os
import random
import signal
import threading
import time
from collections.abc import Callable
from contextlib import contextmanager, nullcontext
from copy import deepcopy
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from detect.errors import DetectError
from detect.files import atomic_write_bytes, atomic_write_json, atomic_write_text, new_run_dir

Callback = Callable[[str, dict[str, Any]], Any]

RESUME_FILE = "resume.safetensors"
CSV_FIELDS = [
    "epoch", "box_loss", "obj_loss", "cls_loss", "val_map50", "val_map", "lr", "images",
    "seconds", "elapsed",
]  # fmt: skip


@dataclass
class TrainConfig:
    """Everything a training run depends on (written to args.json; --resume reads it back)."""

    data: str = ""  # data set: YAML, COCO JSON or VOC folder
    model: str = "tiny"  # "tiny" | "yolov2" | "window" (dispatched to detect.train_window)
    epochs: int | None = None  # None: 100, or unlimited when `time` is given
    time: float | None = None  # wall-clock budget in minutes (validation and saving included)
    batch: int = 8  # images per step (per process under DDP); 8 beat 16 on a CPU time budget
    workers: int = 2  # DataLoader worker processes (0: load in the main process)
    lr: float | None = None  # peak learning rate; None: 0.001 AdamW, 0.01 SGD
    optimizer: str = "adamw"  # "adamw" | "sgd"
    weight_decay: float = 5e-4  # on conv/linear weights only (not BN, not biases)
    momentum: float = 0.937  # SGD momentum / AdamW beta1 (YOLOv5's)
    warmup_epochs: float = 1.0  # linear LR warmup length (at least `warmup_min_iters` steps)
    warmup_min_iters: int = 50  # short runs still get a stable start
    lrf: float = 0.01  # final LR = lr * lrf at the end of the cosine
    patience: int = 50  # stop after this many validations without improvement (0: never)
    val_every: int = 1  # validate every N epochs (the last epoch always)
    imgsz: int = 320  # training and validation input side (multiple of 32)
    multi_scale: bool = False  # random input side in [0.5, 1.5] x imgsz per batch
    seed: int = 0  # everything random derives from it
    device: str = "auto"  # auto | cpu | cuda | cuda:N | mps
    anchors: str | None = None  # anchors JSON file, "auto" (k-means on the train boxes), None
    width: float = 1.0  # tiny model channel multiplier
    depth: float = 1.0  # tiny model residual blocks per stage multiplier
    xy_scale: float | None = None  # centre-offset stretch (ModelConfig.xy_scale); None: that of
    # --weights, else 2 for tiny (3 positive cells per box: +12% val mAP50-95 in a 20-min A/B)
    # and 1 for yolov2 (its exact decode)
    weights: str | None = None  # start from these weights (same classes) instead of scratch
    assigner: str = "tal"  # target assignment (LossConfig.assigner): "tal" (task-aligned) learned
    # +49% val mAP50-95 over "yolov2" (static, by anchor shape) in a 15-minute A/B
    ema_decay: float = 0.9999  # EMA decay, ramped up over the first ~2000 steps (YOLOv5)
    ema_tau: float = 2000.0  # ramp length of the EMA decay, in steps
    close_mosaic: float = 0.0  # fraction of the run at the end trained without mosaic (YOLOv8
    # uses 10 epochs; here val mAP fell in that phase in 4 of 4 timed runs, so off by default)
    mosaic: float = 1.0  # mosaic probability
    scale: float = 0.5  # random zoom 1 +- scale (AugmentConfig.scale)
    cache: str | None = None  # "ram": decode and resize every training image once
    strict: bool = False  # refuse to train when a reader skipped or mended anything
    val_conf: float = 0.001  # validation confidence threshold (mAP needs the low scores too)
    val_iou: float = 0.7  # validation NMS IoU (as the reference measurement)
    train_split: str = "train"  # split names in DATA
    val_split: str = "val"
    max_images: int | None = None  # use only the first N images of each split (quick runs)
    out: str = "runs/train"  # run folder (a new one: runs/train-2, ... if it exists)
    name: str | None = None  # run folder name under the parent of `out`
    resume: str | None = None  # run folder to continue
    command: str = ""  # the command line, recorded in the weights' training summary

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        # runs saved before the assigner was a setting trained with the YOLOv2 one
        d = {"assigner": "yolov2", **d}
        return cls(**{k: v for k, v in d.items() if k in known})


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
    stopped: str  # "epochs" | "time" | "patience" | "interrupted"
    rows: list[dict] = field(default_factory=list)  # results.csv rows


# ---------------------------------------------------------------------------------------------
# Schedule, EMA, optimizer


def lr_factor(progress: float, lrf: float) -> float:
    """Cosine from 1 at progress 0 to `lrf` at progress 1 (clamped)."""
    p = min(max(progress, 0.0), 1.0)
    return lrf + (1 - lrf) * 0.5 * (1 + math.cos(math.pi * p))


def warmup_factor(iteration: int, warmup_iters: int) -> float:
    """Linear ramp from ~0 to 1 over the first `warmup_iters` steps."""
    return 1.0 if warmup_iters <= 0 else min(1.0, (iteration + 1) / warmup_iters)


class ModelEMA:
    """Exponential moving average of a model's weights and buffers (YOLOv5's ModelEMA).

    decay(updates) = decay * (1 - exp(-updates / tau)): near 0 at first so the average follows
    the fast-changing early weights, then up to `decay`.
    """

    def __init__(self, model: nn.Module, decay: float = 0.9999, tau: float = 2000.0) -> None:
        self.ema = deepcopy(_unwrap(model)).eval()
        for p in self.ema.parameters():
            p.requires_grad_(False)
        self.decay, self.tau, self.updates = decay, tau, 0

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.updates += 1
        d = self.decay * (1 - math.exp(-self.updates / self.tau))
        msd = _unwrap(model).state_dict()
        for k, v in self.ema.state_dict().items():
            if v.dtype.is_floating_point:
                v.mul_(d).add_(msd[k].detach(), alpha=1 - d)
            else:
                v.copy_(msd[k])


def _unwrap(model: nn.Module) -> nn.Module:
    return getattr(model, "module", model)


def build_optimizer(model: nn.Module, cfg: TrainConfig, lr: float) -> torch.optim.Optimizer:
    """AdamW or SGD; weight decay on conv/linear weights only (decaying BN or biases hurts)."""
    decay, no_decay = [], []
    for m in model.modules():
        for name, p in m.named_parameters(recurse=False):
            is_weight = name == "weight" and not isinstance(m, nn.modules.batchnorm._BatchNorm)
            (decay if is_weight else no_decay).append(p)
    groups = [
        {"params": decay, "weight_decay": cfg.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=cfg.momentum, nesterov=True)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=lr, betas=(cfg.momentum, 0.999))
    raise DetectError(f"unknown optimizer {cfg.optimizer!r} (use adamw or sgd)")


class EpochSampler(torch.utils.data.Sampler):
    """A shuffled order per (seed, epoch), sharded over DDP ranks, optionally skipping a prefix.

    Same order as torch's DistributedSampler (padded so every rank gets the same count), but
    with `start` so a run resumed mid-epoch sees exactly the batches it had not seen yet.
    """

    def __init__(self, n: int, seed: int, rank: int = 0, world: int = 1) -> None:
        self.n, self.seed, self.rank, self.world = n, seed, rank, world
        self.epoch, self.start = 0, 0
        self.per_rank = math.ceil(n / world)

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        self.epoch, self.start = epoch, start

    def __iter__(self):
        g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        idx = torch.randperm(self.n, generator=g).tolist()
        idx += idx[: self.per_rank * self.world - self.n]  # pad to a multiple of world
        return iter(idx[self.rank :: self.world][self.start :])

    def __len__(self) -> int:
        return self.per_rank - self.start


# ---------------------------------------------------------------------------------------------
# Resume state: safetensors tensors + JSON scalars (never pickle)


def _b64(b: bytes) -> str:
    return base64.b64encode(b).decode("ascii")


def rng_state() -> dict[str, Any]:
    """Python, numpy and torch RNG states as JSON-able values (torch states as base64 bytes)."""
    np_state = np.random.get_state()
    py = random.getstate()
    state = {
        "python": [py[0], list(py[1]), py[2]],
        "numpy": [np_state[0], _b64(np_state[1].tobytes()), *np_state[2:]],
        "torch": _b64(torch.get_rng_state().numpy().tobytes()),
        "cuda": [_b64(s.numpy().tobytes()) for s in torch.cuda.get_rng_state_all()]
        if torch.cuda.is_available()
        else [],
    }
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    v, internal, gauss = state["python"]
    random.setstate((v, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    keys = np.frombuffer(base64.b64decode(keys), dtype=np.uint32).copy()
    np.random.set_state((name, keys, pos, has_gauss, cached))
    raw = np.frombuffer(base64.b64decode(state["torch"]), dtype=np.uint8).copy()
    torch.set_rng_state(torch.from_numpy(raw))
    if state.get("cuda") and torch.cuda.is_available():
        cuda = [
            torch.from_numpy(np.frombuffer(base64.b64decode(s), np.uint8).copy())
            for s in state["cuda"]
        ]
        torch.cuda.set_rng_state_all(cuda[: torch.cuda.device_count()])


def save_resume_state(path: Path, model, ema: ModelEMA, opt, scaler, scalars: dict) -> None:
    """Write model / EMA / optimizer tensors and the JSON `scalars` (+ RNG) atomically."""
    from safetensors.torch import save

    tensors: dict[str, torch.Tensor] = {}
    for k, v in _unwrap(model).state_dict().items():
        tensors[f"model.{k}"] = v
    for k, v in ema.ema.state_dict().items():
        tensors[f"ema.{k}"] = v
    osd = opt.state_dict()
    opt_scalars: dict[str, dict] = {}
    for pid, st in osd["state"].items():
        for k, v in st.items():
            if isinstance(v, torch.Tensor):
                tensors[f"optim.{pid}.{k}"] = v
            else:
                opt_scalars.setdefault(str(pid), {})[k] = v
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    state = {
        **scalars,
        "ema_updates": ema.updates,
        "param_groups": osd["param_groups"],
        "optim_scalars": opt_scalars,
        "scaler": scaler.state_dict() if scaler is not None and scaler.is_enabled() else None,
        "rng": rng_state(),
    }
    atomic_write_bytes(path, save(tensors, metadata={"state": json.dumps(state)}))


def load_resume_state(path: Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """(scalars, tensors) of a resume file; DetectError naming it if it is missing or bad."""
    from safetensors import safe_open

    if not path.is_file():
        raise DetectError(f"{path}: no resume state here (is this a run folder of detect train?)")
    try:
        with safe_open(str(path), framework="pt") as f:
            state = json.loads((f.metadata() or {})["state"])
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (not a dict)
    except (OSError, ValueError, KeyError, RuntimeError) as e:
        raise DetectError(f"{path}: unreadable resume state ({str(e).splitlines()[0]})") from None
    return state, tensors


def _restore(model, ema: ModelEMA, opt, scaler, state: dict, tensors: dict) -> None:
    def part(prefix: str) -> dict[str, torch.Tensor]:
        n = len(prefix)
        return {k[n:]: v for k, v in tensors.items() if k.startswith(prefix)}

    _unwrap(model).load_state_dict(part("model."))
    ema.ema.load_state_dict(part("ema."))
    ema.updates = int(state["ema_updates"])
    opt_state: dict[int, dict] = {}
    for k, v in part("optim.").items():
        pid, key = k.split(".", 1)
        opt_state.setdefault(int(pid), {})[key] = v
    for pid, d in state["optim_scalars"].items():
        opt_state.setdefault(int(pid), {}).update(d)
    opt.load_state_dict({"state": opt_state, "param_groups": state["param_groups"]})
    if scaler is not None and state.get("scaler"):
        scaler.load_state_dict(state["scaler"])
    set_rng_state(state["rng"])


# ---------------------------------------------------------------------------------------------
# Results files


def write_results(run_dir: Path, rows: list[dict]) -> None:
    """results.csv (one row per epoch) and results.png (training curves)."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=CSV_FIELDS, lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: r.get(k, "") for k in CSV_FIELDS})
    atomic_write_text(run_dir / "results.csv", buf.getvalue())
    plot_results(run_dir / "results.png", rows)


def read_results(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    out = []
    for r in rows:
        out.append({k: (float(v) if v not in ("", None) else "") for k, v in r.items()})
        out[-1]["epoch"] = int(out[-1]["epoch"])
    return out


def plot_results(path: Path, rows: list[dict]) -> None:
    """Loss terms and val mAP per epoch, as a PNG (matplotlib Agg: no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 4, figsize=(16, 3.6))
    ep = [r["epoch"] for r in rows]
    for ax, key in zip(axes[:3], ("box_loss", "obj_loss", "cls_loss"), strict=True):
        ax.plot(ep, [r[key] for r in rows], marker=".")
        ax.set_title(key)
        ax.set_xlabel("epoch")
    val = [(r["epoch"], r["val_map50"], r["val_map"]) for r in rows if r.get("val_map") != ""]
    if val:
        e, m50, m = zip(*val, strict=True)
        axes[3].plot(e, m50, marker=".", label="mAP50")
        axes[3].plot(e, m, marker=".", label="mAP50-95")
        axes[3].legend()
    axes[3].set_title("val mAP")
    axes[3].set_xlabel("epoch")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())


# ---------------------------------------------------------------------------------------------
# Setup helpers


@dataclass
class _Dist:
    """Process group facts; world == 1 means no DDP."""

    rank: int = 0
    local_rank: int = 0
    world: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def _init_dist(device_spec: str) -> tuple[_Dist, torch.device]:
    from detect.device import select_device

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1 or "RANK" not in os.environ:
        return _Dist(), select_device(device_spec)
    import torch.distributed as dist

    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    device = select_device(device_spec)
    if device.type == "cuda":
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return _Dist(rank, local, world), device


def _anchors_for(cfg: TrainConfig, records, levels: int, per_level: int):
    """Anchors per level from `cfg.anchors` (file / "auto"), or None for the model default."""
    from detect.models import split_anchors

    if cfg.anchors is None:
        return None, None
    if cfg.anchors == "auto":
        from detect.anchors import boxes_wh, kmeans_anchors

        wh = boxes_wh(records, "letterbox")  # the letterbox scales the long side to the input
        if not len(wh):
            raise DetectError(f"{cfg.data}: no boxes in the training split for --anchors auto")
        res = kmeans_anchors(wh, levels * per_level, seed=cfg.seed)
        info = {"source": "auto", "avg_iou": res.avg_iou, "bpr": res.bpr}
        return split_anchors(res.anchors.tolist(), levels), info
    from detect.anchors import read_anchors

    a = read_anchors(cfg.anchors)
    if len(a) == per_level * levels:
        return split_anchors(a.tolist(), levels), {"source": str(cfg.anchors)}
    raise DetectError(
        f"{cfg.anchors}: {len(a)} anchors, but --model {cfg.model} needs {levels} x {per_level}"
    )


def _check(cfg: TrainConfig) -> None:
    if cfg.imgsz < 32 or cfg.imgsz % 32:
        raise DetectError(f"--imgsz must be a positive multiple of 32, got {cfg.imgsz}")
    if cfg.batch < 1:
        raise DetectError(f"--batch must be >= 1, got {cfg.batch}")
    if cfg.epochs is not None and cfg.epochs < 1:
        raise DetectError(f"--epochs must be >= 1, got {cfg.epochs}")
    if cfg.time is not None and not cfg.time > 0:
        raise DetectError(f"--time must be > 0 minutes, got {cfg.time}")
    if cfg.workers < 0:
        raise DetectError(f"--workers must be >= 0, got {cfg.workers}")
    if cfg.val_every < 1:
        raise DetectError(f"--val-every must be >= 1, got {cfg.val_every}")
    if cfg.assigner not in ("tal", "yolov2"):
        raise DetectError(f"unknown assigner {cfg.assigner!r} (use tal or yolov2)")
    if cfg.optimizer not in ("adamw", "sgd"):
        raise DetectError(f"unknown optimizer {cfg.optimizer!r} (use adamw or sgd)")
    if cfg.lr is not None and not cfg.lr > 0:
        raise DetectError(f"--lr must be > 0, got {cfg.lr}")


@contextmanager
def _sigint_flag():
    """While active, Ctrl-C sets a flag (checked between steps) instead of raising at once, so
    the state saved is never half-updated; a second Ctrl-C raises as usual."""
    flag = {"hit": False}
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return

    def handler(signum, frame):
        if flag["hit"]:
            raise KeyboardInterrupt
        flag["hit"] = True

    old = signal.signal(signal.SIGINT, handler)
    try:
        yield flag
    finally:
        signal.signal(signal.SIGINT, old)


def load_training_data(cfg: TrainConfig, emit: Callable[..., Any]):
    """(train, val) DatasetRecords of `cfg.data`, with every image's header read first.

    An image that is missing or unreadable is dropped from its split and reported (a count,
    fast: headers only), so a bad file is named before the first epoch instead of failing a
    DataLoader worker mid-run. Emits `data` (train_report, val_report: ReadReport) for the
    caller to show. Raises DetectError with `cfg.strict` when anything was skipped or mended.
    """
    from dataclasses import replace

    from detect.data import image_size, load_dataset

    splits = []
    for split in (cfg.train_split, cfg.val_split):
        rec = _subset(load_dataset(cfg.data, split), cfg.max_images)
        good = []
        for im in rec.images:
            try:
                if im.path is None:
                    raise DetectError(f"image {im.id}: no file name")
                image_size(im.path)
                good.append(im)
            except DetectError as e:
                rec.report.add("bad_image", f"{e}, skipped")
        if not good:
            raise DetectError(
                f"{cfg.data}: none of the {len(rec.images)} images of split '{split}' can be read"
                f" (first: {rec.report.entries['bad_image'][0]})"
            )
        splits.append(replace(rec, images=good) if len(good) < len(rec.images) else rec)
    train_rec, val_rec = splits
    if train_rec.names != val_rec.names:
        raise DetectError(
            f"{cfg.data}: the train split's classes ({', '.join(train_rec.names[:6])}, ...) are "
            f"not the val split's ({', '.join(val_rec.names[:6])}, ...)"
        )
    emit("data", train_report=train_rec.report, val_report=val_rec.report)
    problems = train_rec.report.warnings() + val_rec.report.warnings()
    if cfg.strict and problems:
        raise DetectError(f"--strict: {problems} data problems (listed above)")
    return train_rec, val_rec


def write_data_report(run_dir: Path, train_rec, val_rec) -> None:
    """`data-report.txt`: every entry the readers logged, per split and kind (the terminal
    shows the first few)."""
    from detect.data.types import REPORT_KINDS

    lines = []
    for rec in (train_rec, val_rec):
        for kind, (level, what) in REPORT_KINDS.items():
            entries = rec.report.entries.get(kind, [])
            if entries:
                lines.append(f"[{rec.split}] {level}: {len(entries)} {what}")
                lines += [f"  {m}" for m in entries]
    atomic_write_text(run_dir / "data-report.txt", "\n".join(lines) + "\n" if lines else "")


def _subset(records, n: int | None):
    if n is None or n >= len(records.images):
        return records
    from dataclasses import replace

    return replace(records, images=records.images[:n])


# ---------------------------------------------------------------------------------------------
# The loop


def _xy_scale_for(cfg: TrainConfig) -> float:
    """Centre-offset stretch of the new model: `cfg.xy_scale`, else that of --weights, else 2
    for tiny and 1 for yolov2."""
    if cfg.xy_scale is not None:
        return cfg.xy_scale
    if cfg.weights:
        from detect.weights import read_metadata

        return float((read_metadata(cfg.weights).get("config") or {}).get("xy_scale", 1.0))
    return 2.0 if cfg.model == "tiny" else 1.0


def train(cfg: TrainConfig, callback: Callback | None = None) -> TrainResult:
    """Train a detector as `cfg` says; see the module docstring. Never prints.

    Raises DetectError for bad input, and when the loss becomes NaN/inf (the last good
    checkpoint stays in the run folder).
    """
    if cfg.resume:
        run_dir = Path(cfg.resume)
        args = run_dir / "args.json"
        if not args.is_file():
            raise DetectError(f"{run_dir}: not a training run folder (no args.json)")
        try:
            saved = json.loads(args.read_text())["config"]
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise DetectError(f"{args}: unreadable ({e})") from None
        # Same run: the saved configuration, except what only says how to run it here.
        keep = {"device": cfg.device, "workers": cfg.workers, "resume": str(run_dir)}
        cfg = TrainConfig.from_dict({**saved, **keep})
    if cfg.model == "window":
        from detect.train_window import train_window  # another issue's module, optional

        return train_window(cfg, callback)
    _check(cfg)
    return _Trainer(cfg, callback).run()


class _Trainer:
    """State of one run; `run()` is the loop. Split up only to keep each piece readable."""

    def __init__(self, cfg: TrainConfig, callback: Callback | None) -> None:
        self.cfg = cfg
        self.cb = callback or (lambda event, info: None)
        self.dist, self.device = _init_dist(cfg.device)

    def emit(self, event: str, **info: Any) -> None:
        if self.dist.main:
            self.cb(event, info)

    # -- setup ---------------------------------------------------------------------------------

    def setup(self) -> None:
        from detect.data.augment import AugmentConfig, AugmentedDataset
        from detect.data.dataset import collate_fn
        from detect.models import ModelConfig, build_model

        cfg, d = self.cfg, self.dist
        torch.manual_seed(cfg.seed + d.rank)
        np.random.seed(cfg.seed + d.rank)
        random.seed(cfg.seed + d.rank)
        self.train_rec, self.val_rec = load_training_data(cfg, self.emit)
        names = self.train_rec.names

        resume_state = None
        if cfg.resume:
            self.run_dir = Path(cfg.resume)
            resume_state, resume_tensors = load_resume_state(self.run_dir / RESUME_FILE)
            mcfg = ModelConfig.from_dict(resume_state["model_config"])
            self.anchor_info = resume_state.get("anchor_info")
        else:
            base = ModelConfig(arch=cfg.model, num_classes=len(names), names=list(names))
            levels, per = base.num_levels, len(base.anchors[0])
            anchors, self.anchor_info = _anchors_for(cfg, self.train_rec, levels, per)
            mcfg = ModelConfig(
                arch=cfg.model, num_classes=len(names), names=list(names),
                anchors=anchors or [], imgsz=cfg.imgsz, width=cfg.width, depth=cfg.depth,
                xy_scale=_xy_scale_for(cfg),
            )  # fmt: skip
            mcfg.validate()
            out = Path(cfg.out)
            # Only rank 0 writes; the others never touch the run folder.
            self.run_dir = (
                new_run_dir(out.parent / cfg.name if cfg.name else out) if d.main else out
            )
        self.model_cfg = mcfg
        model = build_model(mcfg)
        if cfg.weights and not cfg.resume:
            from detect.weights import init_from

            init_from(model, cfg.weights, f"--model {cfg.model} with {len(names)} classes")
        # channels_last: measured ~25% faster training steps on CPU (oneDNN convolutions).
        self.model = model.to(self.device, memory_format=torch.channels_last)
        self.ema = ModelEMA(self.model, cfg.ema_decay, cfg.ema_tau)
        self.lr0 = cfg.lr or (0.01 if cfg.optimizer == "sgd" else 0.001)
        self.opt = build_optimizer(self.model, cfg, self.lr0)
        amp = self.device.type == "cuda"
        self.scaler = torch.amp.GradScaler("cuda", enabled=amp) if amp else None
        self.autocast = (
            (lambda: torch.autocast("cuda", dtype=torch.float16)) if amp else nullcontext
        )

        self.dataset = AugmentedDataset(
            self.train_rec,
            cfg.imgsz,
            AugmentConfig(mosaic=cfg.mosaic, scale=cfg.scale),
            seed=cfg.seed,
        )
        if cfg.cache == "ram":
            self.dataset.cache_images(
                lambda done, total: self.emit("cache", done=done, total=total)
            )
        self.sampler = EpochSampler(len(self.dataset), cfg.seed, d.rank, d.world)
        self.collate = collate_fn
        self.nb = math.ceil(len(self.sampler) / cfg.batch)  # batches per epoch
        self.warmup_iters = max(cfg.warmup_min_iters, round(cfg.warmup_epochs * self.nb))
        self.total_epochs = cfg.epochs or (10**9 if cfg.time else 100)
        self.budget = cfg.time * 60 if cfg.time else None

        # Progress counters (restored on resume).
        self.epoch, self.batch_start, self.iteration = 0, 0, 0
        self.elapsed_before = 0.0  # training seconds of earlier sessions
        self.best_fitness, self.best_epoch, self.best_map = -1.0, -1, (-1.0, -1.0)
        self.bad_vals, self.last_val_seconds = 0, None
        self.rows: list[dict] = []
        if resume_state is not None:
            _restore(self.model, self.ema, self.opt, self.scaler, resume_state, resume_tensors)
            for k in ("epoch", "batch_start", "iteration", "elapsed_before", "best_fitness",
                      "best_epoch", "bad_vals", "last_val_seconds"):  # fmt: skip
                setattr(self, k, resume_state[k])
            self.best_map = tuple(resume_state["best_map"])
            self.epoch_acc = resume_state.get("epoch_acc")
            if d.main:
                self.rows = read_results(self.run_dir / "results.csv")
        else:
            self.epoch_acc = None

        if d.world > 1:
            from torch.nn.parallel import DistributedDataParallel as DDP

            ids = [self.device.index] if self.device.type == "cuda" else None
            self.model = DDP(self.model, device_ids=ids)
        if d.main and not cfg.resume:
            atomic_write_json(self.run_dir / "args.json", self.args_json())
            write_data_report(self.run_dir, self.train_rec, self.val_rec)

    def args_json(self) -> dict[str, Any]:
        return {
            "config": asdict(self.cfg),
            "model": self.model_cfg.to_dict(),
            "anchors": self.anchor_info,
            "lr": self.lr0,
            "device": str(self.device),
            "world_size": self.dist.world,
            "train_images": len(self.train_rec.images),
            "val_images": len(self.val_rec.images),
            "batches_per_epoch": self.nb,
        }

    # -- helpers -------------------------------------------------------------------------------

    def elapsed(self) -> float:
        return self.elapsed_before + (time.perf_counter() - self.t_start)

    def progress(self) -> float:
        """0..1 through the run: by wall-clock with a time budget, else by iterations."""
        if self.budget is not None:
            return self.elapsed() / self.budget
        return self.iteration / (self.total_epochs * self.nb)

    def set_lr(self) -> float:
        lr = self.lr0 * warmup_factor(self.iteration, self.warmup_iters)
        lr *= lr_factor(self.progress(), self.cfg.lrf)
        for g in self.opt.param_groups:
            g["lr"] = lr
        return lr

    def out_of_time(self) -> bool:
        """Stop now so the final validation and saving still fit in the budget."""
        if self.budget is None:
            return False
        reserve = self.last_val_seconds
        if reserve is None:  # not validated yet: guess from the training speed
            per_img = (time.perf_counter() - self.t_start) / max(1, self.images_seen)
            reserve = 0.5 * per_img * len(self.val_rec.images) + 2.0
        return self.elapsed() + 1.5 * reserve + 3.0 >= self.budget

    def any_rank(self, *flags: bool) -> list[bool]:
        """OR of each flag over all ranks (one all-reduce), so every rank takes the same branch."""
        if self.dist.world == 1:
            return list(flags)
        import torch.distributed as dist

        t = torch.tensor([float(f) for f in flags], device=self.device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return [bool(v) for v in t.tolist()]

    def sum_ranks(self, value: int) -> int:
        if self.dist.world == 1:
            return value
        import torch.distributed as dist

        t = torch.tensor([value], dtype=torch.int64, device=self.device)
        dist.all_reduce(t)
        return int(t.item())

    def barrier(self) -> None:
        if self.dist.world > 1:
            import torch.distributed as dist

            dist.barrier()

    def summary(self) -> dict[str, Any]:
        return {
            "data": str(self.cfg.data),
            "epochs": self.epoch,
            "seconds": round(self.elapsed(), 1),
            "imgsz": self.cfg.imgsz,
            "batch": self.cfg.batch,
            "optimizer": self.cfg.optimizer,
            "lr": self.lr0,
            "seed": self.cfg.seed,
            "val_map50": self.best_map[0],
            "val_map": self.best_map[1],
            "best_epoch": self.best_epoch,
            "train_images": len(self.train_rec.images),
            "val_images": len(self.val_rec.images),
            "command": self.cfg.command,
        }

    def save(self, best: bool, partial_epoch: bool, acc: dict | None) -> None:
        """last (and best) EMA weights, results, and the resume state; rank 0 only."""
        from detect.weights import save_weights

        wdir = self.run_dir / "weights"
        meta = {"training": self.summary()}
        save_weights(wdir / "last.safetensors", self.ema.ema, meta)
        if best:
            save_weights(wdir / "best.safetensors", self.ema.ema, meta)
        scalars = {
            "epoch": self.epoch,
            "batch_start": self.batch_start if partial_epoch else 0,
            "iteration": self.iteration,
            "elapsed_before": self.elapsed(),
            "best_fitness": self.best_fitness,
            "best_epoch": self.best_epoch,
            "best_map": list(self.best_map),
            "bad_vals": self.bad_vals,
            "last_val_seconds": self.last_val_seconds,
            "epoch_acc": acc if partial_epoch else None,
            "model_config": self.model_cfg.to_dict(),
            "anchor_info": self.anchor_info,
        }
        save_resume_state(self.run_dir / RESUME_FILE, self.model, self.ema, self.opt,
                          self.scaler, scalars)  # fmt: skip
        write_results(self.run_dir, self.rows)

    def validate(self) -> tuple[float, float]:
        from detect.metrics.evaluate import evaluate
        from detect.predict import predict_records

        t0 = time.perf_counter()
        n = len(self.val_rec.images)
        self.emit("val_start", images=n)
        dets = predict_records(
            self.val_rec, self.ema.ema, imgsz=self.cfg.imgsz, conf=self.cfg.val_conf,
            iou=self.cfg.val_iou, batch=max(1, self.cfg.batch),
            callback=lambda done, total: self.emit("val_batch", done=done, total=total),
        )  # fmt: skip
        res = evaluate(self.val_rec, dets)
        self.last_val_seconds = time.perf_counter() - t0
        self.emit("val", map50=res.map50, map=res.map, seconds=self.last_val_seconds)
        return max(res.map50, 0.0), max(res.map, 0.0)

    # -- the loop ------------------------------------------------------------------------------

    def run(self) -> TrainResult:
        from functools import partial

        from detect.loss import LossConfig, yolo_loss

        self.setup()
        cfg, d = self.cfg, self.dist
        loss_fn = partial(yolo_loss, cfg=LossConfig(assigner=cfg.assigner))
        self.t_start = time.perf_counter()
        self.images_seen = 0
        stopped = "epochs"
        self.emit("start", run_dir=self.run_dir if d.main else None, epochs=cfg.epochs,
                  time=cfg.time, batches=self.nb, device=str(self.device), world=d.world,
                  train_images=len(self.train_rec.images), val_images=len(self.val_rec.images),
                  resumed_epoch=self.epoch if cfg.resume else None)  # fmt: skip
        if cfg.resume and self.budget is not None and self.elapsed_before >= self.budget:
            stopped = "time"
        with _sigint_flag() as sigint:
            while stopped == "epochs" and self.epoch < self.total_epochs:
                stopped = self.run_epoch(loss_fn, sigint)
                if stopped != "interrupted":  # the epoch is complete
                    self.epoch += 1
                    self.batch_start = 0
                    self.epoch_acc = None
                if stopped == "interrupted_after":
                    stopped = "interrupted"
        self.barrier()
        self.emit("end", run_dir=self.run_dir, stopped=stopped, best_epoch=self.best_epoch,
                  map50=self.best_map[0], map=self.best_map[1], seconds=self.elapsed())  # fmt: skip
        if d.world > 1:
            import torch.distributed as dist

            dist.destroy_process_group()
        wdir = self.run_dir / "weights" if d.main else Path()
        return TrainResult(
            run_dir=self.run_dir if d.main else Path(), best=wdir / "best.safetensors",
            last=wdir / "last.safetensors", epochs=self.epoch, best_epoch=self.best_epoch,
            map50=self.best_map[0], map=self.best_map[1], seconds=self.elapsed(),
            stopped=stopped, rows=self.rows,
        )  # fmt: skip

    def run_epoch(self, loss_fn, sigint) -> str:
        """One (possibly resumed, possibly cut short) epoch; returns why the run should stop,
        or "epochs" to go on."""
        cfg, d = self.cfg, self.dist
        epoch = self.epoch
        self.dataset.set_epoch(epoch)
        self.dataset.mosaic_on = self.progress() < 1 - cfg.close_mosaic
        self.sampler.set_epoch(epoch, self.batch_start * cfg.batch)
        loader = torch.utils.data.DataLoader(
            self.dataset, batch_size=cfg.batch, sampler=self.sampler, num_workers=cfg.workers,
            collate_fn=self.collate, pin_memory=self.device.type == "cuda", drop_last=False,
            generator=torch.Generator().manual_seed(cfg.seed + epoch),
        )  # fmt: skip
        self.model.train()
        acc = self.epoch_acc or {"loss": [0.0, 0.0, 0.0], "n": 0, "images": 0, "seconds": 0.0}
        t_epoch = time.perf_counter()
        self.emit("epoch", epoch=epoch, batches=self.nb, start=self.batch_start,
                  mosaic=self.dataset.mosaic_on)  # fmt: skip
        reason = None
        i = self.batch_start
        t_batch = time.perf_counter()
        for imgs, targets, _ in loader:
            lr = self.set_lr()
            x = imgs.to(self.device, non_blocking=True).float() / 255
            x = x.contiguous(memory_format=torch.channels_last)
            targets = targets.to(self.device)
            if cfg.multi_scale:
                x, targets = self.rescale(x, targets)
            with self.autocast():
                raw = self.model(x)
            loss, items = loss_fn(
                raw, targets, _unwrap(self.model).anchors, tuple(x.shape[-2:]),
                xy_scale=self.model_cfg.xy_scale,
            )  # fmt: skip
            bad = not bool(torch.isfinite(loss))
            (bad,) = self.any_rank(bad)
            if bad:
                raise DetectError(
                    f"loss became {loss.item()} at epoch {epoch + 1}, batch {i + 1}: training "
                    f"stopped; the last good checkpoint is in {self.run_dir / 'weights'} "
                    f"(try a lower --lr)"
                )
            self.opt.zero_grad(set_to_none=True)
            if self.scaler is not None:
                self.scaler.scale(loss).backward()
                self.scaler.unscale_(self.opt)
                nn.utils.clip_grad_norm_(self.model.parameters(), 10.0)
                self.scaler.step(self.opt)
                self.scaler.update()
            else:
                loss.backward()
                nn.utils.clip_grad_norm_(self.model.parameters(), 10.0)
                self.opt.step()
            self.ema.update(self.model)
            self.iteration += 1
            i += 1
            self.batch_start = i
            n_img = len(x) * d.world  # for speed and time estimates; counted exactly below
            self.images_seen += n_img
            for k in range(3):
                acc["loss"][k] += float(items[k])
            acc["n"] += 1
            acc["images"] += len(x)
            now = time.perf_counter()
            means = [v / acc["n"] for v in acc["loss"]]
            interrupted = False
            try:
                self.emit("batch", epoch=epoch, batch=i, batches=self.nb, box=means[0],
                          obj=means[1], cls=means[2], lr=lr,
                          images_per_s=n_img / max(now - t_batch, 1e-9))  # fmt: skip
            except KeyboardInterrupt:
                interrupted = True
            t_batch = now
            out_time, interrupted = self.any_rank(self.out_of_time(), interrupted or sigint["hit"])
            if interrupted:
                reason = "interrupted"
                break
            if out_time:
                reason = "time"
                break
        acc["seconds"] += time.perf_counter() - t_epoch
        images = self.sum_ranks(acc["images"])  # what every rank really trained on
        if reason == "interrupted":
            if d.main:
                self.save(best=False, partial_epoch=True, acc=acc)
            self.barrier()
            return "interrupted"

        # End of the epoch (or of the time budget): validate, save, decide.
        last = reason == "time" or epoch + 1 >= self.total_epochs
        do_val = last or (epoch + 1) % cfg.val_every == 0
        means = [v / max(acc["n"], 1) for v in acc["loss"]]
        row = {
            "epoch": epoch + 1, "box_loss": means[0], "obj_loss": means[1], "cls_loss": means[2],
            "val_map50": "", "val_map": "", "lr": self.opt.param_groups[0]["lr"],
            "images": images, "seconds": round(acc["seconds"], 2),
        }  # fmt: skip
        stop = False
        if d.main:
            best = False
            if do_val:
                m50, m = self.validate()
                row["val_map50"], row["val_map"] = round(m50, 5), round(m, 5)
                fitness = 0.1 * m50 + 0.9 * m
                if fitness > self.best_fitness:
                    self.best_fitness, self.best_epoch, self.best_map = fitness, epoch + 1, (m50, m)
                    self.bad_vals, best = 0, True
                else:
                    self.bad_vals += 1
                stop = cfg.patience > 0 and self.bad_vals >= cfg.patience
            elif self.best_epoch < 0:
                best = True  # keep a best file until the first validation
            row["elapsed"] = round(self.elapsed(), 1)
            self.rows.append(row)
            self.epoch += 1  # saved state points at the next epoch
            self.save(best=best, partial_epoch=False, acc=None)
            self.epoch -= 1
            self.emit("epoch_end", **row, best=best, best_epoch=self.best_epoch)
        self.barrier()
        (stop,) = self.any_rank(stop)
        if reason == "time":
            return "time"
        if stop:
            return "patience"
        if sigint["hit"]:
            return "interrupted_after"
        return "epochs"

    def rescale(self, x: torch.Tensor, targets: torch.Tensor):
        """Multi-scale: a random side in [0.5, 1.5] x imgsz (multiple of 32) for this batch."""
        s = self.cfg.imgsz
        new = int(random.uniform(0.5 * s, 1.5 * s + 32)) // 32 * 32
        if new == x.shape[-1]:
            return x, targets
        f = new / x.shape[-1]
        x = nn.functional.interpolate(x, size=(new, new), mode="bilinear", align_corners=False)
        targets = targets.clone()
        targets[:, 2:] *= f
        return x, targets
