"""Letterboxing: resize keeping the aspect ratio, pad to a square, and map boxes both ways.

Boxes are `(x1, y1, x2, y2)` pixels. A point `p` of the original image lands at
`p * scale + pad` in the letterboxed one.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from detect.errors import DetectError

PAD_VALUE = 114  # the grey ultralytics and darknet pad with


def letterbox_shape(
    hw: tuple[int, int], size: int, auto: bool = False, stride: int = 32
) -> tuple[int, int]:
    """The network input `(H, W)` the letterbox of an image of `hw = (H, W)` has.

    Square: `(size, size)`. `auto`: the resized image (long side `size`) padded up to the next
    multiple of `stride` on each side, as ultralytics' `LetterBox(auto=True)`.
    """
    if not auto:
        return size, size
    h, w = hw
    scale = min(size / h, size / w)
    nw, nh = min(size, max(1, round(w * scale))), min(size, max(1, round(h * scale)))
    return -(-nh // stride) * stride, -(-nw // stride) * stride


def letterbox(
    img: np.ndarray,
    size: int,
    auto: bool = False,
    stride: int = 32,
    shape: tuple[int, int] | None = None,
) -> tuple[np.ndarray, float, tuple[int, int]]:
    """Resize `img` (`ndarray[H, W, C]` uint8) to fit `size` x `size`, centred on grey.

    Args:
        size: the long side of the resized image (a multiple of `stride` when `auto`).
        auto: pad only to the next multiple of `stride` (rectangular letterbox), not to a square.
        shape: pad to this `(H, W)` instead (it must hold the resized image): a batch of images
            of different aspects shares one input shape.
    Returns:
        `(out ndarray[H', W', C], scale, (padx, pady))`; the pads are whole pixels (the left /
        top borders), so the mapping is exactly `p * scale + pad` up to the resize rounding.
    Raises:
        DetectError: `shape` smaller than the resized image.
    """
    h, w = img.shape[:2]
    scale = min(size / h, size / w)
    nw, nh = min(size, max(1, round(w * scale))), min(size, max(1, round(h * scale)))
    out_h, out_w = shape if shape is not None else letterbox_shape((h, w), size, auto, stride)
    if out_h < nh or out_w < nw:
        raise DetectError(f"letterbox shape {(out_h, out_w)} cannot hold a {nh} x {nw} image")
    if (nw, nh) != (w, h):
        # INTER_AREA when shrinking a lot: bilinear would alias (skip pixels) there.
        interp = cv2.INTER_AREA if scale < 0.5 else cv2.INTER_LINEAR
        img = cv2.resize(img, (nw, nh), interpolation=interp)
    padx, pady = (out_w - nw) // 2, (out_h - nh) // 2
    out = np.full((out_h, out_w) + img.shape[2:], PAD_VALUE, dtype=img.dtype)
    out[pady : pady + nh, padx : padx + nw] = img
    return out, scale, (padx, pady)


def letterbox_boxes(boxes: Any, scale: float, pad: tuple[float, float]) -> Any:
    """Map `[N, 4]` xyxy boxes (ndarray or Tensor) of the original image into the letterbox."""
    offset = _offset(boxes, pad)
    return boxes * scale + offset


def unletterbox_boxes(
    boxes: Any, scale: float, pad: tuple[float, float], orig_hw: tuple[int, int]
) -> Any:
    """Map `[N, 4]` xyxy boxes (ndarray or Tensor) of the letterbox back to the original image.

    The inverse of `letterbox_boxes`, clipped to `[0, W] x [0, H]` of `orig_hw = (H, W)`.
    Returns a new array / tensor of the input's type and dtype.
    """
    h, w = orig_hw
    out = (boxes - _offset(boxes, pad)) / scale
    if _is_tensor(out):
        out[..., 0::2] = out[..., 0::2].clamp(0, w)
        out[..., 1::2] = out[..., 1::2].clamp(0, h)
        return out.to(boxes.dtype) if boxes.is_floating_point() else out
    out = np.asarray(out)
    out[..., 0::2] = np.clip(out[..., 0::2], 0, w)
    out[..., 1::2] = np.clip(out[..., 1::2], 0, h)
    return out.astype(boxes.dtype, copy=False) if np.issubdtype(boxes.dtype, np.floating) else out


def flip_boxes_lr(boxes: np.ndarray, width: int) -> np.ndarray:
    """Boxes `[N, 4+]` (xyxy pixels first, any further columns kept) mirrored left-right in an
    image `width` pixels wide: training's flip, and test-time augmentation's mapping back."""
    out = boxes.copy()
    out[:, 0], out[:, 2] = width - boxes[:, 2], width - boxes[:, 0]
    return out


def flip_boxes_ud(boxes: np.ndarray, height: int) -> np.ndarray:
    """Boxes `[N, 4+]` (xyxy pixels first) mirrored top-bottom in an image `height` px high."""
    out = boxes.copy()
    out[:, 1], out[:, 3] = height - boxes[:, 3], height - boxes[:, 1]
    return out


def _is_tensor(x: Any) -> bool:
    return type(x).__module__.startswith("torch")


def _offset(boxes: Any, pad: tuple[float, float]) -> Any:
    px, py = pad
    if _is_tensor(boxes):  # a tensor makes its own (this module does not import torch)
        ref = boxes if boxes.is_floating_point() else boxes.float()
        return ref.new_tensor([px, py, px, py])
    dtype = boxes.dtype if np.issubdtype(boxes.dtype, np.floating) else np.float64
    return np.array([px, py, px, py], dtype=dtype)
