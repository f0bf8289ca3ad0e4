"""COCO bbox evaluation, equal to pycocotools' `COCOeval(...).stats` to within 1e-12.

match -> accumulate -> summarize, pure functions over flat arrays. pycocotools loops in Python over
(image, class, area range, threshold, detection, ground truth); here the loops that carry state
run over the detection's rank inside its (image, class) group and over classes, everything else
is bulk numpy across all groups at once.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from detect.metrics.arrays import GroundTruth, Predictions

STAT_NAMES = [
    "AP",
    "AP50",
    "AP75",
    "APs",
    "APm",
    "APl",
    "AR1",
    "AR10",
    "AR100",
    "ARs",
    "ARm",
    "ARl",
]


@dataclass
class CocoParams:
    """pycocotools' bbox `Params`, built the same way so the floats are bit-identical."""

    # np.linspace as pycocotools makes them: AP75 selects `iouThrs == 0.75` exactly
    iou_thrs: np.ndarray = field(
        default_factory=lambda: np.linspace(0.5, 0.95, int(np.round((0.95 - 0.5) / 0.05)) + 1)
    )
    rec_thrs: np.ndarray = field(
        default_factory=lambda: np.linspace(0.0, 1.00, int(np.round((1.00 - 0.0) / 0.01)) + 1)
    )
    max_dets: tuple[int, ...] = (1, 10, 100)  # per image per class
    # inclusive [lo, hi] on the GT `area` field / detection w*h: all, small, medium, large
    area_rng: tuple[tuple[float, float], ...] = (
        (0**2, 1e5**2),
        (0**2, 32**2),
        (32**2, 96**2),
        (96**2, 1e5**2),
    )


@dataclass
class CocoMatch:
    """Greedy matching of the top max_dets[-1] detections per (image, class) group.

    Detections are the kept ones (`det`, an index into Predictions), in group/score order.
    """

    det: np.ndarray  # int64 [D] index into Predictions
    rank: np.ndarray  # int64 [D] rank by score inside its (image, class) group
    # int8 [D, A, T] at (area range, IoU threshold): 0 unmatched, 1 matched to a counted GT (a
    # true positive), 2 matched to an ignored GT (crowd, out of the area range, difficult)
    state: np.ndarray
    out_of_range: np.ndarray  # bool [A, D] detection area outside the area range
    npig: np.ndarray  # int64 [K, A] GT boxes not ignored, per class and area range
    score_rank: np.ndarray  # int64 [D] dense rank of decreasing score (equal scores, equal rank)

    # (detection [P], GT [P], IoU floor, every detection kept): the same-group pairs with COCO
    # IoU >= the floor, grouped by detection, GT in file order; VOC re-uses them
    pairs: tuple | None = field(default=None, repr=False)
    _class_order: np.ndarray | None = field(default=None, repr=False)

    @property
    def matched(self) -> np.ndarray:
        """bool [A, T, D] matched to a GT at (area range, IoU threshold)."""
        return (self.state > 0).transpose(1, 2, 0)

    @property
    def matched_ignored(self) -> np.ndarray:
        """bool [A, T, D] matched, and that GT is ignored."""
        return (self.state == 2).transpose(1, 2, 0)

    def class_order(self, pr: Predictions) -> np.ndarray:
        """int64 [D]: the kept detections by class, then decreasing score, ties in (image,
        rank) order: COCOeval.accumulate's order. Computed once (accumulate, operating points
        and the bootstrap share it)."""
        if self._class_order is None:
            cls = pr.classes[self.det]
            key = cls * (int(self.score_rank.max(initial=0)) + 1) + self.score_rank
            self._class_order = stable_argsort(key)
        return self._class_order


