"""The backends behind `Predictor`: how a batch of images becomes detections.

Each backend takes BGR uint8 images of any sizes and returns one float32 ndarray[K, 6] per
image, rows (x1, y1, x2, y2, score, class) in original pixels by decreasing score, adding the
seconds it spent to `times["pre"]`, `times["inference"]` and `times["post"]`.

- `YoloBackend`: letterbox to the model's side -> one forward pass -> decode + NMS on the
  model's device (`detect.boxes.postprocess`) -> boxes mapped back (`unletterbox_boxes`).
- `RuntimeBackend`: the same steps for a model exported by `detect export`, run by ONNX Runtime
  or OpenVINO, with NMS in numpy (`detect.runtime`): the same detections as `YoloBackend` on
  the weights it was exported from (tests/test_runtime.py).
- `TiledBackend`: wraps either: overlapping tiles plus the whole image through it, batched,
  boxes mapped back and merged across tiles (`detect.tiling`, SAHI's NMS or greedy NMM).

The letterbox is rectangular by default (`PredictConfig.rect`): the smallest multiple of the
model's stride holding the resized image, as ultralytics predicts (a batch shares the largest
such shape); `rect=False` pads to the square.
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

from detect import runtime, tiling
from detect.boxes import postprocess
from detect.data.transforms import unletterbox_boxes
from detect.inference.sliding import WindowStats, detect_windows, parse_scales
from detect.models import to_conv
from detect.runtime import ExportedModel, letterbox, letterbox_shape
from detect.settings import Method, PredictConfig

Times = dict[str, float]  # seconds per stage: "pre", "inference", "post"


class Backend(Protocol):
    def __call__(self, images: Sequence[np.ndarray], times: Times) -> list[np.ndarray]: ...


@dataclass
class Letterboxed:
    """Where one image went inside the network input: what mapping back needs."""

    scale: float
    pad: tuple[float, float]  # (padx, pady) pixels added left / top
    orig_hw: tuple[int, int]


def letterbox_batch(
    images: Sequence[np.ndarray], imgsz: int, rect: bool = False, stride: int = 32
) -> tuple[np.ndarray, list]:
    """Letterbox BGR images into one RGB uint8 array [B, H, W, 3] and their geometry.

    Square (`imgsz` x `imgsz`, equal to `detect.data.transforms.letterbox`), or with `rect` the
    smallest multiple of `stride` on each side that holds every resized image of the batch.
    """
    shapes = [letterbox_shape(im.shape[:2], imgsz, rect, stride) for im in images]
    hw = (max(h for h, _ in shapes), max(w for _, w in shapes))
    out = np.empty((len(images), *hw, 3), np.uint8)  # [B,H,W,3]
    metas = []
    for i, img in enumerate(images):
        lb, scale, pad = letterbox(img, imgsz, shape=hw)
        cv2.cvtColor(lb, cv2.COLOR_BGR2RGB, dst=out[i])  # the models are trained on RGB
        metas.append(Letterboxed(float(scale), (float(pad[0]), float(pad[1])), img.shape[:2]))
    return out, metas


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


def map_back_np(dets: np.ndarray, meta: Letterboxed) -> np.ndarray:
    """`map_back` for numpy rows (detect.runtime.postprocess's)."""
    d = np.array(dets, dtype=np.float32).reshape(-1, 6)
    if len(d):
        d[:, :4] = runtime.unletterbox_boxes(d[:, :4], meta.scale, meta.pad, meta.orig_hw)
    return d


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


class RuntimeBackend:
    """A model exported by `detect export` (detect.runtime.ExportedModel), on the CPU: letterbox,
    the runtime's forward pass, NMS in numpy. No torch in any step."""

    def __init__(self, model: ExportedModel, cfg: PredictConfig, imgsz: int) -> None:
        self.model, self.cfg, self.imgsz = model, cfg, imgsz
        # a fixed-size export (older versions) takes its square only
        self.rect = cfg.rect and model.dynamic

    def __call__(self, images: Sequence[np.ndarray], times: Times) -> list[np.ndarray]:
        c = self.cfg
        t0 = time.perf_counter()
        batch, metas = letterbox_batch(images, self.imgsz, self.rect, self.model.stride)
        x = np.ascontiguousarray(batch.transpose(0, 3, 1, 2))  # [B,3,H,W] uint8 RGB
        t1 = time.perf_counter()
        decoded = self.model(x)  # [B,N,5+C]
        t2 = time.perf_counter()
        dets = runtime.postprocess(decoded, c.conf, c.iou, c.max_det, c.classes, c.multi_label)
        out = [map_back_np(d, m) for d, m in zip(dets, metas, strict=True)]
        t3 = time.perf_counter()
        times["pre"] += t1 - t0
        times["inference"] += t2 - t1
        times["post"] += t3 - t2
        return out


class TiledBackend:
    """Tiled (sliced) inference over another backend, one image at a time (flat memory for
    any number of images or video frames).

    Per image: `tile` x `tile` windows overlapping by `overlap` (SAHI's), plus the whole image
    for the objects larger than a tile, in batches of `cfg.batch` through `inner`; each tile's
    boxes are mapped back to the image and all are merged (`detect.tiling.merge_detections`:
    class-wise NMS, or greedy NMM that re-joins an object cut by a tile border, matching at IOS
    >= `merge_threshold`). An image no larger than one tile is predicted once, whole.
    """

    def __init__(self, inner: Backend, cfg: PredictConfig) -> None:
        self.inner, self.cfg = inner, cfg

    def __call__(self, images: Sequence[np.ndarray], times: Times) -> list[np.ndarray]:
        c = self.cfg
        tile = int(c.tile or 0)
        out = []
        for img in images:
            h, w = img.shape[:2]
            if h <= tile and w <= tile:
                out.extend(self.inner([img], times))
                continue
            windows = tiling.tile_windows(w, h, tile, c.overlap)  # [K,4]
            crops = [tiling.crop(img, win) for win in windows] + [img]  # the whole image last
            dets: list[np.ndarray] = []
            for i in range(0, len(crops), c.batch):
                dets.extend(self.inner(crops[i : i + c.batch], times))
            t0 = time.perf_counter()
            merged = tiling.merge_detections(
                dets[:-1], windows, dets[-1], method=str(c.merge),
                threshold=c.merge_threshold, metric="ios", max_det=c.max_det,
            )  # fmt: skip
            out.append(merged)
            times["post"] += time.perf_counter() - t0
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
