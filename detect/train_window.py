"""Training the sliding-window classifier (`detect train DATA --model window`). Never prints.

Each epoch draws fresh square crops from the training images, resized to the window side W:
- positives: one per object, a square of side max(w, h) x U(0.9, 1.25) around the box centre
  (jittered by up to 10% of the side), labelled with the object's class: what a well placed
  window of the right scale sees;
- negatives (background, the last class): `neg_ratio` per positive, squares whose IoU with
  every object is < `NEG_IOU`, in four kinds by turn: anywhere in the image (log-uniform side),
  shifted off an object, a small part inside an object, a window far bigger than an object. The
  last three teach what sliding windows most confuse: where, and at which scale, a window stops
  being "the object".
Light augmentation (horizontal flip, brightness / contrast), AdamW with cosine decay and a
cross-entropy loss. Validation is the real task: conv-sliding detection on the val split scored
with detect.metrics (mAP50, mAP50-95); the best fitness (0.1 mAP50 + 0.9 mAP50-95) is kept.

The run folder has the detector's shape: weights/best.safetensors and weights/last.safetensors,
results.csv (the classification loss is `cls_loss`; `box_loss` and `obj_loss` are 0: there is
no box regression), results.png, args.json. `resume` continues from weights/last.safetensors
after the last finished epoch (the optimizer restarts; crop sampling is per epoch and seed).

Options come from detect.train.TrainConfig: `imgsz` is the window side W when <= 96, otherwise
(the detector default 320) W = 32; `batch` counts crops per step.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch import nn

from detect.errors import DetectError
from detect.files import atomic_write_json, new_run_dir
from detect.models.window import WindowConfig, build_window_model

NEG_IOU = 0.2  # a background crop overlaps every object less than this
MAX_WINDOW = 96  # imgsz above this is a detector size, not a window side
DEFAULT_WINDOW = 32
DEFAULT_EPOCHS = 15
CACHE_BYTES = 2 << 30  # keep decoded training images in memory up to this many bytes


def _iou_1n(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU of one xyxy box with ndarray[N, 4] xyxy boxes -> ndarray[N]."""
    if len(boxes) == 0:
        return np.zeros(0)
    lt = np.maximum(box[:2], boxes[:, :2])
    rb = np.minimum(box[2:], boxes[:, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=1)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return inter / np.maximum(area + areas - inter, 1e-9)


def crop_square(img: np.ndarray, x1: float, y1: float, side: float, out: int) -> np.ndarray:
    """The square (x1, y1, side) of img, edge-padded where it leaves the image, resized to
    out x out with the resize detect.sliding uses (AREA when shrinking, else LINEAR)."""
    h, w = img.shape[:2]
    xa, ya = round(x1), round(y1)
    s = max(1, round(side))
    xb, yb = xa + s, ya + s
    crop = img[max(ya, 0) : min(yb, h), max(xa, 0) : min(xb, w)]
    pads = ((max(-ya, 0), max(yb - h, 0)), (max(-xa, 0), max(xb - w, 0)), (0, 0))
    if crop.size == 0:
        crop = np.zeros((s, s, 3), np.uint8)
    elif any(p for pair in pads[:2] for p in pair):
        crop = np.pad(crop, pads, mode="edge")
    interp = cv2.INTER_AREA if s > out else cv2.INTER_LINEAR
    return cv2.resize(crop, (out, out), interpolation=interp)


def sample_squares(
    boxes: np.ndarray,
    classes: np.ndarray,
    num_classes: int,
    hw: tuple[int, int],
    window: int,
    rng: np.random.Generator,
    neg_ratio: float = 3.0,
) -> np.ndarray:
    """Where to crop one image -> ndarray[K, 4] rows (x1, y1, side, label), positives first.

    boxes: ndarray[N, 4] xyxy pixels, classes: ndarray[N]; background label = num_classes.
    """
    h, w = hw
    out = []
    for b, c in zip(boxes, classes, strict=True):
        side = max(b[2] - b[0], b[3] - b[1]) * math.exp(rng.uniform(math.log(0.9), math.log(1.25)))
        cx = (b[0] + b[2]) / 2 + rng.uniform(-0.1, 0.1) * side
        cy = (b[1] + b[3]) / 2 + rng.uniform(-0.1, 0.1) * side
        out.append((cx - side / 2, cy - side / 2, side, int(c)))
    n_neg = max(4, round(neg_ratio * len(boxes)))
    lo, hi = min(window * 0.75, min(h, w)), min(h, w)
    for k in range(n_neg):
        kind = k % 4 if len(boxes) else 0
        for _ in range(20):  # rejection sampling; give up quietly on crowded images
            if kind == 0:  # anywhere, log-uniform side
                side = math.exp(rng.uniform(math.log(lo), math.log(hi)))
                x1, y1 = rng.uniform(0, w - side), rng.uniform(0, h - side)
            else:  # about an object: shifted off it, a small part of it, or far too big
                b = boxes[rng.integers(len(boxes))]
                big = max(b[2] - b[0], b[3] - b[1])
                side = big * {1: math.exp(rng.uniform(-0.3, 0.3)), 2: rng.uniform(0.2, 0.45),
                              3: rng.uniform(2.4, 4.0)}[kind]  # fmt: skip
                side = min(max(side, 4.0), hi)
                spread = {1: 1.2 * side, 2: 0.5 * big, 3: 0.5 * side}[kind]
                x1 = (b[0] + b[2] - side) / 2 + rng.uniform(-spread, spread)
                y1 = (b[1] + b[3] - side) / 2 + rng.uniform(-spread, spread)
                x1, y1 = min(max(x1, 0), w - side), min(max(y1, 0), h - side)
            sq = np.array([x1, y1, x1 + side, y1 + side])
            if side >= 4 and (len(boxes) == 0 or _iou_1n(sq, boxes).max() < NEG_IOU):
                out.append((x1, y1, side, num_classes))
                break
    return np.asarray(out, np.float64).reshape(-1, 4)


def sample_crops(
    img: np.ndarray,
    boxes: np.ndarray,
    classes: np.ndarray,
    num_classes: int,
    window: int,
    rng: np.random.Generator,
    neg_ratio: float = 3.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Positive and background crops of one image -> (uint8 [K, W, W, 3] BGR, int64 [K] labels)."""
    sq = sample_squares(boxes, classes, num_classes, img.shape[:2], window, rng, neg_ratio)
    crops = [crop_square(img, x1, y1, side, window) for x1, y1, side, _ in sq]
    return np.stack(crops), sq[:, 3].astype(np.int64)


def augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Light augmentation of a crop batch Tensor[B, 3, W, W] float 0..1: flip, contrast, light."""
    b = x.shape[0]
    flip = torch.rand(b, generator=gen) < 0.5
    x = torch.where(flip[:, None, None, None], x.flip(-1), x)
    gain = 0.75 + 0.5 * torch.rand(b, 1, 1, 1, generator=gen)
    bias = 0.16 * (torch.rand(b, 1, 1, 1, generator=gen) - 0.5)
    mean = x.mean((1, 2, 3), keepdim=True)
    return ((x - mean) * gain + mean + bias).clamp_(0, 1)


class _Images:
    """Training images by index, decoded once and kept while they fit in CACHE_BYTES."""

    def __init__(self, records) -> None:
        self.records = records
        self.cache: dict[int, np.ndarray] = {}
        self.bytes = 0

    def __getitem__(self, i: int) -> np.ndarray:
        from detect.data import read_image

        img = self.cache.get(i)
        if img is None:
            img = read_image(self.records.images[i].path)
            if self.bytes + img.nbytes <= CACHE_BYTES:
                self.cache[i] = img
                self.bytes += img.nbytes
        return img


def epoch_crops(
    images: _Images, num_classes: int, window: int, seed: int, epoch: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """All crops of one epoch -> (uint8 Tensor[K, 3, W, W] RGB, int64 Tensor[K] labels)."""
    rng = np.random.default_rng([seed, epoch])
    xs, ys = [], []
    for i, rec in enumerate(images.records.images):
        keep = (
            ~rec.difficult
            & (rec.boxes[:, 2] > rec.boxes[:, 0])
            & (rec.boxes[:, 3] > rec.boxes[:, 1])
        )
        x, y = sample_crops(images[i], rec.boxes[keep], rec.classes[keep], num_classes, window, rng)
        xs.append(x)
        ys.append(y)
    x = np.concatenate(xs)[..., ::-1].transpose(0, 3, 1, 2)  # BGR HWC -> RGB CHW
    return torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(np.concatenate(ys))


def _window_size(imgsz: int) -> int:
    return imgsz if imgsz <= MAX_WINDOW else DEFAULT_WINDOW


def train_window(cfg, callback=None):
    """Train a WindowClassifier as `cfg` (a detect.train.TrainConfig) says -> TrainResult.

    Progress goes to `callback(event, info)` with the detector's events ("start", "epoch",
    "batch", "val_start", "val_batch", "epoch_end", "end"). Raises DetectError on bad input.
    """
    from detect.device import select_device
    from detect.train import (
        TrainResult,
        load_training_data,
        lr_factor,
        read_results,
        write_data_report,
        write_results,
    )
    from detect.weights import init_from, load_weights, save_weights

    emit = callback or (lambda event, info: None)
    if cfg.batch < 1 or (cfg.epochs is not None and cfg.epochs < 1) or cfg.val_every < 1:
        raise DetectError("--batch, --epochs and --val-every must be >= 1")
    device = select_device(cfg.device)
    torch.manual_seed(cfg.seed)
    train_rec, val_rec = load_training_data(cfg, lambda event, **info: emit(event, info))
    names = list(train_rec.names)

    rows: list[dict] = []
    if cfg.resume:
        run_dir = Path(cfg.resume)
        model, meta = load_weights(run_dir / "weights" / "last.safetensors")
        rows = read_results(run_dir / "results.csv")
        elapsed_before = float(rows[-1]["elapsed"]) if rows else 0.0
    else:
        wcfg = WindowConfig(num_classes=len(names), names=names, imgsz=_window_size(cfg.imgsz))
        model = build_window_model(wcfg)
        if cfg.weights:
            init_from(model, cfg.weights, f"--model window with {len(names)} classes")
        out = Path(cfg.out)
        run_dir = new_run_dir(out.parent / cfg.name if cfg.name else out)
        write_data_report(run_dir, train_rec, val_rec)
        elapsed_before = 0.0
    model = model.to(device)
    wcfg = model.cfg
    lr0 = cfg.lr or (0.01 if cfg.optimizer == "sgd" else 0.001)
    opt = _optimizer(model, cfg, lr0)
    total_epochs = cfg.epochs or (10**9 if cfg.time else DEFAULT_EPOCHS)
    budget = cfg.time * 60 if cfg.time else None
    images = _Images(train_rec)
    loss_fn = nn.CrossEntropyLoss()
    gen = torch.Generator().manual_seed(cfg.seed)
    if not cfg.resume:
        atomic_write_json(
            run_dir / "args.json",
            {
                "config": asdict(cfg),
                "model": wcfg.to_dict(),
                "lr": lr0,
                "device": str(device),
                "train_images": len(train_rec.images),
                "val_images": len(val_rec.images),
            },
        )

    val_rows = [r for r in rows if r.get("val_map") not in ("", None)]
    fit = [0.1 * r["val_map50"] + 0.9 * r["val_map"] for r in val_rows]
    best_fitness = max(fit, default=-1.0)
    best_row = val_rows[int(np.argmax(fit))] if fit else None
    best_epoch = best_row["epoch"] if best_row else -1
    best_map = (best_row["val_map50"], best_row["val_map"]) if best_row else (-1.0, -1.0)
    bad_vals = 0
    t_start = time.perf_counter()
    last_val_seconds = None

    def elapsed() -> float:
        return elapsed_before + time.perf_counter() - t_start

    def summary(epoch: int) -> dict[str, Any]:
        return {
            "data": str(cfg.data),
            "model": "window",
            "epochs": epoch,
            "seconds": round(elapsed(), 1),
            "window": wcfg.imgsz,
            "batch": cfg.batch,
            "lr": lr0,
            "seed": cfg.seed,
            "val_map50": best_map[0],
            "val_map": best_map[1],
            "val_method": "conv-sliding",
            "best_epoch": best_epoch,
            "train_images": len(train_rec.images),
            "val_images": len(val_rec.images),
            "command": cfg.command,
        }

    emit("start", {"run_dir": run_dir, "epochs": cfg.epochs, "time": cfg.time, "batches": None,
                   "device": str(device), "world": 1, "train_images": len(train_rec.images),
                   "val_images": len(val_rec.images),
                   "resumed_epoch": len(rows) if cfg.resume else None})  # fmt: skip
    stopped = "epochs"
    epoch = len(rows)
    while epoch < total_epochs:
        x_all, y_all = epoch_crops(images, len(names), wcfg.imgsz, cfg.seed, epoch)
        order = torch.randperm(len(y_all), generator=gen)
        nb = math.ceil(len(order) / cfg.batch)
        emit("epoch", {"epoch": epoch, "batches": nb, "start": 0, "mosaic": False})
        model.train()
        t_epoch = time.perf_counter()
        loss_sum, correct, seen = 0.0, 0, 0
        for i in range(nb):
            progress = elapsed() / budget if budget else (epoch + i / nb) / total_epochs
            lr = lr0 * lr_factor(progress, cfg.lrf)
            for g in opt.param_groups:
                g["lr"] = lr
            idx = order[i * cfg.batch : (i + 1) * cfg.batch]
            x = augment(x_all[idx].float().div_(255), gen).to(device)
            y = y_all[idx].to(device)
            logits = model(x)
            loss = loss_fn(logits, y)
            if not torch.isfinite(loss):
                raise DetectError(
                    f"loss became {loss.item()} at epoch {epoch + 1}: try a lower --lr"
                )
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            loss_sum += loss.item() * len(y)
            correct += int((logits.argmax(1) == y).sum())
            seen += len(y)
            rate = seen / max(time.perf_counter() - t_epoch, 1e-9)  # crops, not images
            emit("batch", {"epoch": epoch, "batch": i + 1, "batches": nb, "box": 0.0, "obj": 0.0,
                           "cls": loss_sum / seen, "lr": lr, "acc": correct / seen,
                           "images_per_s": rate})  # fmt: skip
            reserve = 1.2 * (last_val_seconds or 0.0)
            if budget is not None and elapsed() + reserve >= budget:
                stopped = "time"
                break
        seconds = time.perf_counter() - t_epoch
        last = stopped == "time" or epoch + 1 >= total_epochs
        row = {
            "epoch": epoch + 1, "box_loss": 0.0, "obj_loss": 0.0,
            "cls_loss": round(loss_sum / max(seen, 1), 5), "val_map50": "", "val_map": "",
            "lr": lr, "images": seen, "seconds": round(seconds, 2),
        }  # fmt: skip
        best = False
        if last or (epoch + 1) % cfg.val_every == 0:
            t0 = time.perf_counter()
            m50, m = validate(model, val_rec, cfg.val_conf, emit)
            last_val_seconds = time.perf_counter() - t0
            row["val_map50"], row["val_map"] = round(m50, 5), round(m, 5)
            fitness = 0.1 * m50 + 0.9 * m
            if fitness > best_fitness:
                best_fitness, best_epoch, best_map, bad_vals, best = (
                    fitness,
                    epoch + 1,
                    (m50, m),
                    0,
                    True,
                )
            else:
                bad_vals += 1
        elif best_epoch < 0:
            best = True  # keep a best file until the first validation
        row["elapsed"] = round(elapsed(), 1)
        rows.append(row)
        meta = {"training": summary(epoch + 1)}
        save_weights(run_dir / "weights" / "last.safetensors", model, meta)
        if best:
            save_weights(run_dir / "weights" / "best.safetensors", model, meta)
        write_results(run_dir, rows)
        emit(
            "epoch_end",
            {**row, "best": best, "best_epoch": best_epoch, "crop_acc": correct / max(seen, 1)},
        )
        epoch += 1
        if stopped == "time":
            break
        if cfg.patience > 0 and bad_vals >= cfg.patience:
            stopped = "patience"
            break
    emit("end", {"run_dir": run_dir, "stopped": stopped, "best_epoch": best_epoch,
                 "map50": best_map[0], "map": best_map[1], "seconds": elapsed()})  # fmt: skip
    return TrainResult(
        run_dir=run_dir,
        best=run_dir / "weights" / "best.safetensors",
        last=run_dir / "weights" / "last.safetensors",
        epochs=epoch,
        best_epoch=best_epoch,
        map50=best_map[0],
        map=best_map[1],
        seconds=elapsed(),
        stopped=stopped,
        rows=rows,
    )


def validate(model, val_rec, conf: float, emit) -> tuple[float, float]:
    """conv-sliding detection on the val images, scored -> (mAP50, mAP50-95), each >= 0."""
    from detect.metrics.evaluate import evaluate
    from detect.sliding import predict_records_windows

    n = len(val_rec.images)
    emit("val_start", {"images": n})
    dets, _ = predict_records_windows(
        val_rec,
        model,
        "conv-sliding",
        conf=conf,
        callback=lambda done, total: emit("val_batch", {"done": done, "total": total}),
    )
    res = evaluate(val_rec, dets)
    return max(res.map50, 0.0), max(res.map, 0.0)


def _optimizer(model: nn.Module, cfg, lr: float) -> torch.optim.Optimizer:
    """AdamW (or SGD) with weight decay on conv / linear weights only."""
    decay = [p for n, p in model.named_parameters() if p.ndim > 1]
    other = [p for n, p in model.named_parameters() if p.ndim <= 1]
    groups = [
        {"params": decay, "weight_decay": cfg.weight_decay},
        {"params": other, "weight_decay": 0.0},
    ]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=cfg.momentum, nesterov=True)
    if cfg.optimizer != "adamw":
        raise DetectError(f"unknown optimizer {cfg.optimizer!r} (use adamw or sgd)")
    return torch.optim.AdamW(groups, lr=lr, betas=(cfg.momentum, 0.999))
