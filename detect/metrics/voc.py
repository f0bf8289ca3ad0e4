"""PASCAL VOC AP at IoU 0.5, per class: VOC2007 11-point and VOC2010+ all-point, as the devkit.

Devkit rules: detections of a class sorted by score over all images (stable here); each is
assigned the GT of its image and class with the highest IoU (first on ties), whether or not that
GT is already taken; IoU >= 0.5 and not difficult: TP if the GT is free, else FP; matched to a
difficult GT: neither; below 0.5: FP. Difficult GT are not counted in npos. IoU is continuous
(no +1 pixel), per the contract. Crowd GT are treated like difficult ones.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from detect.iou import paired_iou
from detect.metrics.arrays import GroundTruth, Predictions
from detect.metrics.coco import _first_max, _segments, group_ranges, stable_argsort


@dataclass
class VocResult:
    ap07: np.ndarray  # float64 [K] 11-point AP, -1 for a class without (non-difficult) GT
    ap: np.ndarray  # float64 [K] all-point AP, -1 likewise
    npos: np.ndarray  # int64 [K] non-difficult GT per class

    @property
    def map07(self) -> float:
        return _mean_defined(self.ap07)

    @property
    def map(self) -> float:
        return _mean_defined(self.ap)


def _mean_defined(ap: np.ndarray) -> float:
    v = ap[ap > -1]
    return float(v.mean()) if len(v) else -1.0


def ap_11point(rec: np.ndarray, prec: np.ndarray) -> float:
    """VOC2007: mean over recall t in 0, 0.1, ..., 1 of max precision at recall >= t."""
    ap = 0.0
    for t in np.arange(0.0, 1.1, 0.1):
        p = prec[rec >= t]
        ap += (p.max() if len(p) else 0.0) / 11.0
    return float(ap)


def ap_allpoint(rec: np.ndarray, prec: np.ndarray) -> float:
    """VOC2010+: area under the precision envelope, summed where recall changes."""
    mrec = np.concatenate([[0.0], rec, [1.0]])
    mpre = np.concatenate([[0.0], prec, [0.0]])
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]
    i = np.flatnonzero(mrec[1:] != mrec[:-1])
    return float(np.sum((mrec[i + 1] - mrec[i]) * mpre[i + 1]))


def voc_match(
    gt: GroundTruth,
    pr: Predictions,
    iou_thr: float = 0.5,
    order: np.ndarray | None = None,
    pairs: tuple | None = None,
) -> np.ndarray:
    """Outcome per detection: int8 [D], 1 TP, 0 FP, -1 ignored (matched a difficult GT).

    `order`: the detections by class then decreasing score, stable (computed if not given).
    `pairs`: CocoMatch.pairs, re-used when they hold every detection and every pair that can
    reach iou_thr (only the best GT at >= iou_thr matters: below, the detection is FP anyway).
    """
    C = gt.num_classes
    D = len(pr)
    if pairs is not None and pairs[3] and pairs[2] <= iou_thr - 1e-10:
        pair_det, pair_gt = pairs[0], pairs[1]
    else:
        gkey = gt.image * C + gt.classes
        gorder = np.argsort(gkey, kind="stable")
        gkey_s = gkey[gorder]
        dkey = pr.image * C + pr.classes
        lo, cnt = group_ranges(gkey_s, dkey, gt.num_images * C)  # [D] GT of the group
        pair_det = np.repeat(np.arange(D), cnt)
        pos = np.repeat(lo, cnt) + np.arange(len(pair_det)) - np.repeat(np.cumsum(cnt) - cnt, cnt)
        pair_gt = gorder[pos]  # pos: GT file order inside the group
    dxy = pr.xywh[pair_det]
    gxy = gt.xywh[pair_gt]
    iou = paired_iou(
        np.concatenate([dxy[:, :2], dxy[:, :2] + dxy[:, 2:]], axis=1),
        np.concatenate([gxy[:, :2], gxy[:, :2] + gxy[:, 2:]], axis=1),
    )

    # best GT per detection, the first in file order on ties (pairs come ordered by det, gt)
    best_gt = np.full(D, -1, np.int64)
    best_iou = np.full(D, -np.inf)
    if len(pair_det):
        starts, seg = _segments(pair_det)
        _, first = _first_max(iou, starts, seg)
        best_gt[pair_det[first]] = pair_gt[first]
        best_iou[pair_det[first]] = iou[first]

    out = np.zeros(D, np.int8)  # FP unless below
    hit = best_iou >= iou_thr
    skip = np.r_[gt.difficult | gt.iscrowd, False]  # [G+1]: index -1 (no GT) is not skipped
    ignored = hit & skip[best_gt]
    out[ignored] = -1
    cand = hit & ~ignored
    # the first detection by score (stable) to reach a GT takes it; later ones are FP. All that
    # reach one GT share its class, so the class-then-score order is their score order.
    if order is None:
        order = _class_score_order(pr)
    o = order[cand[order]]
    g = best_gt[o]
    first = np.full(len(gt.classes), len(o), np.int64)
    np.minimum.at(first, g, np.arange(len(o)))
    out[o[first[first < len(o)]]] = 1
    return out


def _class_score_order(pr: Predictions) -> np.ndarray:
    srank = pr.score_rank()
    return stable_argsort(pr.classes * (int(srank.max(initial=0)) + 1) + srank)


def evaluate_voc(
    gt: GroundTruth, pr: Predictions, iou_thr: float = 0.5, pairs: tuple | None = None
) -> VocResult:
    """Per-class VOC07 and VOC AP (module docstring); `pairs`: CocoMatch.pairs to re-use."""
    K = gt.num_classes
    order = _class_score_order(pr)
    res = voc_match(gt, pr, iou_thr, order, pairs)
    npos = np.bincount(gt.classes[~(gt.difficult | gt.iscrowd)], minlength=K)
    cls_s, res_s = pr.classes[order], res[order]
    bounds = np.searchsorted(cls_s, np.arange(K + 1))
    ap07, ap = -np.ones(K), -np.ones(K)
    for k in range(K):
        if npos[k] == 0:
            continue
        r = res_s[bounds[k] : bounds[k + 1]]
        r = r[r >= 0]  # ignored detections are neither TP nor FP
        tp = np.cumsum(r == 1).astype(np.float64)
        fp = np.cumsum(r == 0).astype(np.float64)
        rec = tp / npos[k]
        prec = tp / np.maximum(tp + fp, np.finfo(np.float64).eps)
        ap07[k] = ap_11point(rec, prec)
        ap[k] = ap_allpoint(rec, prec)
    return VocResult(ap07, ap, npos)
