"""Intersection over union: the one place it is computed, for numpy arrays and torch tensors.

Every IoU of the project goes through `inter_union` (the way torchvision.ops.boxes builds all
its IoU variants on one `_box_inter_union`): box IoU pairwise (`detect.boxes.box_iou`, the
assigners, VOC matching, window crop sampling), paired box by box (`paired_iou`, the CIoU loss)
and shape IoU (`shape_iou`: k-means anchors and YOLOv2's anchor matching). Only COCO
evaluation keeps its own IoU (`detect.metrics.coco.box_iou_xywh`), which must repeat
pycocotools' arithmetic on xywh numbers exactly.

IoU is continuous (no +1 pixel). Boxes are `(x1, y1, x2, y2)`; shapes are `(w, h)`, compared
as if they shared a corner (the same IoU as sharing a centre, YOLOv2's k-means distance).
The functions take numpy arrays or torch tensors and return the same kind; this module never
imports torch, so `detect anchors` and `detect evaluate` run without it.
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np

Array = Any  # numpy.ndarray or torch.Tensor: the functions below return the kind they get


def _relu(x: Array) -> Array:
    """max(x, 0): `np.maximum` for arrays (several times faster than `clip`), `clamp` for
    tensors (differentiable, as torchvision's box ops)."""
    return np.maximum(x, 0) if isinstance(x, np.ndarray | np.generic) else x.clamp(min=0)


def _xp(a: Array) -> Any:
    """The array module of `a`: numpy for ndarrays, torch for tensors (already imported by
    whoever made the tensor, so nothing is imported here)."""
    if isinstance(a, np.ndarray | np.generic):
        return np
    return sys.modules[type(a).__module__.partition(".")[0]]


def inter_union(a: Array, b: Array) -> tuple[Array, Array]:
    """Intersection and union areas of boxes (or shapes) `a` and `b`, broadcast against each other.

    Args:
        a, b: `[..., 4]` boxes `(x1, y1, x2, y2)`, or `[..., 2]` shapes `(w, h)` (the box
            `(0, 0, w, h)`); shapes that broadcast, e.g. `[N, 1, 4]` and `[1, M, 4]` for all
            pairs, or `[N, 4]` and `[N, 4]` box by box. Inverted boxes have area 0.
    Returns:
        (inter, union), each `[...]` (the broadcast shape without the last dim), same dtype.
    """
    xp = _xp(a)
    if a.shape[-1] == 2:  # shapes: both boxes start at the origin
        wh = xp.minimum(a, b)
        area_a, area_b = a[..., 0] * a[..., 1], b[..., 0] * b[..., 1]
    else:
        lt = xp.maximum(a[..., :2], b[..., :2])
        rb = xp.minimum(a[..., 2:], b[..., 2:])
        wh = _relu(rb - lt)
        area_a = _relu(a[..., 2] - a[..., 0]) * _relu(a[..., 3] - a[..., 1])
        area_b = _relu(b[..., 2] - b[..., 0]) * _relu(b[..., 3] - b[..., 1])
    inter = wh[..., 0] * wh[..., 1]
    return inter, area_a + area_b - inter


def safe_divide(inter: Array, union: Array) -> Array:
    """inter / union, 0 where the union is empty (two zero-area boxes): never NaN."""
    if isinstance(union, np.ndarray):
        return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
    xp = _xp(union)
    return xp.where(union > 0, inter / union.clamp(min=xp.finfo(union.dtype).tiny), 0.0)


def pairwise_iou(a: Array, b: Array) -> Array:
    """IoU of every box of `a` `[..., N, 4]` with every box of `b` `[..., M, 4]` -> `[..., N, M]`.

    Leading dims are batch dims (each element against its own boxes). `(w, h)` shapes
    (`[..., 2]`) work too. 0 for a pair with an empty union.
    """
    inter, union = inter_union(a[..., :, None, :], b[..., None, :, :])
    return safe_divide(inter, union)


def paired_iou(a: Array, b: Array) -> Array:
    """IoU of `a[i]` with `b[i]`: `[N, 4]` and `[N, 4]` -> `[N]` (0 where the union is empty)."""
    inter, union = inter_union(a, b)
    return safe_divide(inter, union)


def shape_iou(wh1: Array, wh2: Array) -> Array:
    """IoU of shapes aligned on a common centre: `[N, 2]` x `[M, 2]` (w, h) -> `[N, M]`.

    The distance of YOLOv2's anchor k-means is 1 - this (Redmon and Farhadi, 2017, Sec. 2).
    """
    return pairwise_iou(wh1, wh2)
