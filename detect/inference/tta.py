"""Test-time augmentation (`detect predict --augment`): each image is predicted several times,
at other input sides and mirrored, and the boxes of every pass are merged. Torch-free: the pass
sides, the mirror mapping and the merge; `detect.inference.torchfree.AugmentedBackend` runs
them around any backend (PyTorch, ONNX Runtime, OpenVINO) that can be built at another side.

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

from collections.abc import Sequence

import numpy as np

from detect import runtime
from detect.data.transforms import flip_boxes_lr  # also maps mirrored detections back

__all__ = ["TTA_VARIANTS", "flip_boxes_lr", "merge_passes", "tta_sides"]
from detect.settings import PredictConfig

# (input side as a fraction of the model's, mirror left-right): ultralytics' augment passes
TTA_VARIANTS: tuple[tuple[float, bool], ...] = ((1.0, False), (0.83, True), (0.67, False))


def tta_sides(imgsz: int, stride: int, scales: Sequence[float]) -> list[int]:
    """Input sides of the passes: `imgsz * s` rounded to a multiple of `stride` (at least one
    stride), as ultralytics' `scale_img(..., gs=stride)`."""
    return [max(stride, int(round(imgsz * s / stride)) * stride) for s in scales]


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
