"""Tiled (sliced) inference for images much larger than the model's input: windows, mapping tile
boxes back, and merging them across tiles. Pure numpy (no torch).

Small objects vanish when a 2000 px aerial photo is letterboxed to 320 px (a 24 px car becomes
4 px). Slicing the image into overlapping tiles the model sees at full resolution, plus one pass
over the whole image for the large objects, then merging the boxes, recovers them: the method of
SAHI, "Slicing Aided Hyper Inference and Fine-tuning for Small Object Detection" (Akyon, Altinuc
and Temizel, ICIP 2022; the `sahi` package). The functions here reproduce SAHI's results
exactly (its `get_slice_bboxes`, and the NMS and greedy NMM of `sahi.postprocess.combine`; the
tests hold them against the package), so numbers from SAHI's papers and tools carry over.

An object cut by a tile border is seen as two partial boxes, one per tile, that overlap in the
tiles' shared strip. Greedy NMM with the IOS metric (intersection over the smaller box, SAHI's
default) re-joins them: the partial boxes match (their intersection is most of the smaller one)
and the kept box becomes their union, the whole object.

Boxes are `(x1, y1, x2, y2)` pixels of the full image, float32, unless said otherwise.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from detect.errors import DetectError

METHODS = ("nms", "nmm")
METRICS = ("iou", "ios")


def tile_windows(width: int, height: int, tile: int, overlap: float = 0.2) -> np.ndarray:
    """Overlapping `tile` x `tile` windows covering a `width` x `height` image (SAHI's slicing).

    Windows start every `tile - int(overlap * tile)` pixels, row by row; the last window of a
    row (column) is moved back to end at the image border, so every window lies inside the image
    and is a full tile where the image is at least `tile` wide (high). An image smaller than the
    tile is one window, the whole image. Equal to `sahi.slicing.get_slice_bboxes(height, width,
    tile, tile, overlap_height_ratio=overlap, overlap_width_ratio=overlap)`.

    Returns:
        int64 ndarray[K, 4]: windows `(x1, y1, x2, y2)` in image pixels, row-major.
    Raises:
        DetectError: a non-positive size or tile, or `overlap` outside [0, 1).
    """
    if width < 1 or height < 1:
        raise DetectError(f"image size must be positive, got {width} x {height}")
    if tile < 1:
        raise DetectError(f"--tile must be a positive number of pixels, got {tile}")
    if not 0.0 <= overlap < 1.0:
        raise DetectError(f"--overlap must be in [0, 1), got {overlap}")
    shared = int(overlap * tile)  # pixels two neighbouring windows share
    out = []
    y_min = y_max = 0
    while y_max < height:  # SAHI's loop, kept as written so the windows are its windows
        x_min = x_max = 0
        y_max = y_min + tile
        while x_max < width:
            x_max = x_min + tile
            if y_max > height or x_max > width:
                x_max, y_max = min(width, x_max), min(height, y_max)
                x_min, y_min = max(0, x_max - tile), max(0, y_max - tile)
            out.append((x_min, y_min, x_max, y_max))
            x_min = x_max - shared
        y_min = y_max - shared
    return np.asarray(out, dtype=np.int64).reshape(-1, 4)


def crop(img: np.ndarray, window: Sequence[int]) -> np.ndarray:
    """The part of `img` (`ndarray[H, W, ...]`) under `window = (x1, y1, x2, y2)` (a view)."""
    x1, y1, x2, y2 = (int(v) for v in window)
    return img[y1:y2, x1:x2]


def shift_boxes(boxes: np.ndarray, window: Sequence[int]) -> np.ndarray:
    """Boxes `[N, 4]` in a tile's pixels -> the full image's pixels (adds the window's corner)."""
    x1, y1 = float(window[0]), float(window[1])
    boxes = np.asarray(boxes, dtype=np.float32)
    return boxes + np.array([x1, y1, x1, y1], np.float32)


def merge(
    boxes: np.ndarray,
    scores: np.ndarray,
    classes: np.ndarray,
    method: str = "nms",
    threshold: float = 0.5,
    metric: str = "ios",
    agnostic: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Merge the boxes of overlapping tiles: SAHI's NMS or greedy NMM (`sahi.postprocess`).

    Boxes are visited by decreasing score (ties: by x1, y1, x2, y2, as SAHI); two boxes match
    when their metric is >= `threshold` ("iou": intersection over union; "ios": intersection
    over the smaller box's area; 0 when that area is 0), computed in float32.

    - "nms": a visited box that no kept box matched is kept; the boxes it matches are dropped.
    - "nmm" (greedy non-maximum merging, SAHI's GREEDYNMM): a kept box absorbs the boxes it
      matches, in score order: each is re-checked against the growing box (float64) and, if it
      still matches, the box becomes the union of the two, the score their maximum, the class
      the higher-scored one's (the absorbed one's on a tie, as SAHI). An object cut in two by a
      tile border comes back whole.

    Args:
        boxes (ndarray[N, 4]): `(x1, y1, x2, y2)` pixels (taken as float32, as SAHI does).
        scores (ndarray[N]), classes (ndarray[N] int): per box.
        agnostic: match across classes (else only boxes of one class match).
    Returns:
        `(boxes float32 [K, 4], scores float32 [K], classes int64 [K])`, by decreasing score.
    Raises:
        DetectError: unknown method or metric, or arrays of mismatched shapes.
    """
    if method not in METHODS:
        raise DetectError(f"unknown merge method {method!r} (use {' or '.join(METHODS)})")
    if metric not in METRICS:
        raise DetectError(f"unknown merge metric {metric!r} (use {' or '.join(METRICS)})")
    boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    scores = np.asarray(scores, dtype=np.float32).reshape(-1)
    classes = np.asarray(classes).reshape(-1).astype(np.int64)
    if not len(boxes) == len(scores) == len(classes):
        raise DetectError(
            f"merge: {len(boxes)} boxes, {len(scores)} scores, {len(classes)} classes"
        )
    out_b, out_s, out_c = [], [], []
    groups = [np.arange(len(boxes))] if agnostic else _groups(classes)
    for idx in groups:
        b, s, c = boxes[idx], scores[idx], classes[idx]
        if method == "nms":
            keep = _greedy(b, s, threshold, metric, merge=False)
            out_b.append(b[list(keep)])
            out_s.append(s[list(keep)])
            out_c.append(c[list(keep)])
        else:
            for k, absorbed in _greedy(b, s, threshold, metric, merge=True).items():
                mb, ms, mc = _absorb(b, s, c, k, absorbed, threshold, metric)
                out_b.append(mb[None])
                out_s.append(np.float32([ms]))
                out_c.append(np.int64([mc]))
    if not out_b:
        return np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64)
    rb, rs, rc = np.concatenate(out_b), np.concatenate(out_s), np.concatenate(out_c)
    order = np.argsort(-rs, kind="stable")
    return rb[order].astype(np.float32), rs[order], rc[order]


def merge_detections(
    tile_dets: Sequence[np.ndarray],
    windows: np.ndarray,
    full: np.ndarray | None = None,
    method: str = "nms",
    threshold: float = 0.5,
    metric: str = "ios",
    agnostic: bool = False,
    max_det: int = 300,
) -> np.ndarray:
    """Detections of each tile (and of the whole image) -> one set for the image.

    Args:
        tile_dets: per window, float `ndarray[K_i, 6]` rows `(x1, y1, x2, y2, score, class)` in
            that tile's pixels (what `detect.runtime.postprocess` + unletterbox give for a crop).
        windows (ndarray[len(tile_dets), 4]): the windows, from `tile_windows`.
        full: the same rows for the whole image (already in image pixels), or None.
        method, threshold, metric, agnostic: as `merge`.
        max_det: keep at most this many, the highest scores.
    Returns:
        float32 `ndarray[K, 6]` rows `(x1, y1, x2, y2, score, class)` in image pixels, by
        decreasing score.
    """
    if len(tile_dets) != len(windows):
        raise DetectError(
            f"merge_detections: {len(tile_dets)} tile results, {len(windows)} windows"
        )
    parts = [
        np.concatenate((shift_boxes(d[:, :4], w), np.asarray(d[:, 4:6], np.float32)), 1)
        for d, w in zip(tile_dets, windows, strict=True)
        if len(d)
    ]
    if full is not None and len(full):
        parts.append(np.asarray(full, np.float32)[:, :6])
    if not parts:
        return np.zeros((0, 6), np.float32)
    rows = np.concatenate(parts)
    b, s, c = merge(rows[:, :4], rows[:, 4], rows[:, 5], method, threshold, metric, agnostic)
    out = np.concatenate((b, s[:, None], c[:, None].astype(np.float32)), 1)
    return out[:max_det]


def _groups(classes: np.ndarray) -> list[np.ndarray]:
    """Indices of each class, classes ascending (SAHI's `np.unique` loop), index order within."""
    return [np.flatnonzero(classes == k) for k in np.unique(classes)]


def _order(b: np.ndarray, s: np.ndarray) -> np.ndarray:
    """Decreasing score; ties by x1, then y1, x2, y2 ascending (SAHI's deterministic order)."""
    return np.lexsort((b[:, 3], b[:, 2], b[:, 1], b[:, 0], -s))


def _metric_row(b: np.ndarray, area: np.ndarray, i: int, js: np.ndarray, metric: str) -> np.ndarray:
    """float32 IoU or IOS of box i against boxes js, with SAHI's float32 operations."""
    w = np.maximum(0, np.minimum(b[i, 2], b[js, 2]) - np.maximum(b[i, 0], b[js, 0]))
    h = np.maximum(0, np.minimum(b[i, 3], b[js, 3]) - np.maximum(b[i, 1], b[js, 1]))
    inter = w * h
    den = area[i] + area[js] - inter if metric == "iou" else np.minimum(area[i], area[js])
    out = np.zeros(len(js), np.float32)
    np.divide(inter, den, out=out, where=den > 0)
    return out


_MATRIX_MAX = 512  # groups up to this size get the whole metric matrix at once (1 MiB)


def _metric_matrix(b: np.ndarray, area: np.ndarray, metric: str) -> np.ndarray:
    """float32 `[N, N]` IoU or IOS, SAHI's `compute_metric_matrix` operation for operation."""
    w = np.maximum(0, np.minimum(b[:, None, 2], b[None, :, 2]) - np.maximum(b[:, None, 0], b[:, 0]))
    h = np.maximum(0, np.minimum(b[:, None, 3], b[None, :, 3]) - np.maximum(b[:, None, 1], b[:, 1]))
    inter = w * h
    if metric == "iou":
        den = area[:, None] + area[None, :] - inter
    else:
        den = np.minimum(area[:, None], area[None, :])
    out = np.zeros(inter.shape, np.float32)
    np.divide(inter, den, out=out, where=den > 0)
    return out


def _greedy(
    b: np.ndarray, s: np.ndarray, threshold: float, metric: str, merge: bool
) -> list[int] | dict[int, list[int]]:
    """SAHI's greedy loop over boxes sorted by score: kept indices (NMS), or each kept index
    with the indices it absorbs, in score order (greedy NMM). Small groups use the whole metric
    matrix; large ones compute the rows of kept boxes only (kept x N work, O(N) memory). The
    values are those of SAHI's matrix either way."""
    area = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])  # float32
    thr = np.float32(threshold)  # SAHI compares its float32 matrix with a weak Python float
    order = _order(b, s)
    if threshold <= 0:  # every pair matches: the first box takes all (SAHI's match-all case)
        if not len(order):
            return {} if merge else []
        first = int(order[0])
        return {first: [int(i) for i in order[1:]]} if merge else [first]
    matches = _metric_matrix(b, area, metric) >= thr if len(b) <= _MATRIX_MAX else None
    suppressed = np.zeros(len(b), bool)
    keep: list[int] = []
    absorbed: dict[int, list[int]] = {}
    for pos, i in enumerate(order):
        if suppressed[i]:
            continue
        rest = order[pos + 1 :]
        rest = rest[~suppressed[rest]]
        if matches is not None:
            hit = rest[matches[i, rest]]
        else:
            hit = rest[_metric_row(b, area, i, rest, metric) >= thr]
        suppressed[hit] = True
        if merge:
            absorbed[int(i)] = hit.tolist()
        else:
            keep.append(int(i))
    return absorbed if merge else keep


def _absorb(
    b: np.ndarray,
    s: np.ndarray,
    c: np.ndarray,
    k: int,
    absorbed: list[int],
    threshold: float,
    metric: str,
) -> tuple[np.ndarray, float, int]:
    """Grow kept box k by the boxes it absorbed, each re-checked against the grown box in
    float64 (SAHI's `_apply_merge` with `has_match` and `merge_object_prediction_pair`)."""
    x1, y1, x2, y2 = (float(v) for v in b[k])
    score, cls = float(s[k]), int(c[k])
    for j in absorbed:
        u1, v1, u2, v2 = (float(v) for v in b[j])
        inter = max(0.0, min(x2, u2) - max(x1, u1)) * max(0.0, min(y2, v2) - max(y1, v1))
        a1, a2 = (x2 - x1) * (y2 - y1), (u2 - u1) * (v2 - v1)
        den = a1 + a2 - inter if metric == "iou" else min(a1, a2)
        if den == 0 or not inter / den >= threshold:  # SAHI: 0 / 0 is NaN, no match
            continue
        x1, y1, x2, y2 = min(x1, u1), min(y1, v1), max(x2, u2), max(y2, v2)
        sj = float(s[j])
        cls = cls if score > sj else int(c[j])
        score = max(score, sj)
    return np.array([x1, y1, x2, y2], np.float32), score, cls
