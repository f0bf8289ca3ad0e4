"""Anchor boxes by k-means on box shapes with the YOLOv2 distance d = 1 - IoU.

Boxes are compared as if they shared a centre, so only their shapes matter: `wh` is `ndarray[N, 2]`
of `(w, h)` as fractions of the model input: by default the letterbox frame the model sees
(w and h over the image's long side), or each image's own sides (`frame="image"`, the frame of
YOLOv2's Table 1). Anchors are `ndarray[K, 2]` in the same units, sorted by area.

The search maximises the mean best IoU (each box with its best anchor), the figure of merit the
YOLOv2 paper reports, in three stages:

1. k-means++ style seeding with d = 1 - IoU, several restarts (deterministic per seed);
2. k-medians Lloyd iterations (the per-coordinate median is a much better centre for the IoU
   objective than the mean, which plain k-means uses);
3. a refinement that maximises the objective itself: alternate assigning each box to its best
   anchor and moving each anchor to the shape that maximises the summed IoU of its boxes (a
   pattern search in log space). Both steps never decrease the mean best IoU.

Pure numpy (no torch): `detect anchors` runs without importing torch.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from detect.errors import DetectError
from detect.files import atomic_write_text
from detect.iou import inter_union
from detect.resources import data_dir

# ----------------------------------------------------------------------------------------------
# Metrics


def wh_iou(wh: np.ndarray, anchors: np.ndarray) -> np.ndarray:
    """IoU of shapes as if they shared a centre (`detect.iou.shape_iou` for positive shapes,
    without its empty-union guard: this runs in the k-means inner loops).

    Args:
        wh: ndarray[N, 2] `(w, h)`, positive.
        anchors: ndarray[K, 2] `(w, h)`, same units.

    Returns:
        ndarray[N, K] float64.
    """
    wh = np.asarray(wh, np.float64)
    anchors = np.asarray(anchors, np.float64)
    inter, union = inter_union(wh[:, None], anchors[None])  # [N,K] each
    return inter / union


def avg_iou(wh: np.ndarray, anchors: np.ndarray, weights: np.ndarray | None = None) -> float:
    """Mean over boxes of the IoU with the best anchor (YOLOv2's "Avg IOU"), in 0..1."""
    best = _best_iou(np.asarray(wh, np.float64), np.asarray(anchors, np.float64))
    return float(np.average(best, weights=weights))


def ratio_metric(wh: np.ndarray, anchors: np.ndarray) -> np.ndarray:
    """Ultralytics' shape match: min over w and h of min(r, 1/r), r = box / anchor.

    Returns:
        ndarray[N, K] in 0..1; a box fits an anchor at threshold `thr` when this is > 1 / thr
        (the ratio max(r, 1/r) < thr on both sides).
    """
    r = np.asarray(wh, np.float64)[:, None, :] / np.asarray(anchors, np.float64)[None]  # [N,K,2]
    return np.minimum(r, 1.0 / r).min(2)


def bpr(wh: np.ndarray, anchors: np.ndarray, thr: float = 4.0) -> float:
    """Best possible recall: share of boxes whose best anchor is within ratio `thr`."""
    return float((ratio_metric(wh, anchors).max(1) > 1.0 / thr).mean())


def anchors_above_thr(wh: np.ndarray, anchors: np.ndarray, thr: float = 4.0) -> float:
    """Mean number of anchors per box within ratio `thr` (ultralytics' "anchors/target")."""
    return float((ratio_metric(wh, anchors) > 1.0 / thr).sum(1).mean())


@dataclass
class AnchorStats:
    """How well a set of anchors fits a set of boxes."""

    avg_iou: float  # mean best IoU, 0..1
    bpr: float  # best possible recall at `thr`, 0..1
    aat: float  # anchors above threshold per box
    thr: float  # ratio threshold used for bpr / aat


def anchor_stats(wh: np.ndarray, anchors: np.ndarray, thr: float = 4.0) -> AnchorStats:
    """All fit statistics of `anchors` ndarray[K, 2] on boxes `wh` ndarray[N, 2]."""
    wh = _check_wh(wh)
    anchors = _check_anchors(anchors)
    if len(wh) == 0:
        return AnchorStats(avg_iou=0.0, bpr=0.0, aat=0.0, thr=thr)
    iou_sum, n_fit, n_above = 0.0, 0, 0
    for i in range(0, len(wh), _CHUNK):  # bounded memory for millions of boxes
        part = wh[i : i + _CHUNK]
        iou_sum += float(wh_iou(part, anchors).max(1).sum())
        fits = ratio_metric(part, anchors) > 1.0 / thr  # [n,K]
        n_fit += int(fits.any(1).sum())
        n_above += int(fits.sum())
    n = len(wh)
    return AnchorStats(avg_iou=iou_sum / n, bpr=n_fit / n, aat=n_above / n, thr=thr)


_CHUNK = 1 << 17  # rows per block when a [N, K] intermediate could be large


# ----------------------------------------------------------------------------------------------
# Boxes from a data set


FRAMES = ("letterbox", "image")


def boxes_wh(records: Any, frame: str = "letterbox") -> np.ndarray:
    """The `(w, h)` of every box of a `DatasetRecords` as fractions of the model input.

    `frame="letterbox"` (the default): over the image's long side, as the letterboxed model
    (and `detect train --anchors auto`) sees the box, so anchors fit what the model predicts;
    `frame="image"`: w over the image's width, h over its height (YOLOv2 Table 1). The two
    agree for square images. w = x2 - x1 of the canonical xyxy pixels (VOC: xmax - xmin).
    Difficult and crowd boxes are kept: anchors describe every object the data set shows.

    Returns:
        ndarray[N, 2] float64.
    Raises:
        DetectError: an unknown frame, or an image whose size is not positive.
    """
    if frame not in FRAMES:
        raise DetectError(f"unknown anchor frame {frame!r} (use letterbox or image)")
    parts = []
    for im in records.images:
        b = np.asarray(im.boxes, np.float64).reshape(-1, 4)
        if len(b) == 0:
            continue
        size = np.array([im.width, im.height], np.float64)
        if (size <= 0).any():
            raise DetectError(
                f"{im.path or im.id}: image size {im.width}x{im.height} is not positive"
            )
        parts.append((b[:, 2:4] - b[:, 0:2]) / (size.max() if frame == "letterbox" else size))
    return np.concatenate(parts) if parts else np.zeros((0, 2))


# ----------------------------------------------------------------------------------------------
# k-means


@dataclass
class KMeansConfig:
    """Search settings; the defaults reach the YOLOv2 paper's figures on VOC 2007 in < 1 s."""

    restarts: int = 6  # seeding is random; the best of several avoids poor local optima
    iters: int = 60  # k-medians Lloyd iterations per restart (usually converges in < 30)
    refine_top: int = 2  # best restarts refined on the (binned) search set
    final_top: int = 1  # of those, refined again on all distinct shapes
    refine_iters: int = 100  # cap on assignment + pattern-search iterations of the refinement
    step: float = 0.1  # first pattern-search step, in log units (10 %)
    tol: float = 1e-4  # pattern search stops below this step (relative anchor precision)
    search_points: int = 4_000  # restarts run on at most this many (binned) distinct shapes
    refine_points: int = 50_000  # refinement data: distinct shapes, binned beyond this


@dataclass
class AnchorResult:
    """Anchors found by `kmeans_anchors` and their fit on all boxes."""

    anchors: np.ndarray  # [K, 2] (w, h) fractions of the model input, sorted by area
    k: int
    avg_iou: float  # mean best IoU over all boxes, 0..1
    bpr: float  # best possible recall at `thr`
    aat: float  # anchors above threshold per box
    thr: float
    boxes: int  # boxes clustered (after dropping zero-size ones)
    distinct: int  # distinct box shapes
    seed: int
    # Messages for the CLI to show (the library never prints).
    warnings: list[str] = field(default_factory=list)

    def to_json(self, source: str, frame: str = "letterbox") -> dict[str, Any]:
        """The contract's anchors JSON; `frame` says what w and h are fractions of."""
        return {
            "anchors": [[float(w), float(h)] for w, h in self.anchors],
            "k": self.k,
            "avg_iou": self.avg_iou,
            "bpr": self.bpr,
            "boxes": self.boxes,
            "source": source,
            "frame": frame,
        }


def kmeans_anchors(
    wh: np.ndarray,
    k: int,
    seed: int = 0,
    thr: float = 4.0,
    config: KMeansConfig | None = None,
    callback: Callable[[int, int], None] | None = None,
) -> AnchorResult:
    """Cluster box shapes into `k` anchors maximising the mean best IoU.

    Args:
        wh: ndarray[N, 2] box `(w, h)`, normalised by image size. Boxes with a zero (or negative)
            side are dropped with a warning.
        k: number of anchors.
        seed: the result depends only on `seed` and the multiset of shapes (not their order).
        thr: ratio threshold for the reported BPR.
        callback: called as `callback(done, total)` after each restart and refinement.

    Returns:
        AnchorResult with `anchors` ndarray[k, 2] sorted by area.
    """
    cfg = config or KMeansConfig()
    wh = np.asarray(wh, np.float64)
    if wh.ndim != 2 or wh.shape[1] != 2:
        raise DetectError(f"box shapes must be an [N, 2] array, got shape {wh.shape}")
    if k < 1:
        raise DetectError(f"k must be >= 1, got {k}")
    warnings = []
    good = np.isfinite(wh).all(1) & (wh > 0).all(1)
    if not good.all():
        warnings.append(f"{int((~good).sum())} zero-size boxes ignored")
        wh = wh[good]
    if len(wh) == 0:
        raise DetectError("no boxes to cluster")

    shapes, counts = _unique_rows(wh)  # sorted: the result cannot depend on box order
    counts = counts.astype(np.float64)
    if k > len(shapes):
        warnings.append(
            f"k={k} is larger than the number of distinct box shapes ({len(shapes)}): "
            "anchors repeat shapes"
        )
        anchors = shapes[np.argsort(-counts, kind="stable")]
        anchors = anchors[np.arange(k) % len(anchors)]
    else:
        anchors = _search(shapes, counts, k, seed, cfg, callback)
    anchors = anchors[np.argsort(anchors[:, 0] * anchors[:, 1], kind="stable")]
    st = anchor_stats(wh, anchors, thr)
    return AnchorResult(
        anchors=anchors,
        k=k,
        avg_iou=st.avg_iou,
        bpr=st.bpr,
        aat=st.aat,
        thr=thr,
        boxes=len(wh),
        distinct=len(shapes),
        seed=seed,
        warnings=warnings,
    )


def score_anchors(wh: np.ndarray, anchors: np.ndarray, thr: float = 4.0) -> AnchorResult:
    """Given anchors ndarray[K, 2] as an AnchorResult (sorted by area), scored on boxes `wh`.

    Zero-size boxes are left out, as `kmeans_anchors` does, so the two compare like for like.
    """
    wh = _check_wh(wh)
    wh = wh[np.isfinite(wh).all(1) & (wh > 0).all(1)]
    if len(wh) == 0:
        raise DetectError("no boxes to score the anchors on")
    anchors = _check_anchors(anchors)
    anchors = anchors[np.argsort(anchors[:, 0] * anchors[:, 1], kind="stable")]
    st = anchor_stats(wh, anchors, thr)
    return AnchorResult(
        anchors=anchors,
        k=len(anchors),
        avg_iou=st.avg_iou,
        bpr=st.bpr,
        aat=st.aat,
        thr=thr,
        boxes=len(wh),
        distinct=len(_unique_rows(wh)[0]),
        seed=0,
    )


def _search(
    shapes: np.ndarray,
    counts: np.ndarray,
    k: int,
    seed: int,
    cfg: KMeansConfig,
    callback: Callable[[int, int], None] | None,
) -> np.ndarray:
    """Restarts on a compact weighted set, then direct refinement of the best few."""
    rng = np.random.default_rng(seed)
    total = cfg.restarts + cfg.refine_top + 1
    s_wh, s_w = _bin_shapes(shapes, counts, max(cfg.search_points, 8 * k))
    found = []
    for r in range(cfg.restarts):
        a = _kmedians(s_wh, s_w, _seed_pp(s_wh, s_w, k, rng), cfg.iters)
        found.append((_objective(s_wh, s_w, a), r, a))
        if callback:
            callback(r + 1, total)
    found.sort(key=lambda t: (-t[0], t[1]))  # ties broken by restart index: deterministic

    refined = []
    for i, (_, r, a) in enumerate(found[: cfg.refine_top]):
        a = _refine(s_wh, s_w, a, cfg, cfg.step)
        refined.append((_objective(s_wh, s_w, a), r, a))
        if callback:
            callback(cfg.restarts + i + 1, total)
    refined.sort(key=lambda t: (-t[0], t[1]))
    # The best few, polished on all distinct shapes (or a fine binning of very many): the
    # binned objective ranks close local optima only roughly.
    r_wh, r_w = _bin_shapes(shapes, counts, max(cfg.refine_points, 8 * k))
    best, best_fit = refined[0][2], -1.0
    if r_wh is not s_wh:
        for _, _, a in refined[: cfg.final_top]:
            a = _refine(r_wh, r_w, a, cfg, cfg.step / 8)  # close already: small first steps
            fit = _objective(r_wh, r_w, a)
            if fit > best_fit:
                best, best_fit = a, fit
    if callback:
        callback(total, total)
    return best


def _unique_rows(wh: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct rows of [N, 2] float64, sorted by (w, h), and their counts.

    Viewed as complex numbers, which numpy sorts by (real, imag): a plain 1-D unique, several
    times faster than `np.unique(axis=0)` on a million rows.
    """
    z, counts = np.unique(np.ascontiguousarray(wh).view(np.complex128)[:, 0], return_counts=True)
    return np.stack([z.real, z.imag], 1), counts


def _best_iou(wh: np.ndarray, anchors: np.ndarray) -> np.ndarray:
    """[N] IoU of each shape with its best anchor; chunked so 1M x K stays small in memory."""
    out = np.empty(len(wh))
    for i in range(0, len(wh), _CHUNK):
        out[i : i + _CHUNK] = wh_iou(wh[i : i + _CHUNK], anchors).max(1)
    return out


def _objective(wh: np.ndarray, w: np.ndarray, anchors: np.ndarray) -> float:
    return float(np.dot(_best_iou(wh, anchors), w) / w.sum())


def _bin_shapes(
    shapes: np.ndarray, counts: np.ndarray, max_points: int
) -> tuple[np.ndarray, np.ndarray]:
    """At most `max_points` weighted shapes standing for `shapes` with `counts`.

    Beyond the limit, shapes are binned on a square grid in (log w, log h) and each bin is
    replaced by its count-weighted mean shape: the IoU objective is smooth at the scale of a bin,
    so the optimum barely moves while the work shrinks to the number of bins.
    """
    if len(shapes) <= max_points:
        return shapes, counts
    logs = np.log(shapes)
    lo, hi = logs.min(0), logs.max(0)
    g = int(math.sqrt(max_points)) * 2
    while True:
        cell = ((logs - lo) / np.maximum(hi - lo, 1e-12) * (g - 1e-9)).astype(np.int64)  # [N,2]
        cell = cell[:, 0] * g + cell[:, 1]
        used = np.bincount(cell, minlength=g * g) > 0  # dense grid: no sort needed
        rank = np.cumsum(used) - 1
        inv, n = rank[cell], int(used.sum())
        if n <= max_points or g <= 2:
            break
        g = int(g / math.sqrt(n / max_points)) - 1
    if n < max_points // 8:  # pathological clumping: keep the shapes as they are
        return shapes, counts
    w = np.bincount(inv, counts, n)
    mean = np.stack([np.bincount(inv, counts * shapes[:, j], n) for j in (0, 1)], 1) / w[:, None]
    return mean, w


def _seed_pp(wh: np.ndarray, w: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """k-means++ seeding with d = 1 - IoU: each new centre drawn with probability ~ w * d^2."""
    idx = [int(rng.choice(len(wh), p=w / w.sum()))]
    d = 1.0 - wh_iou(wh, wh[idx[0] : idx[0] + 1])[:, 0]  # [N]
    for _ in range(1, k):
        p = w * d * d
        if p.sum() <= 0:  # fewer distinct shapes than centres: caught by the caller
            break
        idx.append(int(rng.choice(len(wh), p=p / p.sum())))
        d = np.minimum(d, 1.0 - wh_iou(wh, wh[idx[-1] : idx[-1] + 1])[:, 0])
    return wh[idx].copy()


def _weighted_median(
    values: np.ndarray, w: np.ndarray, order: np.ndarray, labels: np.ndarray, k: int
) -> np.ndarray:
    """Per-label weighted (lower) median of `values` [N]; NaN for empty labels. Returns [k].

    `order` = argsort(values), computed once: a stable sort of the labels in that order groups
    each label's values in increasing order, cheaper than a fresh two-key sort every iteration.
    """
    order = order[np.argsort(labels[order], kind="stable")]
    v, cw, lab = values[order], np.cumsum(w[order]), labels[order]
    tot = np.bincount(labels, w, k)
    before = np.concatenate([[0.0], np.cumsum(tot)[:-1]])
    out = np.full(k, np.nan)
    has = np.flatnonzero(tot > 0)
    i = np.searchsorted(cw, before[has] + tot[has] / 2, side="left")
    # Rounding can land one element early, on the previous label's last element.
    i = np.minimum(i, len(v) - 1)
    i = np.minimum(i + (lab[i] != has), len(v) - 1)
    out[has] = v[i]
    return out


def _kmedians(wh: np.ndarray, w: np.ndarray, anchors: np.ndarray, iters: int) -> np.ndarray:
    """Lloyd iterations with d = 1 - IoU and the per-coordinate weighted median as centre."""
    k = len(anchors)
    orders = [np.argsort(wh[:, j], kind="stable") for j in (0, 1)]
    labels = None
    for _ in range(iters):
        iou = wh_iou(wh, anchors)  # [N,K]
        new = iou.argmax(1)
        if labels is not None and np.array_equal(new, labels):
            break
        labels = new
        med = np.stack([_weighted_median(wh[:, j], w, orders[j], labels, k) for j in (0, 1)], 1)
        empty = np.isnan(med[:, 0])
        if empty.any():  # move empty clusters to the worst-served shapes
            worst = np.argsort(iou.max(1), kind="stable")[: int(empty.sum())]
            med[empty] = wh[worst]
        anchors = med
    return anchors


# Pattern-search moves in (log w, log h): the 8 neighbours of the current anchor.
_MOVES = np.array([(dx, dy) for dx in (-1, 0, 1) for dy in (-1, 0, 1) if dx or dy], np.float64)


def _refine(
    wh: np.ndarray, w: np.ndarray, anchors: np.ndarray, cfg: KMeansConfig, step: float
) -> np.ndarray:
    """Maximise the weighted mean best IoU directly, from `anchors` [K, 2].

    Each iteration (a) assigns every shape to its best anchor, then (b) tries, for every anchor
    at once, the 8 neighbours of a pattern search in (log w, log h) around it, keeping the one
    that most raises its members' summed IoU; an anchor none of whose neighbours helps halves its
    step. Neither step lowers the objective, so the result is at least as good as the start;
    it stops when every step is below `cfg.tol`.
    """
    k = len(anchors)
    anchors = anchors.copy()
    steps = np.full(k, step)
    c8 = np.arange(len(_MOVES))
    for _ in range(cfg.refine_iters):
        if (steps <= cfg.tol).all():
            break
        labels = wh_iou(wh, anchors).argmax(1)  # [N]
        inter, union = inter_union(wh, anchors[labels])  # [N] each, shape by its anchor
        cur = np.bincount(labels, w * inter / union, k)  # [K]
        cand = anchors[:, None] * np.exp(steps[:, None, None] * _MOVES)  # [K,8,2]
        inter, union = inter_union(wh[:, None], cand[labels])  # [N,8] each
        iou = inter / union
        s = np.bincount((labels[:, None] * 8 + c8).ravel(), (iou * w[:, None]).ravel(), k * 8)
        s = s.reshape(k, 8)
        j = s.argmax(1)
        better = (s[np.arange(k), j] > cur * (1 + 1e-12)) & (steps > cfg.tol)
        anchors[better] = cand[better, j[better]]
        steps[better] = np.minimum(steps[better] * 2, cfg.step)  # moving: stride out
        steps[~better] /= 2  # no neighbour improves: look closer
    return anchors


# ----------------------------------------------------------------------------------------------
# Files


def anchors_json_text(obj: dict[str, Any]) -> str:
    """The anchors JSON as text, one key per line (the anchor list on one line)."""
    body = ",\n".join(f"  {json.dumps(key)}: {json.dumps(value)}" for key, value in obj.items())
    return "{\n" + body + "\n}\n"


def write_anchors(
    path: str | Path, result: AnchorResult, source: str, frame: str = "letterbox"
) -> Path:
    """Write the contract's anchors JSON atomically."""
    return atomic_write_text(path, anchors_json_text(result.to_json(source, frame)))


def read_anchors(path: str | Path) -> np.ndarray:
    """Anchors ndarray[K, 2] (w, h fractions) from an anchors JSON file (contract format).

    Also accepts a bare `[[w, h], ...]` list. Raises DetectError naming the file on bad input.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise DetectError(f"{path}: no such anchors file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DetectError(f"{path}: not a valid anchors JSON ({e})") from None
    raw = data.get("anchors") if isinstance(data, dict) else data
    try:
        a = np.asarray(raw, np.float64)
    except (TypeError, ValueError):
        raise DetectError(f"{path}: 'anchors' must be a list of [w, h] pairs") from None
    if a.ndim != 2 or a.shape[1] != 2 or len(a) == 0:
        raise DetectError(f"{path}: 'anchors' must be a non-empty list of [w, h] pairs")
    if not (np.isfinite(a).all() and (a > 0).all()):
        raise DetectError(f"{path}: anchor sizes must be positive numbers")
    return a


def parse_anchors(text: str, imgsz: int = 416, stride: int = 32) -> np.ndarray:
    """Anchors ndarray[K, 2] (fractions) from a JSON file, a shipped set's name, or a darknet list.

    `text` is tried as: an existing file; the name of a set in the shipped `anchors/` folder
    (e.g. "yolov2-voc"); else a darknet `anchors=` list `w1,h1, w2,h2, ...` in grid units of a
    stride-`stride` grid on an `imgsz` input (darknet's YOLOv2 sets: 416 and 32, a 13x13 grid).
    """
    if Path(text).is_file():
        return read_anchors(text)
    shipped = _shipped_dir() / f"{text}.json"
    if shipped.is_file():
        return read_anchors(shipped)
    body = text.split("=", 1)[1] if text.strip().startswith("anchors") else text
    try:
        values = [float(v) for v in body.replace(" ", "").split(",") if v]
    except ValueError:
        raise DetectError(
            f"{text}: not an anchors file, a shipped set or a darknet list 'w1,h1, w2,h2, ...'"
        ) from None
    if len(values) < 2 or len(values) % 2 or min(values) <= 0:
        raise DetectError(f"{text}: a darknet anchors list needs positive w,h pairs")
    return np.array(values, np.float64).reshape(-1, 2) * stride / imgsz


def shipped_anchor_sets() -> list[str]:
    """Names of the anchor sets in the shipped `anchors/` folder."""
    return sorted(p.stem for p in _shipped_dir().glob("*.json"))


def _shipped_dir() -> Path:
    """The shipped anchor sets (installed copy or the repo's `anchors/`)."""
    return data_dir("anchors")


def _check_wh(wh: np.ndarray) -> np.ndarray:
    wh = np.asarray(wh, np.float64)
    if wh.ndim != 2 or wh.shape[1] != 2:
        raise DetectError(f"box shapes must be an [N, 2] array, got shape {wh.shape}")
    return wh


def _check_anchors(anchors: np.ndarray) -> np.ndarray:
    a = np.asarray(anchors, np.float64)
    if a.ndim != 2 or a.shape[1] != 2 or len(a) == 0 or not (a > 0).all():
        raise DetectError("anchors must be a non-empty [K, 2] array of positive sizes")
    return a
