"""Sliding-window detection with a crop classifier, by cropping or convolutionally.

The windows (contract, `detect predict --method sliding|conv-sliding`): for a window of S pixels
of the original image, the image is resized by W / S (W = the classifier's input side) and the
W x W windows are taken every `stride` pixels of the resized image, from the top-left corner,
as long as they fit. The default stride is the classifier's total stride, where conv-sliding's
output cells fall exactly on the windows.

- `sliding`: crop every window and classify the crops in batches.
- `conv-sliding`: run `to_conv(model)` once over the resized image; output cell (i, j) is the
  window at (i * s, j * s) (s = total stride). A stride that is not a multiple of s is served by
  running it on the image shifted by each needed offset (OverFeat's trick), so the windows, and
  the scores, are those of `sliding` for any stride.

A window's score is its best non-background softmax probability (background is the last logit);
windows above `conf` go through per-class NMS. Boxes come back in original image pixels.

Scales are window sides in pixels of the original image (`DEFAULT_SCALES`); a scale larger than
the image gives no windows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
import torch
from torch import Tensor

from detect.boxes import batched_nms
from detect.errors import DetectError
from detect.models.window import ConvWindowClassifier, WindowClassifier, to_conv

METHODS = ("sliding", "conv-sliding")
# Window sides in pixels of the original image: a ~1.5x ladder covering the objects of 320-640 px
# images (the synth shapes run from ~4% to ~50% of the image side).
DEFAULT_SCALES = (32, 48, 64, 96, 128, 160)


@dataclass
class WindowStats:
    """What a sliding-window run cost: windows classified, images, seconds."""

    windows: int = 0
    images: int = 0
    seconds: float = 0.0


def parse_scales(text: str | Sequence[int] | None) -> tuple[int, ...]:
    """`"32,48,64"` (or a sequence) -> (32, 48, 64); None -> DEFAULT_SCALES."""
    if text is None:
        return DEFAULT_SCALES
    items = text.split(",") if isinstance(text, str) else list(text)
    try:
        scales = tuple(int(str(s).strip()) for s in items if str(s).strip())
    except ValueError:
        raise DetectError(
            f"bad --scales {text!r}: expected window sizes in pixels, e.g. 32,64"
        ) from None
    if not scales or min(scales) < 1:
        raise DetectError(f"bad --scales {text!r}: expected positive window sizes in pixels")
    return scales


def num_windows(size: int, window: int, stride: int) -> int:
    """Windows of side `window` every `stride` px that fit in `size` px (0 if none fits)."""
    return (size - window) // stride + 1 if size >= window else 0


def resize_for_scale(img: np.ndarray, scale: int, window: int) -> np.ndarray:
    """Resize a HxWx3 image by window / scale, so an S px window becomes W px (no letterbox)."""
    h, w = img.shape[:2]
    r = window / scale
    size = (max(1, round(w * r)), max(1, round(h * r)))  # cv2 wants (width, height)
    if size == (w, h):
        return img
    interp = cv2.INTER_AREA if r < 1 else cv2.INTER_LINEAR  # AREA: no aliasing when shrinking
    return cv2.resize(img, size, interpolation=interp)


def to_tensor(img_bgr: np.ndarray, device: torch.device | str = "cpu") -> Tensor:
    """HxWx3 uint8 BGR -> Tensor[3, H, W] float RGB in 0..1 (the models' input form)."""
    rgb = np.ascontiguousarray(img_bgr[:, :, ::-1].transpose(2, 0, 1))
    return torch.from_numpy(rgb).to(device).float().div_(255.0)


def sliding_scores(model: WindowClassifier, img: Tensor, stride: int, batch: int = 256) -> Tensor:
    """Crop every W x W window every `stride` px of img and classify the crops in batches.

    img: Tensor[3, H, W_img] float. Returns Tensor[ny, nx, C + 1] softmax probabilities, cell
    (i, j) for the window at (i * stride, j * stride).
    """
    w = model.cfg.imgsz
    ny, nx = num_windows(img.shape[1], w, stride), num_windows(img.shape[2], w, stride)
    k = model.cfg.num_classes + 1
    if ny == 0 or nx == 0:
        return img.new_zeros((ny, nx, k))
    grid = img.unfold(1, w, stride).unfold(2, w, stride)  # view [3, ny, nx, W, W]
    out = []
    rows = max(1, batch // nx)  # whole rows of windows per batch
    for i in range(0, ny, rows):
        crops = grid[:, i : i + rows].permute(1, 2, 0, 3, 4).reshape(-1, 3, w, w)  # [b,3,W,W]
        out.append(model(crops).softmax(1))
    return torch.cat(out).view(ny, nx, k)


def conv_sliding_scores(conv_model: ConvWindowClassifier, img: Tensor, stride: int) -> Tensor:
    """The same windows and scores as `sliding_scores`, from the fully convolutional model.

    One pass gives the windows at multiples of the model's stride s, from the pass's start. The
    window at k * stride along an axis lies at offset r = (k * stride) mod s from that lattice, so
    one pass over img shifted by (ry, rx) serves every window with those offsets: a single pass
    when stride is a multiple of s (the default), at most s * s passes otherwise.
    """
    w, s = conv_model.cfg.imgsz, conv_model.stride
    ny, nx = num_windows(img.shape[1], w, stride), num_windows(img.shape[2], w, stride)
    k = conv_model.cfg.num_classes + 1
    out = img.new_zeros((ny, nx, k))
    if ny == 0 or nx == 0:
        return out
    ys = torch.arange(ny) * stride  # window corners, pixels of img
    xs = torch.arange(nx) * stride
    for ry in (ys % s).unique().tolist():
        iy = (ys % s == ry).nonzero().squeeze(1)
        for rx in (xs % s).unique().tolist():
            ix = (xs % s == rx).nonzero().squeeze(1)
            probs = conv_model(img[None, :, ry:, rx:])[0].softmax(0)  # [C+1, Ho, Wo]
            cy, cx = (ys[iy] - ry) // s, (xs[ix] - rx) // s  # output cells of those windows
            out[iy[:, None], ix[None, :]] = probs[:, cy[:, None], cx[None, :]].permute(1, 2, 0)
    return out


def window_boxes(ny: int, nx: int, stride: int, window: int, fx: float, fy: float) -> Tensor:
    """Tensor[ny * nx, 4] xyxy of the window grid, scaled by (fx, fy) back to original pixels."""
    ys = torch.arange(ny, dtype=torch.float32) * stride
    xs = torch.arange(nx, dtype=torch.float32) * stride
    y1, x1 = torch.meshgrid(ys, xs, indexing="ij")  # [ny, nx] each
    b = torch.stack([x1, y1, x1 + window, y1 + window], -1).view(-1, 4)
    return b * torch.tensor([fx, fy, fx, fy])


def detect_windows(
    model: WindowClassifier,
    img_bgr: np.ndarray,
    method: str = "sliding",
    scales: Sequence[int] | None = DEFAULT_SCALES,
    stride: int | None = None,
    conf: float = 0.25,
    iou: float = 0.45,
    max_det: int = 300,
    classes: Sequence[int] | None = None,
    batch: int = 256,
    conv_model: ConvWindowClassifier | None = None,
    stats: WindowStats | None = None,
) -> Tensor:
    """Detect objects in one image with a window classifier.

    img_bgr: HxWx3 uint8 BGR. method: "sliding" (batched crops) or "conv-sliding" (the classifier
    as a conv net, one pass per scale). scales: window sides in original pixels (None:
    DEFAULT_SCALES). stride: pixels between windows in the resized image (None: the classifier's
    total stride). conv_model: a ready `to_conv(model)` (saves the conversion per image).
    stats: if given, the number of windows classified is added to `stats.windows`.

    Returns Tensor[K, 6] rows (x1, y1, x2, y2, score, class) in original pixels by decreasing
    score. The model is used as is (call `.eval()` first).
    """
    if method not in METHODS:
        raise DetectError(f"unknown sliding-window method {method!r} (use sliding or conv-sliding)")
    if not isinstance(model, WindowClassifier):
        raise DetectError(f"--method {method} needs window classifier weights (--model window)")
    if img_bgr.ndim != 3 or img_bgr.shape[2] != 3:
        raise DetectError(f"expected an HxWx3 image, got shape {tuple(img_bgr.shape)}")
    scales = parse_scales(scales)
    stride = stride or model.stride
    if stride < 1:
        raise DetectError(f"stride must be >= 1, got {stride}")
    device = next(model.parameters()).device
    if method == "conv-sliding" and conv_model is None:
        conv_model = to_conv(model)
    w = model.cfg.imgsz
    h0, w0 = img_bgr.shape[:2]
    boxes, scores, labels = [], [], []
    n = 0
    with torch.inference_mode():
        for scale in scales:
            resized = resize_for_scale(img_bgr, scale, w)
            rh, rw = resized.shape[:2]
            x = to_tensor(resized, device)
            if method == "sliding":
                probs = sliding_scores(model, x, stride, batch)
            else:
                probs = conv_sliding_scores(conv_model, x, stride)
            ny, nx = probs.shape[:2]
            n += ny * nx
            if ny * nx == 0:
                continue
            best, cls = probs.view(-1, probs.shape[-1])[:, :-1].max(1)  # background is last
            keep = best > conf
            if classes is not None:
                keep &= torch.isin(cls, torch.as_tensor(list(classes), device=cls.device))
            b = window_boxes(ny, nx, stride, w, w0 / rw, h0 / rh).to(device)
            boxes.append(b[keep])
            scores.append(best[keep])
            labels.append(cls[keep])
    if stats is not None:
        stats.windows += n
    if not boxes:
        return torch.zeros((0, 6), device=device)
    b, sc, cl = torch.cat(boxes), torch.cat(scores), torch.cat(labels)
    b[:, 0::2] = b[:, 0::2].clamp(0, w0)
    b[:, 1::2] = b[:, 1::2].clamp(0, h0)
    keep = batched_nms(b, sc, cl, iou)[:max_det]
    return torch.cat([b[keep], sc[keep, None], cl[keep, None].float()], 1)


def count_windows(height: int, width: int, window: int, scales: Sequence[int], stride: int) -> int:
    """Windows detect_windows classifies on a height x width image (no pixels needed)."""
    n = 0
    for s in scales:
        r = window / s
        rh, rw = max(1, round(height * r)), max(1, round(width * r))
        n += num_windows(rh, window, stride) * num_windows(rw, window, stride)
    return n
