"""The backends behind `Predictor`: how a batch of images becomes detections.

Each backend takes BGR uint8 images of any sizes and returns one float32 ndarray[K, 6] per
image, rows (x1, y1, x2, y2, score, class) in original pixels by decreasing score, adding the
seconds it spent to `times["pre"]`, `times["inference"]` and `times["post"]`.

- `YoloBackend`: letterbox to the model's side -> one forward pass -> decode + NMS on the
  model's device (`detect.boxes.postprocess`) -> boxes mapped back (`unletterbox_boxes`).
- `SlidingBackend`: a window classifier slid over each image (`detect.inference.sliding`), by
  cropping or convolutionally; its time counts as inference.

The torch-free ones (an exported model's `RuntimeBackend`, `TiledBackend` around either, the
batch letterbox) are in `detect.inference.torchfree`.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from detect.boxes import postprocess
from detect.data.transforms import unletterbox_boxes
from detect.inference.sliding import WindowStats, detect_windows, parse_scales
from detect.inference.torchfree import Letterboxed, Times, letterbox_batch
from detect.models import to_conv
from detect.settings import Method, PredictConfig


def model_stride(net: object) -> int:
    """The input sides must be multiples of this: the model's largest stride (32 if unknown)."""
    strides = getattr(net, "strides", None) or [getattr(net, "stride", 32)]
    return max(32, *(int(s) for s in strides))


def to_input(batch_rgb: np.ndarray, device: torch.device) -> torch.Tensor:
    """uint8 [B, H, W, 3] RGB -> float Tensor[B, 3, H, W] in 0..1 on `device`.

    The uint8 array crosses to the device (4x fewer bytes than float). The result keeps the
    NHWC layout in memory (channels_last): no transposing copy, and oneDNN convolutions run
    ~25% faster on it than on NCHW (bench/README.md, Predict).
    """
    x = torch.from_numpy(batch_rgb).to(device, non_blocking=True)  # [B,H,W,3]
    return x.permute(0, 3, 1, 2).float().div_(255.0)  # [B,3,H,W] channels_last


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
        self.stride = model_stride(net)

    def __call__(self, images: Sequence[np.ndarray], times: Times) -> list[np.ndarray]:
        c = self.cfg
        t0 = time.perf_counter()
        batch, metas = letterbox_batch(images, self.imgsz, c.rect, self.stride)
        x = to_input(batch, self.device)  # [B,3,H,W]
        if c.half:
            x = x.half()
        _sync(self.device)
        t1 = time.perf_counter()
        decoded = self.net.predict(x).float()  # [B,N,5+C]; NMS in float32 whatever the model
        _sync(self.device)
        t2 = time.perf_counter()
        dets = postprocess(
            decoded, c.conf, c.iou, c.max_det, c.classes, c.multi_label, c.agnostic_nms
        )
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
