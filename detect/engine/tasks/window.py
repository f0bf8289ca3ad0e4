"""The window classifier task (`--model window`): crops in, cross-entropy out, validated by
conv-sliding detection on the val split (the real task), scored with detect.metrics.

Each epoch draws fresh square crops from the training images, resized to the window side W:
- positives: one per object, a square of side max(w, h) x U(0.9, 1.25) around the box centre
  (jittered by up to 10% of the side), labelled with the object's class: what a well placed
  window of the right scale sees;
- negatives (background, the last class): `neg_ratio` per positive, squares whose IoU with
  every object is < `NEG_IOU`, in four kinds by turn: anywhere in the image (log-uniform side),
  shifted off an object, a small part inside an object, a window far bigger than an object. The
  last three teach what sliding windows most confuse: where, and at which scale, a window stops
  being "the object".
Light augmentation (horizontal flip, brightness / contrast), drawn per step from (seed, step),
so a resumed run sees the same batches. The run folder has the detector's shape (results.csv:
the cross-entropy is `cls_loss`, `box_loss` and `obj_loss` are 0: there is no box regression).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import cv2
import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, TensorDataset

from detect.data import DatasetRecords, read_image
from detect.engine.optim import EpochSampler
from detect.engine.trainer import steps, val_figures
from detect.inference.dataset import predict_records
from detect.iou import pairwise_iou
from detect.metrics import evaluate
from detect.models import WindowConfig, build_window_model, init_from
from detect.settings import Method, WindowTrainConfig

NEG_IOU = 0.2  # a background crop overlaps every object less than this
CACHE_BYTES = 2 << 30  # keep decoded training images in memory up to this many bytes


def crop_square(img: np.ndarray, x1: float, y1: float, side: float, out: int) -> np.ndarray:
    """The square (x1, y1, side) of img, edge-padded where it leaves the image, resized to
    out x out with the resize detect.inference.sliding uses (AREA when shrinking, else LINEAR)."""
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
            if side >= 4 and (len(boxes) == 0 or pairwise_iou(sq[None], boxes).max() < NEG_IOU):
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


class TrainImages:
    """Training images by index, decoded once and kept while they fit in CACHE_BYTES."""

    def __init__(self, records) -> None:
        self.records = records
        self.cache: dict[int, np.ndarray] = {}
        self.bytes = 0

    def __getitem__(self, i: int) -> np.ndarray:
        img = self.cache.get(i)
        if img is None:
            img = read_image(self.records.images[i].path)
            if self.bytes + img.nbytes <= CACHE_BYTES:
                self.cache[i] = img
                self.bytes += img.nbytes
        return img


def epoch_crops(
    images: TrainImages,
    num_classes: int,
    window: int,
    seed: int,
    epoch: int,
    neg_ratio: float = 3.0,
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
        x, y = sample_crops(
            images[i], rec.boxes[keep], rec.classes[keep], num_classes, window, rng, neg_ratio
        )
        xs.append(x)
        ys.append(y)
    x = np.concatenate(xs)[..., ::-1].transpose(0, 3, 1, 2)  # BGR HWC -> RGB CHW
    return torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(np.concatenate(ys))


class WindowTask:
    """A window classifier to train on `train_rec`, validated on `val_rec` (conv-sliding).

    Args as detect.engine.tasks.DetectorTask's; `model_config` is a resumed run's
    WindowConfig dict.
    """

    clip_grad = None  # the small classifier trains stably without
    mosaic_on = False

    def __init__(
        self,
        cfg: WindowTrainConfig,
        train_rec: DatasetRecords,
        val_rec: DatasetRecords,
        device: torch.device,
        model_config: dict | None = None,
        weights: str | None = None,
        seed: int = 0,
        rank: int = 0,
        world: int = 1,
        loss: Callable[[Tensor, Tensor], Tensor] | None = None,
    ) -> None:
        self.cfg, self.train_rec, self.val_rec, self.device = cfg, train_rec, val_rec, device
        self.batch, self.default_epochs = cfg.batch, cfg.default_epochs
        self.val_images = len(val_rec.images)
        names = list(train_rec.names)
        if model_config is not None:
            self.model_config = WindowConfig.from_dict(model_config)
        else:
            self.model_config = WindowConfig(num_classes=len(names), names=names, imgsz=cfg.window)
        model = build_window_model(self.model_config)
        if weights and model_config is None:
            init_from(model, weights, f"--model window with {len(names)} classes")
        self.model: nn.Module = model.to(device)
        self.loss = loss or nn.CrossEntropyLoss()
        self.images = TrainImages(train_rec)
        self.seed, self.rank, self.world = seed, rank, world
        self._crops: tuple[int, Tensor, Tensor] | None = None  # (epoch, x, y)
        self.sampler = EpochSampler(0, seed, rank, world)

    def crops(self, epoch: int) -> tuple[Tensor, Tensor]:
        """The epoch's crops (uint8 [K, 3, W, W] RGB, int64 [K] labels), drawn once."""
        if self._crops is None or self._crops[0] != epoch:
            x, y = epoch_crops(
                self.images, len(self.train_rec.names), self.model_config.imgsz, self.seed,
                epoch, self.cfg.neg_ratio,
            )  # fmt: skip
            self._crops = (epoch, x, y)
        return self._crops[1], self._crops[2]

    def steps_per_epoch(self, epoch: int) -> int:
        _, y = self.crops(epoch)
        self.sampler = EpochSampler(len(y), self.seed, self.rank, self.world)
        return steps(self.sampler.per_rank, self.batch)

    def loader(self, epoch: int) -> Iterable[Any]:
        # its own generator: a loader drawing from the global RNG would shift a resumed run's
        # dropout masks
        gen = torch.Generator().manual_seed(self.seed + epoch)
        return DataLoader(
            TensorDataset(*self.crops(epoch)), self.batch, sampler=self.sampler, generator=gen
        )

    def step(
        self, model: nn.Module, batch: Any, iteration: int, autocast: Callable
    ) -> tuple[Tensor, dict[str, Tensor], int]:
        x, y = batch
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + iteration)
        x = augment(x.float().div_(255), gen).to(self.device)
        y = y.to(self.device)
        with autocast():
            logits = model(x)
        loss = self.loss(logits.float(), y)
        acc = (logits.detach().argmax(1) == y).float().mean()
        return loss, {"cls": loss.detach(), "acc": acc}, len(y)

    def validate(
        self, model: nn.Module, progress: Callable[[int, int], None]
    ) -> tuple[float, float, float, float]:
        """(mAP50, mAP50-95, precision, recall) of conv-sliding on the val split."""
        dets = predict_records(
            self.val_rec, model, conf=self.cfg.val_conf, batch=1, callback=progress,
            method=Method.conv_sliding,
        )  # fmt: skip
        res = evaluate(self.val_rec, dets)
        self.last_eval = res  # the per-class figures, for the run's closing table
        return val_figures(res)

    def summary(self) -> dict[str, Any]:
        return {
            "model": "window", "window": self.model_config.imgsz, "batch": self.cfg.batch,
            "val_method": "conv-sliding",
        }  # fmt: skip

    def args(self) -> dict[str, Any]:
        return {"model": self.model_config.to_dict()}

    def resume_extra(self) -> dict[str, Any]:
        return {"model_config": self.model_config.to_dict()}
