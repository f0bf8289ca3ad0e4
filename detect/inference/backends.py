"""The backends behind `Predictor`: how a batch of images becomes detections.

Each backend takes BGR uint8 images of any sizes and returns one float32 ndarray[K, 6] per
image, rows (x1, y1, x2, y2, score, class) in original pixels by decreasing score, adding the
seconds it spent to `times["pre"]`, `times["inference"]` and `times["post"]`.

- `YoloBackend`: letterbox to the model's side -> one forward pass -> decode + NMS on the
  model's device (`detect.boxes.postprocess`) -> boxes mapped back (`unletterbox_boxes`).
- `SlidingBackend`: a window classifier slid over each image (`detect.inference.sliding`), by
  cropping or convolutionally; its time counts as inference.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import cv2
import numpy as np
import torch
from torch import nn

from detect.boxes import postprocess
from detect.data.transforms import letterbox, unletterbox_boxes
from detect.inference.sliding import WindowStats, detect_windows, parse_scales
from detect.models import to_conv
from detect.settings import Method, PredictConfig

Times = dict[str, float]  # seconds per stage: "pre", "inference", "post"


class Backend(Protocol):
    def __call__(self, images: Sequence[np.ndarray], times: Times) -> list[np.ndarray]: ...


@dataclass
class Letterboxed:
    """Where one image went inside the square input: what mapping back needs."""

    scale: float
    pad: tuple[float, float]  # (padx, pady) pixels added left / top
    orig_hw: tuple[int, int]


def letterbox_batch(images: Sequence[np.ndarray], imgsz: int) -> tuple[np.ndarray, list]:
    """Letterbox BGR images into one RGB uint8 array [B, S, S, 3] and their geometry."""
    out = np.empty((len(images), imgsz, imgsz, 3), np.uint8)  # [B,S,S,3]
    metas = []
    for i, img in enumerate(images):
        lb, scale, pad = letterbox(img, imgsz)
        cv2.cvtColor(lb, cv2.COLOR_BGR2RGB, dst=out[i])  # the models are trained on RGB
        metas.append(Letterboxed(float(scale), (float(pad[0]), float(pad[1])), img.shape[:2]))
    return out, metas


def to_input(batch_rgb: np.ndarray, device: torch.device) -> torch.Tensor:
    """uint8 [B, S, S, 3] RGB -> float Tensor[B, 3, S, S] in 0..1 on `device`.

    The uint8 array crosses to the device (4x fewer bytes than float). The result keeps the
    NHWC layout in memory (channels_last): no transposing copy, and oneDNN convolutions run
    ~25% faster on it than on NCHW (bench/README.md, Predict).
    """
    x = torch.from_numpy(batch_rgb).to(device, non_blocking=True)  # [B,S,S,3]
    return x.permute(0, 3, 1, 2).float().div_(255.0)  # [B,3,S,S] channels_last


def map_back(dets: torch.Tensor, meta: Letterboxed) -> np.ndarray:
    """Tensor[K, 6] rows (x1, y1, x2, y2, score, class) in input pixels -> float32 ndarray[K, 6]
    with boxes in original pixels (clipped to the image)."""
    d = dets.detach().float().cpu().numpy()  # [K,6]
    if len(d):
        boxes = unletterbox_boxes(d[:, :4], meta.scale, meta.pad, meta.orig_hw)
        d[:, :4] = np.asarray(boxes, dtype=np.float32)
    return d.astype(np.float32, copy=False)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class YoloBackend:
    """A detector with `predict(x) -> Tensor[B, N, 5 + C]` (detect.models.Detector)."""

    def __init__(self, net: nn.Module, cfg: PredictConfig, imgsz: int, device: torch.device):
        self.net, self.cfg, self.imgsz, self.device = net, cfg, imgsz, device

    def __call__(self, images: Sequence[np.ndarray], times: Times) -> list[np.ndarray]:
        c = self.cfg
        t0 = time.perf_counter()
        batch, metas = letterbox_batch(images, self.imgsz)
        x = to_input(batch, self.device)  # [B,3,S,S]
        _sync(self.device)
        t1 = time.perf_counter()
        decoded = self.net.predict(x)  # [B,N,5+C]
        _sync(self.device)
        t2 = time.perf_counter()
        dets = postprocess(decoded, c.conf, c.iou, c.max_det, c.classes, c.multi_label)
        out = [map_back(d, m) for d, m in zip(dets, metas, strict=True)]
        t3 = time.perf_counter()
        times["pre"] += t1 - t0
        times["inference"] += t2 - t1
        times["post"] += t3 - t2
        return out


class SlidingBackend:
    """A window classifier (detect.models.WindowClassifier), one image at a time (the windows
    of an image are batched); `stats` counts the windows classified."""

    def __init__(self, net: nn.Module, cfg: PredictConfig, device: torch.device) -> None:
        self.net, self.cfg, self.device = net, cfg, device
        self.scales = parse_scales(cfg.scales)
        # conv-sliding: the classifier rewritten as a conv net, once (not per image)
        self.conv = to_conv(net).eval() if cfg.method == Method.conv_sliding else None
        self.stats = WindowStats()

    def __call__(self, images: Sequence[np.ndarray], times: Times) -> list[np.ndarray]:
        c = self.cfg
        out = []
        for img in images:
            t0 = time.perf_counter()
            d = detect_windows(
                self.net, img, method=c.method, scales=self.scales, stride=c.stride,
                conf=c.conf, iou=c.iou, max_det=c.max_det, classes=c.classes,
                conv_model=self.conv, stats=self.stats,
            )  # fmt: skip
            _sync(self.device)
            t1 = time.perf_counter()
            out.append(d.detach().float().cpu().numpy().reshape(-1, 6))
            times["inference"] += t1 - t0
            times["post"] += time.perf_counter() - t1
            self.stats.images += 1
            self.stats.seconds += t1 - t0
        return out
