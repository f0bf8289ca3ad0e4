"""TIDE error breakdown for boxes (Bolya et al., "TIDE: A General Toolbox for Identifying Object
Detection Errors", ECCV 2020), in numpy, rule for rule as the authors' `tidecv` 1.0.1 package.

Every false positive gets one error type and every missed GT may get one; each main error's dAP
is the AP gained when only the errors of that type are fixed (an oracle), against the AP of
the detections as they are. All APs here are TIDE's: IoU >= `pos_thr` (0.5), 101 recall points.

Rules (tidecv's `TIDEExample`, `TIDERun._eval_image`, `errors/*.py`, `ap.py`):
- per image, the `max_dets` (100) best-scored detections of all classes are kept (ties: file
  order); crowd and VOC `difficult` GT are "ignore regions", every other GT is a positive.
- matching: detections in that order each take the not yet taken GT of their class with the
  highest IoU (first GT on ties), if IoU >= pos_thr; an unmatched detection whose crowd IoU
  (intersection / detection area) with an ignore region of its class is > pos_thr is ignored.
- each unmatched or ignored detection, first rule that applies: no GT in its image -> Bkg;
  max IoU with a GT of its class in [bg_thr, pos_thr] -> Loc (that GT); max IoU with a GT of
  another class >= pos_thr -> Cls (that GT); max IoU with an already matched GT of its class
  >= pos_thr -> Dupe; max IoU with any GT <= bg_thr -> Bkg; else Both.
- fixing Cls / Loc turns the best-scored error pointing at an unmatched GT into a true positive
  (Cls: in the GT's class) and removes the others; fixing Dupe / Bkg / Both removes those
  detections; fixing Miss removes the unmatched GT that no Cls / Loc error points at.
- the special errors: FalsePos = every true positive scored 1 and every false positive 0 (perfect
  precision, same recall); FalseNeg = the unmatched GT removed (perfect recall).
- AP per class: the precision envelope read at recall 0, 0.01, ..., 1 (searchsorted left) and
  averaged; a class with detections but no GT scores 0 and counts in the mean (a choice of
  tidecv that COCO does not make); main dAP below 0 is reported as 0 (tidecv clips it).
- tie order when sorting by score: as tidecv pushes its data points (image order, then score
  order in the image, then file order; in a fixed AP the error points come before the true
  positives of equal score).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from detect.metrics.arrays import GroundTruth, Predictions
from detect.metrics.coco import (
    _first_max,
    _segments,
    box_iou_xywh,
    group_ranges,
    recall_counts,
    stable_argsort,
)

MAIN_ERRORS = ("cls", "loc", "both", "dupe", "bkg", "miss")
SPECIAL_ERRORS = ("fp", "fn")
# tidecv's short names, for tables
ERROR_NAMES = {
    "cls": "Cls",
    "loc": "Loc",
    "both": "Both",
    "dupe": "Dupe",
    "bkg": "Bkg",
    "miss": "Miss",
    "fp": "FalsePos",
    "fn": "FalseNeg",
}
_REC_THRS = np.arange(101) / 100  # as tidecv's [x / 100 for x in range(101)]


@dataclass
class TideResult:
    """TIDE's AP and error breakdown for one prediction set; APs are fractions (tidecv prints
    them x100)."""

    ap: float  # TIDE's AP@pos_thr over 101 recall points, -1 without any GT or detection
    dap: dict[str, float]  # error -> dAP (MAIN_ERRORS clipped at 0, then SPECIAL_ERRORS)
    counts: dict[str, int]  # error -> how many (fp / fn: false positives / unmatched GT)
    pos_thr: float = 0.5
    bg_thr: float = 0.1

    def to_json(self) -> dict:
        return {
            "AP50": self.ap,
            "dAP": dict(self.dap),
            "count": dict(self.counts),
            "pos_threshold": self.pos_thr,
            "background_threshold": self.bg_thr,
        }


def _mean_ap(cls: np.ndarray, tp: np.ndarray, npos: np.ndarray, present: np.ndarray) -> float:
    """tidecv's ClassedAPDataObject.get_mAP over points given in their within-class order.

    Args:
        cls: int64 [N] class of each point. tp: bool [N] true positive.
        npos: int64 [K] GT positives per class. present: bool [K] the class has an AP object.
    Returns:
        mean AP (fraction) over present classes with points or positives; NaN if none (tidecv
        divides by zero there).
    """
    K = len(npos)
    small = np.uint16 if K < 2**16 else np.int64  # 16-bit keys: numpy radix-sorts them
    o = np.argsort(cls.astype(small), kind="stable")
    c, t = cls[o], tp[o]
    bounds = np.searchsorted(c, np.arange(K + 1))
    n_points = np.diff(bounds)
    ti = np.flatnonzero(t)  # TP positions, by class then order
    k = c[ti]
    tb = np.searchsorted(k, np.arange(K + 1))  # class segments among TPs
    ntp = np.diff(tb)
    v = np.arange(len(ti)) - tb[k] + 1  # 1-based TP count in its class
    prec = v / (ti - bounds[k] + 1)  # num_true / (num_true + num_false), as tidecv
    for kk in np.flatnonzero(ntp > 1):  # the envelope: max precision from each TP on
        s = slice(tb[kk], tb[kk + 1])
        prec[s] = np.maximum.accumulate(prec[s][::-1])[::-1]
    need = recall_counts(npos, _REC_THRS)  # [K,R] least TP count reaching each recall
    ok = (need <= ntp[:, None]) & (ntp[:, None] > 0)
    idx = np.where(ok, tb[:-1, None] + np.maximum(need, 1) - 1, 0)
    y = np.where(ok, prec[idx] if len(prec) else 0.0, 0.0)  # [K,R]
    ap = np.where(npos > 0, y.sum(axis=1) / len(_REC_THRS), 0.0)
    use = present & ((n_points > 0) | (npos > 0))
    return float(ap[use].mean()) if use.any() else float("nan")


def evaluate_tide(
    gt: GroundTruth,
    pr: Predictions,
    pos_thr: float = 0.5,
    bg_thr: float = 0.1,
    max_dets: int = 100,
) -> TideResult:
    """TIDE's AP and the dAP of its six main and two special error types (module docstring).

    Args:
        gt: ground truth (float64 xywh pixels; crowd and difficult GT are ignore regions).
        pr: detections (float64 xywh pixels), on images of `gt`.
        pos_thr: foreground IoU (TIDE: 0.5). bg_thr: background IoU (TIDE: 0.1).
        max_dets: detections kept per image, all classes together (tidecv: 100).
    Returns:
        TideResult; APs as fractions, counts as ints. Images are taken in `gt` order (tidecv's
        order of its images: the tie order of equal scores across images).
    """
    K = gt.num_classes
    ign = gt.iscrowd | gt.difficult
    # processing order: per image, decreasing score, file order on ties; top max_dets per image
    srank = pr.score_rank()
    S = int(srank.max(initial=0)) + 1
    order = stable_argsort(pr.image * S + srank)
    starts, seg = _segments(pr.image[order])
    d = order[np.arange(len(order)) - starts[seg] < max_dets]
    D = len(d)
    dimg, dcls, dsr, dbox = pr.image[d], pr.classes[d], srank[d], pr.xywh[d]

    # every (detection, positive GT of its image) pair, GT in file order inside the image
    pos_gt = np.flatnonzero(~ign)
    go = pos_gt[np.argsort(gt.image[pos_gt], kind="stable")]
    gimg = gt.image[go]
    g_lo, cnt = group_ranges(gimg, dimg, gt.num_images)  # [D] positive GT in the image
    pstart = np.cumsum(cnt) - cnt
    pair_d = np.repeat(np.arange(D), cnt)
    pair_g = go[np.repeat(g_lo - pstart, cnt) + np.arange(len(pair_d))]
    iou = box_iou_xywh(dbox[pair_d], gt.xywh[pair_g], np.zeros(len(pair_d), bool))
    same = dcls[pair_d] == gt.classes[pair_g]

    # greedy matching, one round per rank of the detection in its (image, class) group
    grp = stable_argsort(dimg * K + dcls)  # processing order kept inside each group
    gs, gseg = _segments((dimg * K + dcls)[grp])
    rank = np.empty(D, np.int64)
    rank[grp] = np.arange(D) - gs[gseg]
    cand = np.flatnonzero(same & (iou >= pos_thr))
    cand = cand[np.argsort(rank[pair_d[cand]], kind="stable")]
    c_rank = rank[pair_d[cand]]
    G = len(gt.classes)
    taken = np.zeros(G, bool)
    match_gt = np.full(D, -1, np.int64)
    rb = np.searchsorted(c_rank, np.arange(int(c_rank.max(initial=-1)) + 2))
    for r in range(len(rb) - 1):
        s = cand[rb[r] : rb[r + 1]]
        s = s[~taken[pair_g[s]]]
        if len(s) == 0:
            continue
        st, sseg = _segments(pair_d[s])
        _, first = _first_max(iou[s], st, sseg)
        taken[pair_g[s[first]]] = True
        match_gt[pair_d[s[first]]] = pair_g[s[first]]
    used = match_gt >= 0

    # unmatched detections inside an ignore region of their class (crowd IoU > pos_thr)
    ignored = np.zeros(D, bool)
    ig_gt = np.flatnonzero(ign)
    if len(ig_gt):
        io = ig_gt[np.argsort(gt.image[ig_gt], kind="stable")]
        iimg = gt.image[io]
        lo = np.searchsorted(iimg, dimg, "left")
        n = np.searchsorted(iimg, dimg, "right") - lo
        qd = np.repeat(np.arange(D), n)
        qg = io[np.repeat(lo - (np.cumsum(n) - n), n) + np.arange(len(qd))]
        keep = ~used[qd] & (dcls[qd] == gt.classes[qg])
        qd, qg = qd[keep], qg[keep]
        ciou = box_iou_xywh(dbox[qd], gt.xywh[qg], np.ones(len(qd), bool))
        ignored[qd[ciou > pos_thr]] = True

    # error type of each unmatched or ignored detection
    err = np.full(D, -1, np.int8)  # index into MAIN_ERRORS; -1: a true positive
    target = np.full(D, -1, np.int64)  # the GT a Cls / Loc error points at
    fp = ~used
    err[fp & (cnt == 0)] = MAIN_ERRORS.index("bkg")
    if len(pair_d):
        dd = np.flatnonzero(cnt > 0)  # one pair segment per detection with GT in its image
        ps, pseg = pstart[dd], np.repeat(np.arange(len(dd)), cnt[dd])
        m_cls, f_cls = _first_max(np.where(same, iou, 0.0), ps, pseg)
        m_non, f_non = _first_max(np.where(same, 0.0, iou), ps, pseg)
        m_dup = np.maximum.reduceat(np.where(same & taken[pair_g], iou, 0.0), ps)
        m_all = np.maximum.reduceat(iou, ps)
        rest = fp[dd]
        e = np.full(len(dd), -1, np.int8)
        for name, hit, tgt in (
            ("loc", (bg_thr <= m_cls) & (m_cls <= pos_thr), f_cls),
            ("cls", m_non >= pos_thr, f_non),
            ("dupe", m_dup >= pos_thr, None),
            ("bkg", m_all <= bg_thr, None),
            ("both", np.ones(len(dd), bool), None),
        ):
            h = rest & hit
            e[h] = MAIN_ERRORS.index(name)
            if tgt is not None:
                target[dd[h]] = pair_g[tgt[h]]
            rest &= ~hit
        err[dd[fp[dd]]] = e[fp[dd]]

    # Cls / Loc errors at an unmatched GT: the first one (= best scored: processing order is by
    # score inside an image) is the one its fix turns into a true positive
    fixable = (target >= 0) & ~np.append(taken, True)[target]  # target -1: the appended
    fx = np.flatnonzero(fixable)
    _, first = np.unique(target[fx], return_index=True)
    best = np.zeros(D, bool)
    best[fx[first]] = True
    usable = np.zeros(G, bool)
    usable[target[fx]] = True
    missed = ~ign & ~taken & ~usable  # GT no fix can reach

    # AP points. base: not ignored detections in (score, processing) order; fixed variants: by
    # (score, error before true positive, processing order)
    npos = np.bincount(gt.classes[~ign], minlength=K)
    present = (npos > 0) | (np.bincount(dcls[~ignored], minlength=K) > 0)
    base = stable_argsort(dsr)
    base = base[~ignored[base]]
    base_ap = _mean_ap(dcls[base], used[base], npos, present)

    fixed_order = stable_argsort(dsr * 2 + used)
    f_cls, f_used, f_err = dcls[fixed_order], used[fixed_order], err[fixed_order]
    f_ign, f_best = ignored[fixed_order], best[fixed_order]
    f_tcls = np.append(gt.classes, 0)[target[fixed_order]]
    dap: dict[str, float] = {}
    counts: dict[str, int] = {}
    for i, name in enumerate(MAIN_ERRORS):
        counts[name] = int(missed.sum()) if name == "miss" else int((err == i).sum())
        this = f_err == i
        keep = ~f_ign & ~this  # originals: true positives and not ignored false positives
        cls_v, tp_v, npos_v = f_cls.copy(), f_used.copy(), npos
        if name in ("cls", "loc"):
            fixed = this & f_best
            keep |= fixed
            tp_v[fixed] = True
            if name == "cls":
                cls_v[fixed] = f_tcls[fixed]
        elif name == "miss":
            npos_v = npos - np.bincount(gt.classes[missed], minlength=K)
        ap = _mean_ap(cls_v[keep], tp_v[keep], npos_v, present)
        dap[name] = max(ap - base_ap, 0.0) if ap == ap else 0.0  # NaN: nothing left to score
    keep = ~f_ign
    tp_first = np.argsort(~f_used[keep], kind="stable")  # FalsePos: TPs scored 1, FPs 0
    unmatched = np.bincount(gt.classes[~ign & ~taken], minlength=K)
    for name, ap in (
        ("fp", _mean_ap(f_cls[keep][tp_first], f_used[keep][tp_first], npos, present)),
        ("fn", _mean_ap(f_cls[keep], f_used[keep], npos - unmatched, present)),
    ):
        dap[name] = ap - base_ap if ap == ap else 0.0
    if base_ap != base_ap:  # no GT and no detection at all
        base_ap, dap = -1.0, dict.fromkeys(dap, 0.0)
    counts["fp"] = int((fp & ~ignored).sum())
    counts["fn"] = int(unmatched.sum())
    return TideResult(base_ap, dap, counts, pos_thr, bg_thr)
