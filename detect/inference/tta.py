"""Test-time augmentation (`detect predict --augment`): each image is predicted several times,
at other input sides and mirrored, and the boxes of every pass are merged. Torch-free: it wraps
any backend (PyTorch, ONNX Runtime, OpenVINO) that can be built at another input side.

The passes are ultralytics' (`augment=True`, after YOLOv5's TTA): the letterbox side x1, x0.83
mirrored left-right, x0.67 (sides rounded to the model's stride). A smaller side shows the model
each object smaller, so large objects that overflow its anchors are seen at a size it knows; the
mirror gives a second, slightly different look at every object. Boxes are mapped back to the
original image, the passes are pooled and cleaned by per-class NMS at `--iou` (ultralytics pools
the raw predictions before its one NMS; here each pass is already NMS-ed, which keeps the pooled
set small, and the final NMS then keeps the best-scored box of each object across passes).

The measured effect on the VOC val split is in bench/README.md (Predict, --augment).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import numpy as np

from detect import runtime
from detect.settings import PredictConfig

if TYPE_CHECKING:  # torchfree builds AugmentedBackend: no import cycle at run time
    from detect.inference.torchfree import Backend, Times

# (input side as a fraction of the model's, mirror left-right): ultralytics' augment passes
TTA_VARIANTS: tuple[tuple[float, bool], ...] = ((1.0, False), (0.83, True), (0.67, False))


def tta_sides(imgsz: int, stride: int, scales: Sequence[float]) -> list[int]:
    """Input sides of the passes: `imgsz * s` rounded to a multiple of `stride` (at least one
    stride), as ultralytics' `scale_img(..., gs=stride)`."""
    return [max(stride, int(round(imgsz * s / stride)) * stride) for s in scales]


def flip_boxes_lr(dets: np.ndarray, width: int) -> np.ndarray:
    """Detections `[K, 6]` (x1, y1, x2, y2, score, class) found in a left-right mirrored image
    of `width` pixels -> the same objects in the original image."""
    out = dets.copy()
    out[:, 0], out[:, 2] = width - dets[:, 2], width - dets[:, 0]
    return out


def merge_passes(passes: Sequence[np.ndarray], cfg: PredictConfig) -> np.ndarray:
    """The detections of several passes over one image -> one set: per-class NMS at `cfg.iou`
    (across classes with `cfg.agnostic_nms`), by decreasing score, at most `cfg.max_det`.

    Args:
        passes: float32 ndarray[K_i, 6] each, rows (x1, y1, x2, y2, score, class) in the
            original image's pixels.
    Returns:
        float32 ndarray[K, 6], same rows, by decreasing score.
    """
    dets = np.concatenate([np.asarray(p, np.float32).reshape(-1, 6) for p in passes])
    if not len(dets):
        return dets
    classes = np.zeros(len(dets), np.int64) if cfg.agnostic_nms else dets[:, 5].astype(np.int64)
    keep = runtime.batched_nms(dets[:, :4], dets[:, 4], classes, cfg.iou)[: cfg.max_det]
    return dets[keep]


class AugmentedBackend:
    """Test-time augmentation around backends built by `make(side)` (one per input side of
    `TTA_VARIANTS`); same interface as any backend: BGR uint8 images in, one float32
    ndarray[K, 6] per image out (original pixels, by decreasing score). Every pass runs as one
    batch of all `images`; the time of the merge counts as post-processing."""

    def __init__(
        self,
        make: Callable[[int], Backend],
        cfg: PredictConfig,
        imgsz: int,
        stride: int,
        variants: Sequence[tuple[float, bool]] = TTA_VARIANTS,
    ) -> None:
        self.cfg = cfg
        sides = tta_sides(imgsz, stride, [s for s, _ in variants])
        self.passes = [(make(side), flip) for side, (_, flip) in zip(sides, variants, strict=True)]

    def __call__(self, images: Sequence[np.ndarray], times: Times) -> list[np.ndarray]:
        per_image: list[list[np.ndarray]] = [[] for _ in images]
        for backend, flip in self.passes:
            batch = [np.ascontiguousarray(im[:, ::-1]) for im in images] if flip else images
            for k, d in enumerate(backend(batch, times)):
                per_image[k].append(flip_boxes_lr(d, images[k].shape[1]) if flip else d)
        t0 = time.perf_counter()
        out = [merge_passes(p, self.cfg) for p in per_image]
        times["post"] += time.perf_counter() - t0
        return out