@dataclass
class CocoResult:
    precision: np.ndarray  # float64 [T, R, K, A, M], -1 where a class has no GT
    recall: np.ndarray  # float64 [T, K, A, M]
    stats: np.ndarray  # float64 [12] = COCOeval.stats
    params: CocoParams

    def per_class_ap(self) -> tuple[np.ndarray, np.ndarray]:
        """(AP50-95 [K], AP50 [K]) per class, area all, 100 dets; -1 for a class without GT."""
        p = self.precision[:, :, :, 0, -1]  # [T,R,K]
        t50 = np.where(self.params.iou_thrs == 0.5)[0]
        return _masked_mean(p, axis=(0, 1)), _masked_mean(p[t50], axis=(0, 1))


def _masked_mean(s: np.ndarray, axis) -> np.ndarray:
    valid = s > -1
    n = valid.sum(axis=axis)
    tot = np.where(valid, s, 0.0).sum(axis=axis)
    return np.where(n > 0, tot / np.maximum(n, 1), -1.0)


def box_iou_xywh(d: np.ndarray, g: np.ndarray, crowd: np.ndarray) -> np.ndarray:
    """IoU of paired boxes, as pycocotools' `maskApi.c` bbIou computes it, op for op.

    Args:
        d: float64 [P, 4] detections (x, y, w, h). g: float64 [P, 4] ground truth, same layout.
        crowd: bool [P] ground truth is a crowd region (union = detection area).
    Returns:
        float64 [P]: row i is the IoU of d[i] and g[i]; 0 when they do not overlap.
    """
    w = np.minimum(d[:, 2] + d[:, 0], g[:, 2] + g[:, 0]) - np.maximum(d[:, 0], g[:, 0])
    h = np.minimum(d[:, 3] + d[:, 1], g[:, 3] + g[:, 1]) - np.maximum(d[:, 1], g[:, 1])
    ok = (w > 0) & (h > 0)
    out = np.zeros(len(d))
    i = w[ok] * h[ok]
    da = d[ok, 2] * d[ok, 3]
    ga = g[ok, 2] * g[ok, 3]
    u = np.where(crowd[ok], da, da + ga - i)
    out[ok] = i / u
    return out


def stable_argsort(key: np.ndarray) -> np.ndarray:
    """argsort(key, kind="stable") for non-negative int keys, made unique with the position so
    numpy's (faster) quicksort gives the same order; stable sort if that could overflow."""
    n = len(key)
    if n == 0 or int(key.max()) >= (2**62) // max(n, 1):
        return np.argsort(key, kind="stable")
    return np.argsort(key * n + np.arange(n))


