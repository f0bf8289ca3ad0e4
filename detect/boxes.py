"""Box operations: format conversion, areas, IoU, NMS and the YOLO post-processing.

One canonical format inside the project: `(x1, y1, x2, y2)` pixels, float32. IoU is continuous
(no +1 pixel). `nms` and `batched_nms` have the signatures and results of `torchvision.ops`
(they call its C++/CUDA kernel: measured as fast as anything written here, see bench/nms.py).

Only that kernel is loaded, not the `torchvision` package: `import torchvision` costs ~2.3 s
on a 2-core CPU, most of it `torch._dynamo` and `torchvision.models`, for one NMS op. The
compiled library registers `torch.ops.torchvision.nms` on load (what torchvision's own
`extension.py` does); `batched_nms` is torchvision's two strategies, re-stated here.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor

from detect.errors import DetectError
from detect.iou import pairwise_iou

_FORMATS = ("xyxy", "xywh", "cxcywh")


def _load_torchvision_ops() -> None:
    """Register torchvision's compiled ops (`torch.ops.torchvision.nms`) without importing the
    torchvision package; a no-op when it is already imported."""
    try:
        torch.ops.torchvision.nms  # noqa: B018 (registered already: torchvision was imported)
        return
    except (AttributeError, RuntimeError):
        pass
    spec = importlib.util.find_spec("torchvision")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("detect needs torchvision (its compiled NMS kernel)")
    folder = Path(next(iter(spec.submodule_search_locations)))
    for name in ("_C_stable", "_C"):  # torchvision >= 0.26 names it _C_stable
        for suffix in importlib.machinery.EXTENSION_SUFFIXES:
            lib = folder / f"{name}{suffix}"
            if lib.is_file():
                torch.ops.load_library(str(lib))
                return
    raise ImportError(f"torchvision's compiled ops (_C_stable.so) not found in {folder}")


_load_torchvision_ops()


def _check_boxes(boxes: Tensor, name: str = "boxes", batched: bool = False) -> None:
    ok = isinstance(boxes, Tensor) and (boxes.ndim >= 2 if batched else boxes.ndim == 2)
    if not ok or boxes.shape[-1] != 4:
        shape = tuple(boxes.shape) if isinstance(boxes, Tensor) else type(boxes).__name__
        want = "[..., N, 4]" if batched else "[N, 4]"
        raise DetectError(f"{name} must be a Tensor{want}, got {shape}")


def box_convert(boxes: Tensor, in_fmt: str, out_fmt: str) -> Tensor:
    """Convert boxes between formats.

    Formats: "xyxy" `(x1, y1, x2, y2)`, "xywh" `(x1, y1, w, h)`, "cxcywh" `(cx, cy, w, h)`.

    Args:
        boxes (Tensor[..., 4]): boxes in `in_fmt`.
    Returns:
        Tensor[..., 4]: the same boxes in `out_fmt` (a new tensor, same dtype and device).
    """
    if in_fmt not in _FORMATS or out_fmt not in _FORMATS:
        raise DetectError(f"box format must be one of {_FORMATS}, got {in_fmt!r} -> {out_fmt!r}")
    if boxes.shape[-1] != 4:
        raise DetectError(
            f"boxes must have 4 coordinates in the last dim, got {tuple(boxes.shape)}"
        )
    if in_fmt == out_fmt:
        return boxes.clone()
    a, b, c, d = boxes.unbind(-1)
    if in_fmt == "xywh":  # to xyxy first
        a, b, c, d = a, b, a + c, b + d
    elif in_fmt == "cxcywh":
        a, b, c, d = a - c / 2, b - d / 2, a + c / 2, b + d / 2
    if out_fmt == "xywh":
        a, b, c, d = a, b, c - a, d - b
    elif out_fmt == "cxcywh":
        a, b, c, d = (a + c) / 2, (b + d) / 2, c - a, d - b
    return torch.stack((a, b, c, d), dim=-1)


def box_area(boxes: Tensor) -> Tensor:
    """Area of `Tensor[N, 4]` boxes in `(x1, y1, x2, y2)` -> `Tensor[N]` (0 for inverted boxes)."""
    return (boxes[..., 2] - boxes[..., 0]).clamp(min=0) * (boxes[..., 3] - boxes[..., 1]).clamp(
        min=0
    )


def box_iou(boxes1: Tensor, boxes2: Tensor) -> Tensor:
    """Pairwise IoU of `Tensor[N, 4]` and `Tensor[M, 4]` boxes in `(x1, y1, x2, y2)`.

    Leading batch dimensions are allowed when both have them: `Tensor[..., N, 4]` and
    `Tensor[..., M, 4]` give `Tensor[..., N, M]` (each batch element against its own boxes).

    Returns:
        Tensor[N, M]: IoU in [0, 1]. Unlike torchvision (which gives NaN), a pair whose union is
        empty (two zero-area boxes) has IoU 0, so callers never see NaN.
    """
    _check_boxes(boxes1, "boxes1", batched=True)
    _check_boxes(boxes2, "boxes2", batched=True)
    if boxes1.shape[:-2] != boxes2.shape[:-2]:
        raise DetectError(
            f"box_iou: batch dims differ, {tuple(boxes1.shape)} vs {tuple(boxes2.shape)}"
        )
    return pairwise_iou(boxes1, boxes2)


def _check_nms_args(boxes: Tensor, scores: Tensor, classes: Tensor | None = None) -> None:
    _check_boxes(boxes)
    if scores.ndim != 1 or scores.shape[0] != boxes.shape[0]:
        raise DetectError(f"scores must be a Tensor[{boxes.shape[0]}], got {tuple(scores.shape)}")
    if classes is not None and (classes.ndim != 1 or classes.shape[0] != boxes.shape[0]):
        raise DetectError(f"classes must be a Tensor[{boxes.shape[0]}], got {tuple(classes.shape)}")


def nms(boxes: Tensor, scores: Tensor, iou_threshold: float) -> Tensor:
    """Greedy non-maximum suppression (torchvision.ops.nms).

    Args:
        boxes (Tensor[N, 4]): `(x1, y1, x2, y2)`.
        scores (Tensor[N]): higher is better.
        iou_threshold (float): boxes overlapping a kept box with IoU > this are dropped.
    Returns:
        Tensor[K] int64: indices of the kept boxes, by decreasing score.
    """
    _check_nms_args(boxes, scores)
    return torch.ops.torchvision.nms(boxes, scores, float(iou_threshold))


def batched_nms(boxes: Tensor, scores: Tensor, classes: Tensor, iou_threshold: float) -> Tensor:
    """Per-class greedy NMS: boxes of different classes never suppress each other.

    Args:
        boxes (Tensor[N, 4]): `(x1, y1, x2, y2)`.
        scores (Tensor[N]): higher is better.
        classes (Tensor[N]): integer category of each box.
        iou_threshold (float): same-class boxes overlapping a kept box with IoU > this are dropped.
    Returns:
        Tensor[K] int64: indices of the kept boxes, by decreasing score (torchvision's result).
    """
    _check_nms_args(boxes, scores, classes)
    if boxes.shape[0] == 0:
        return torch.empty((0,), dtype=torch.int64, device=boxes.device)
    thr = float(iou_threshold)
    # torchvision's choice: one NMS over class-shifted boxes, or an NMS per class for many boxes
    if boxes.numel() > (4000 if boxes.device.type == "cpu" else 100_000):
        keep_mask = torch.zeros_like(scores, dtype=torch.bool)
        for k in torch.unique(classes):
            idx = torch.where(classes == k)[0]
            keep_mask[idx[torch.ops.torchvision.nms(boxes[idx], scores[idx], thr)]] = True
        keep = torch.where(keep_mask)[0]
        return keep[scores[keep].sort(descending=True)[1]]
    offsets = classes.to(boxes) * (boxes.max() + torch.tensor(1).to(boxes))
    return torch.ops.torchvision.nms(boxes + offsets[:, None], scores, thr)


def postprocess(
    decoded: Tensor,
    conf: float = 0.25,
    iou: float = 0.45,
    max_det: int = 300,
    classes: Sequence[int] | None = None,
    multi_label: bool = False,
    agnostic: bool = False,
) -> list[Tensor]:
    """Turn decoded YOLO outputs into final detections per image.

    Score threshold, optional class filter, per-class (or class-agnostic) greedy NMS, `max_det`
    cap. All images go through one NMS call (the image index is part of the NMS group), so a batch
    costs about as much as one big image; tensors stay on `decoded`'s device.

    Args:
        decoded (Tensor[B, N, 5 + C]): rows `(x1, y1, x2, y2, obj, p_1..p_C)`, boxes in input
            pixels, `obj` and `p_c` probabilities (already sigmoid-ed).
        conf: a row (or with `multi_label` a (box, class) pair) is kept when obj * p_c >= conf.
        iou: NMS IoU threshold.
        max_det: at most this many detections per image (the highest scores).
        classes: keep only these class ids (None: all).
        multi_label: every class with score >= conf gives its own row (else the best class only).
        agnostic: NMS across classes (a box suppresses overlapping boxes of any class).
    Returns:
        list of B `Tensor[K, 6]`: rows `(x1, y1, x2, y2, score, class)` by decreasing score.
    """
    if not isinstance(decoded, Tensor) or decoded.ndim != 3 or decoded.shape[-1] < 6:
        shape = tuple(decoded.shape) if isinstance(decoded, Tensor) else type(decoded).__name__
        raise DetectError(f"decoded must be a Tensor[B, N, 5 + C] with C >= 1, got {shape}")
    if max_det < 0:
        raise DetectError(f"max_det must be >= 0, got {max_det}")
    bsz, _, width = decoded.shape
    device, dtype = decoded.device, decoded.dtype
    scores_all = decoded[..., 5:] * decoded[..., 4:5]  # [B,N,C]

    if multi_label:
        b, n, c = (scores_all >= conf).nonzero(as_tuple=True)  # [R] each
        score = scores_all[b, n, c]  # [R]
    else:
        best, best_c = scores_all.max(dim=-1)  # [B,N]
        b, n = (best >= conf).nonzero(as_tuple=True)  # [R]
        score, c = best[b, n], best_c[b, n]  # [R]
    if classes is not None:
        wanted = torch.as_tensor(list(classes), dtype=c.dtype, device=device)
        m = torch.isin(c, wanted)
        b, n, c, score = b[m], n[m], c[m], score[m]
    boxes = decoded[b, n, :4]  # [R,4]

    # One NMS for the whole batch: the group is (image, class), or the image when agnostic.
    group = b if agnostic else b * (width - 5) + c  # [R]
    keep = batched_nms(boxes, score, group, iou)  # [K] by decreasing score
    kb = b[keep]
    order = torch.sort(kb, stable=True).indices  # group by image, scores stay decreasing
    keep, kb = keep[order], kb[order]
    rows = torch.cat((boxes[keep], score[keep, None], c[keep, None].to(dtype)), dim=1)  # [K,6]
    counts = torch.bincount(kb, minlength=bsz).tolist()
    return [r[:max_det] for r in rows.split(counts)]