def _segments(key: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Starts [S] of runs of equal values in a sorted key, and the run id [N] of each element."""
    first = np.ones(len(key), bool)
    first[1:] = key[1:] != key[:-1]
    return np.flatnonzero(first), np.cumsum(first) - 1


def group_ranges(
    key_sorted: np.ndarray, query: np.ndarray, n_keys: int
) -> tuple[np.ndarray, np.ndarray]:
    """(start [Q], count [Q]) of each query's run in `key_sorted` (non-negative int keys below
    `n_keys`): searchsorted left and right, by a table lookup when the key space is small."""
    if n_keys <= 4 * (len(query) + len(key_sorted)) + 1_000_000:
        counts = np.bincount(key_sorted, minlength=n_keys)
        starts = np.cumsum(counts) - counts
        return starts[query], counts[query]
    lo = np.searchsorted(key_sorted, query, "left")
    return lo, np.searchsorted(key_sorted, query, "right") - lo


def _first_max(v: np.ndarray, starts: np.ndarray, seg: np.ndarray) -> tuple[np.ndarray, ...]:
    """Per segment of `v` (starts, seg as _segments gives): the max and the position of its
    first occurrence (np.argmax's choice)."""
    mx = np.maximum.reduceat(v, starts)
    hit = np.flatnonzero(v == mx[seg])
    first = hit[np.r_[True, seg[hit][1:] != seg[hit][:-1]]]
    return mx, first


def match(gt: GroundTruth, pr: Predictions, params: CocoParams | None = None) -> CocoMatch:
    """Greedy COCO matching for every (area range, IoU threshold) at once.

    Per (image, class): detections sorted by score (stable), truncated to max_dets[-1]; each in
    turn takes the GT with the highest IoU >= threshold among those not yet taken (crowd GT can be
    taken again), preferring non-ignored GT, ties to the later GT, as pycocotools' evaluateImg.
    """
    p = params or CocoParams()
    C, A, T = gt.num_classes, len(p.area_rng), len(p.iou_thrs)
    rank_img = gt.image_rank()
    lo = np.array([a[0] for a in p.area_rng])[:, None]  # [A,1]
    hi = np.array([a[1] for a in p.area_rng])[:, None]

    # ground truth grouped by (image, class), stable: keeps file order inside a group
    gkey = rank_img[gt.image] * C + gt.classes  # [G]
    gorder = np.argsort(gkey, kind="stable")
    gkey_s = gkey[gorder]
    ignore = gt.iscrowd | gt.difficult
    gt_ig = ignore[None] | (gt.area[None] < lo) | (gt.area[None] > hi)  # [A,G]
    npig = np.zeros((C, A), np.int64)
    for a in range(A):
        npig[:, a] = np.bincount(gt.classes[~gt_ig[a]], minlength=C)

    # detections grouped by (image, class), by decreasing score, stable; top max_dets[-1] kept
    dkey = rank_img[pr.image] * C + pr.classes
    srank = pr.score_rank()
    dorder = stable_argsort(dkey * (srank.max(initial=0) + 1) + srank)
    starts, gid = _segments(dkey[dorder])
    rank = np.arange(len(dorder)) - starts[gid]
    keep = rank < p.max_dets[-1]
    det, rank, dkey_k = dorder[keep], rank[keep], dkey[dorder][keep]
    srank = srank[det]
    D = len(det)
    dxywh = pr.xywh[det]
    darea = dxywh[:, 2] * dxywh[:, 3]
    out_of_range = (darea[None] < lo) | (darea[None] > hi)  # [A,D]

    # every (detection, GT) pair of the same group
    g_lo, cnt = group_ranges(gkey_s, dkey_k, gt.num_images * C)  # [D] GT of the group
    pair_det = np.repeat(np.arange(D), cnt)  # [P]
    off = np.arange(len(pair_det)) - np.repeat(np.cumsum(cnt) - cnt, cnt)
    pair_pos = np.repeat(g_lo, cnt) + off  # position in gorder: file order inside the group
    pair_gt = gorder[pair_pos]
    iou = box_iou_xywh(dxywh[pair_det], gt.xywh[pair_gt], gt.iscrowd[pair_gt])
    thr = np.minimum(p.iou_thrs, 1 - 1e-10)  # [T]
    # a pair below every threshold never matches; the 1e-9 margin keeps every pair whose IoU
    # by another formula (VOC's corners) could reach it: VOC re-uses these pairs (pairs_50)
    sel = iou >= thr.min() - 1e-9
    pair_det, pair_pos, pair_gt, iou = pair_det[sel], pair_pos[sel], pair_gt[sel], iou[sel]
    pairs = (det[pair_det], pair_gt, float(thr.min() - 1e-9), len(pr) == D)

    # order pairs by (det rank, det, iou, gt position): q ranks a det's candidates so that the
    # max of q over eligible ones is pycocotools' pick (highest IoU, ties -> later GT)
    o = np.argsort(iou, kind="stable")  # pairs come ordered by (det, gt position)
    o = o[np.argsort(pair_det[o], kind="stable")]
    pair_det, pair_gt, iou = pair_det[o], pair_gt[o], iou[o]
    pstart, pseg = _segments(pair_det)
    q = (np.arange(len(pair_det)) - pstart[pseg] + 1).astype(np.int32)
    small = np.int16 if p.max_dets[-1] < 2**15 else np.int64  # int16: numpy radix-sorts it
    o = np.argsort(rank[pair_det].astype(small), kind="stable")
    pair_det, pair_gt, iou, q = pair_det[o], pair_gt[o], iou[o], q[o]
    big = np.int32(len(pair_det) + 1)  # non-ignored GT first (int32: half the memory traffic)

    # detection-major state and GT-major "taken" flags: a detection's (or GT's) A*T flags are
    # contiguous, so the per-round gathers and scatters touch few cache lines
    AT = A * T
    state = np.zeros((D, AT), np.int8)
    G = len(gt.classes)
    taken = np.zeros((G, AT), bool)
    state_f, taken_f = state.reshape(-1), taken.reshape(-1)
    thr_at = np.tile(thr, A)  # [AT] the threshold of column a * T + t
    counted_gt = ~gt_ig.T  # [G,A]
    r_bounds = np.searchsorted(rank[pair_det], np.arange(p.max_dets[-1] + 1))
    for r in range(p.max_dets[-1]):
        s = slice(r_bounds[r], r_bounds[r + 1])
        if s.start == s.stop:
            continue
        pd, pg, pq = pair_det[s], pair_gt[s], q[s]
        seg_starts, seg = _segments(pd)
        ok = iou[s][:, None] >= thr_at[None, :]  # [n,AT]
        avail = ~taken[pg] | gt.iscrowd[pg][:, None]  # [n,AT]
        nonig = np.repeat(counted_gt[pg], T, axis=1)  # [n,AT]
        cand = ok & avail
        # a detection with one candidate GT (most) takes it wherever it can: whole rows at once
        # (in a round each group has one detection, so no two of them share a GT)
        single = np.diff(np.r_[seg_starts, len(pd)]) == 1
        one = seg_starts[single]
        if len(one):
            w1 = cand[one]
            taken[pg[one]] |= w1
            state[pd[one]] = w1.view(np.int8) * (2 - nonig[one].view(np.int8))  # 1 TP, 2 ign.
        multi = np.flatnonzero(~single[seg])  # pairs of detections with several candidates
        if len(multi):
            m_starts, m_seg = _segments(pd[multi])
            key = np.where(cand[multi], pq[multi, None] + nonig[multi] * big, 0)  # [n,AT]
            best = np.maximum.reduceat(key, m_starts, axis=0)  # [S,AT]
            win = (key == best[m_seg]) & (key > 0)
            j, at = np.divmod(np.flatnonzero(win), AT)
            taken_f[pg[multi[j]] * AT + at] = True
            state_f[pd[multi[j]] * AT + at] = np.where(nonig[multi[j], at], 1, 2)
    return CocoMatch(det, rank, state.reshape(D, A, T), out_of_range, npig, srank, pairs=pairs)


def recall_counts(npig: np.ndarray, rec_thrs: np.ndarray) -> np.ndarray:
    """int64 [..., R]: for each GT count n and recall threshold r, the least TP count c with
    fl(c / n) >= r. pycocotools' searchsorted(tp / n, r, 'left') lands on the c-th TP, so the
    per-detection recall array is never needed. Entries for n == 0 are meaningless."""
    n = np.maximum(npig, 1)[..., None].astype(np.float64)
    c = np.maximum(np.ceil(rec_thrs * n).astype(np.int64) - 2, 0)  # at most 2 below the answer
    for _ in range(4):  # monotone: step up while c / n is still below r
        c = np.where(c / n < rec_thrs, c + 1, c)
    return c


def accumulate(
    gt: GroundTruth,
    pr: Predictions,
    m: CocoMatch,
    params: CocoParams | None = None,
    precision_for: tuple[int, ...] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Precision [T, R, K, A, M] at the recall thresholds and recall [T, K, A, M], as
    COCOeval.accumulate: per class, detections of all images by decreasing score (stable over
    image order then rank), ignored ones neither TP nor FP, interpolated precision envelope.

    `precision_for`: the max_dets whose precision is computed (default: all, as pycocotools);
    the others are NaN. COCOeval.stats reads precision at max_dets[-1] only, so evaluate()
    asks for that one and skips 2/3 of the work; recall is always complete.

    Only true positives matter: the envelope at the first detection reaching recall r is the
    max precision over the TPs from the c-th on (precision only rises at a TP), so everything
    is computed on the TP entries of every (area, threshold, class) at once.
    """
    p = params or CocoParams()
    K, A, T = gt.num_classes, len(p.area_rng), len(p.iou_thrs)
    R, M = len(p.rec_thrs), len(p.max_dets)
    precision = -np.ones((T, R, K, A, M))
    recall = -np.ones((T, K, A, M))
    has_gt = (m.npig > 0).T  # [A,K]
    need = recall_counts(m.npig.T, p.rec_thrs)  # [A,K,R]

    # per class by decreasing score; m.det is in (image, class, rank) order, so a stable sort
    # leaves ties in image then rank order, as pycocotools' concatenation + mergesort
    order = m.class_order(pr)
    cls_s, rank_s = pr.classes[m.det][order], m.rank[order]
    # "hot" detections are matched at some (area, threshold); the others (most of them) are a
    # FP wherever their area is in range, the same for every threshold: counted per area only
    hot_s = m.state.any(axis=(1, 2))[order]
    H_all = np.flatnonzero(hot_s)  # positions of hot detections in `order`
    dh = order[H_all]
    sh = m.state[dh].transpose(1, 2, 0)  # [A,T,h]
    mt = sh > 0
    tp_all = sh == 1  # [A,T,h]
    nig_all = tp_all | (~mt & ~m.out_of_range[:, None, dh])  # not ignored
    cold_all = ~m.out_of_range[:, order] & ~hot_s  # [A,D] cold and not ignored
    eps = np.spacing(1)
    for mi, max_det in enumerate(p.max_dets):
        if max_det >= p.max_dets[-1]:  # match() kept exactly these
            c, H, tp, nig, cold = cls_s, H_all, tp_all, nig_all, cold_all
        else:
            sel = rank_s < max_det
            new_pos = np.cumsum(sel) - 1
            hsel = sel[H_all]
            c, H = cls_s[sel], new_pos[H_all[hsel]]
            tp, nig, cold = tp_all[:, :, hsel], nig_all[:, :, hsel], cold_all[:, sel]
        if precision_for is not None and max_det not in precision_for:
            # recall only: TP count per (area, threshold, class)
            at, jh = np.divmod(np.flatnonzero(tp), max(len(H), 1))
            ntp = np.bincount(at * K + c[H[jh]], minlength=A * T * K).reshape(A, T, K)
            precision[:, :, :, :, mi] = np.nan
            rc = np.where(has_gt[:, None, :], ntp / np.maximum(m.npig.T, 1)[:, None, :], -1.0)
            recall[:, :, :, mi] = rc.transpose(1, 2, 0)
            continue
        n = len(c)
        bounds = np.searchsorted(c, np.arange(K + 1))  # class segments
        ccold = np.zeros((A, n + 1), np.int32)  # running count of cold non-ignored
        np.cumsum(cold, axis=1, out=ccold[:, 1:])
        ctp = np.zeros((A, T, len(H) + 1), np.int32)
        cng = np.zeros((A, T, len(H) + 1), np.int32)
        np.cumsum(tp, axis=2, out=ctp[:, :, 1:])
        np.cumsum(nig, axis=2, out=cng[:, :, 1:])
        hb = np.searchsorted(H, bounds)  # class segments among hot detections
        ntp = ctp[:, :, hb[1:]] - ctp[:, :, hb[:-1]]  # [A,T,K]
        # TP entries, ordered by (a, t, class, score order); flat indices into the counts
        h = len(H)
        flat = np.flatnonzero(tp)
        at, jh = np.divmod(flat, max(h, 1))  # at = a * T + t
        a_ = at // T
        j = H[jh]
        k = c[j]
        i1, i0 = at * (h + 1) + jh + 1, at * (h + 1) + hb[k]
        c1, c0 = a_ * (n + 1) + j + 1, a_ * (n + 1) + bounds[k]
        ctp_f, cng_f, ccold_f = ctp.reshape(-1), cng.reshape(-1), ccold.reshape(-1)
        v = ctp_f[i1] - ctp_f[i0]  # 1-based TP count in its (a, t, class) segment
        nonig = cng_f[i1] - cng_f[i0] + ccold_f[c1] - ccold_f[c0]  # not ignored up to it
        f = nonig - v  # FPs up to this TP
        vf = v.astype(np.float64)
        prec = vf / (f.astype(np.float64) + vf + eps)
        # one padded block [A*T, L_k] per class for the envelope (max from each TP onwards)
        L = ntp.max(axis=(0, 1))  # [K]
        off = np.concatenate([[0], np.cumsum(A * T * L)])
        env = np.zeros(off[-1])
        env[off[k] + at * L[k] + v - 1] = prec
        for kk in np.flatnonzero(L):
            blk = env[off[kk] : off[kk + 1]].reshape(A * T, L[kk])
            blk[:] = np.maximum.accumulate(blk[:, ::-1], axis=1)[:, ::-1]
        # precision at recall r: envelope at the need-th TP (the first for r = 0), else 0
        nd = need[:, None, :, :]  # [A,1,K,R]
        have = ntp[:, :, :, None]  # [A,T,K,1]
        ok = (nd <= have) & (have > 0)
        rows = (np.arange(A)[:, None] * T + np.arange(T)[None, :])[:, :, None, None]
        idx = off[:-1][None, None, :, None] + rows * L[None, None, :, None] + np.maximum(nd, 1) - 1
        q = np.where(ok, env[np.where(ok, idx, 0)] if len(env) else 0.0, 0.0)  # [A,T,K,R]
        q = np.where(has_gt[:, None, :, None], q, -1.0)
        precision[:, :, :, :, mi] = q.transpose(1, 3, 2, 0)
        rc = np.where(has_gt[:, None, :], ntp / np.maximum(m.npig.T, 1)[:, None, :], -1.0)
        recall[:, :, :, mi] = rc.transpose(1, 2, 0)
    return precision, recall


def summarize(
    precision: np.ndarray, recall: np.ndarray, params: CocoParams | None = None
) -> np.ndarray:
    """The 12 numbers of COCOeval.summarize (bbox), -1 where nothing is defined."""
    p = params or CocoParams()
    labels = ["all", "small", "medium", "large"]

    def one(ap: bool, iou_thr=None, area="all", max_dets=100) -> float:
        a = labels.index(area)
        mi = list(p.max_dets).index(max_dets)
        if ap:
            s = precision
            if iou_thr is not None:
                s = s[np.where(iou_thr == p.iou_thrs)[0]]
            s = s[:, :, :, a, mi]
        else:
            s = recall
            if iou_thr is not None:
                s = s[np.where(iou_thr == p.iou_thrs)[0]]
            s = s[:, :, a, mi]
        v = s[s > -1]
        return -1.0 if len(v) == 0 else float(np.mean(v))

    md = p.max_dets
    return np.array(
        [
            one(True, max_dets=md[2]),
            one(True, iou_thr=0.5, max_dets=md[2]),
            one(True, iou_thr=0.75, max_dets=md[2]),
            one(True, area="small", max_dets=md[2]),
            one(True, area="medium", max_dets=md[2]),
            one(True, area="large", max_dets=md[2]),
            one(False, max_dets=md[0]),
            one(False, max_dets=md[1]),
            one(False, max_dets=md[2]),
            one(False, area="small", max_dets=md[2]),
            one(False, area="medium", max_dets=md[2]),
            one(False, area="large", max_dets=md[2]),
        ]
    )


def evaluate_coco(gt: GroundTruth, pr: Predictions, params: CocoParams | None = None) -> CocoResult:
    """match -> accumulate -> summarize."""
    p = params or CocoParams()
    m = match(gt, pr, p)
    precision, recall = accumulate(gt, pr, m, p)
    return CocoResult(precision, recall, summarize(precision, recall, p), p)
