"""Operating points: which confidence threshold to deploy at.

From the detections and matches behind COCO's AP50 (IoU 0.5, all areas, the best 100 per image
and class; detections matched to crowd / difficult GT are neither right nor wrong), for each
confidence threshold c (keep the detections with score >= c, as `detect predict --conf c`):
precision P = TP / kept, recall R = TP / GT, F1 = 2PR / (P + R). With nothing kept P, R and F1
are 0: a class that found nothing has no precision to its credit (as ultralytics counts it), one
definition for `detect evaluate`'s table, the training table and "all" (issue 26; before, P was
1 there, which put the mean P over all classes above every class's). Such a class's best-F1
`conf` is NaN: the tables flag it.

- per class: the c that maximises F1 (the highest such c on ties), with P, R, F1 there, as
  ultralytics' P / R columns (which read them off a smoothed 1000-point grid; here every
  distinct score is tried, exactly); and with `at_precision` p, the recall at the lowest c whose
  P >= p (the largest recall at that precision), c being the score of a detection.
- overall ("all"): one c for every class, the one maximising the mean F1 over the classes that
  have GT (ultralytics' rule), with the mean P, R, F1 there; and the lowest c whose mean P >= p.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from detect.metrics.arrays import GroundTruth, Predictions
from detect.metrics.coco import CocoMatch, CocoParams, _first_max


@dataclass
class OperatingPoints:
    """Per class arrays [K] (NaN where a class has no GT; conf NaN where no threshold applies)
    and the overall point; scores in the detections' own units."""

    conf: np.ndarray  # float64 [K] confidence of the best F1
    precision: np.ndarray  # float64 [K]
    recall: np.ndarray  # float64 [K]
    f1: np.ndarray  # float64 [K]
    all: dict  # {"conf", "precision", "recall", "f1"} for one threshold over all classes
    at_precision: float | None = None
    conf_at: np.ndarray | None = None  # float64 [K] lowest conf with precision >= at_precision
    recall_at: np.ndarray | None = None  # float64 [K] recall there (0 if never reached)
    all_at: dict | None = None  # {"conf", "precision", "recall"} with mean precision >= it

    def class_json(self, k: int) -> dict:
        d = {
            "conf": _num(self.conf[k]),
            "P": _num(self.precision[k]),
            "R": _num(self.recall[k]),
            "F1": _num(self.f1[k]),
        }
        if self.at_precision is not None:
            d["conf_at_P"] = _num(self.conf_at[k])
            d["R_at_P"] = _num(self.recall_at[k])
        return d

    def to_json(self) -> dict:
        d = {"all": {k: _num(v) for k, v in self.all.items()}}
        if self.at_precision is not None:
            d["at_precision"] = self.at_precision
            d["all_at_precision"] = {k: _num(v) for k, v in self.all_at.items()}
        return d


def _num(v) -> float | None:
    v = float(v)
    return None if v != v else v


def _f1(p: np.ndarray, r: np.ndarray) -> np.ndarray:
    s = p + r
    return np.where(s > 0, 2 * p * r / np.where(s > 0, s, 1), 0.0)


def operating_points(
    gt: GroundTruth,
    pr: Predictions,
    m: CocoMatch,
    params: CocoParams | None = None,
    at_precision: float | None = None,
) -> OperatingPoints:
    """Best-F1 thresholds per class and overall, and recall at a given precision (module doc).

    Args:
        gt, pr: the evaluated ground truth and detections. m: their COCO match (coco.match).
        at_precision: a precision in [0, 1], or None.
    Returns:
        OperatingPoints. Per-class entries of classes without GT are NaN.
    """
    p = params or CocoParams()
    K = gt.num_classes
    t50 = int(np.flatnonzero(p.iou_thrs == 0.5)[0])
    a_all = 0  # area range "all"
    st = m.state[:, a_all, t50]
    tp = st == 1
    fp = (st == 0) & ~m.out_of_range[a_all]
    cls = pr.classes[m.det]
    sr = m.score_rank
    npig = m.npig[:, a_all].astype(np.float64)  # [K]
    has = npig > 0
    nk = int(has.sum())
    # by class, then decreasing score; one entry per (class, distinct score): the counts of
    # everything scored at least that much (ties are kept or dropped together)
    o = m.class_order(pr)
    c, s = cls[o], sr[o]
    ctp = np.zeros(len(o) + 1, np.int32)  # counts before each position (ctp[0] = 0)
    cfp = np.zeros(len(o) + 1, np.int32)
    np.cumsum(tp[o], out=ctp[1:])
    np.cumsum(fp[o], out=cfp[1:])
    first_of = np.searchsorted(c, np.arange(K))  # class starts among the detections
    last = np.flatnonzero(np.r_[(c[1:] != c[:-1]) | (s[1:] != s[:-1]), True]) if len(o) else o
    counted = ctp + cfp
    last = last[counted[last + 1] > counted[np.r_[0, last[:-1] + 1]]]  # not only ignored ones
    c, s = c[last], s[last]
    cstart = np.searchsorted(c, np.arange(K + 1))  # class segments among the entries
    TP = (ctp[last + 1] - ctp[first_of[c]]).astype(np.float64)
    FP = (cfp[last + 1] - cfp[first_of[c]]).astype(np.float64)
    prec = np.where(TP + FP > 0, TP / np.maximum(TP + FP, 1), 1.0)
    rec = TP / np.maximum(npig[c], 1)
    f1v = _f1(prec, rec)
    score_of = np.zeros(int(sr.max(initial=-1)) + 1)
    score_of[sr] = pr.scores[m.det]

    conf = np.full(K, np.nan)
    best = {"precision": np.full(K, np.nan), "recall": np.full(K, np.nan), "f1": np.full(K, np.nan)}
    for name in best:
        best[name][has] = 0.0  # nothing kept
    nonempty = np.flatnonzero(np.diff(cstart) > 0)
    if len(nonempty):
        segid = np.repeat(np.arange(len(nonempty)), np.diff(cstart)[nonempty])
        _, first = _first_max(f1v, cstart[nonempty], segid)  # best F1, highest conf on ties
        ok = has[nonempty] & (f1v[first] > 0)
        kk, first = nonempty[ok], first[ok]
        conf[kk] = score_of[s[first]]
        best["precision"][kk], best["recall"][kk], best["f1"][kk] = (
            prec[first],
            rec[first],
            f1v[first],
        )

    # overall: sums over classes with GT as step functions of the threshold; each entry changes
    # its class's P / R / F1 at its score rank (np.bincount adds the changes per rank)
    U = len(score_of)
    g = has[c]
    prevP = np.where(np.r_[True, c[1:] != c[:-1]], 0.0, np.r_[0.0, prec[:-1]])
    prevR = np.where(np.r_[True, c[1:] != c[:-1]], 0.0, np.r_[0.0, rec[:-1]])
    prevF = np.where(np.r_[True, c[1:] != c[:-1]], 0.0, np.r_[0.0, f1v[:-1]])

    def curve(v, prev, start):
        return start + np.cumsum(np.bincount(s[g], weights=(v - prev)[g], minlength=U))

    overall = {"conf": np.nan, "precision": np.nan, "recall": np.nan, "f1": np.nan}
    sumP, sumR, sumF = curve(prec, prevP, 0.0), curve(rec, prevR, 0.0), curve(f1v, prevF, 0.0)
    if nk:
        overall.update(precision=0.0, recall=0.0, f1=0.0)
        if U and sumF.max() > 0:
            j = int(np.argmax(sumF))
            overall = {"conf": score_of[j], "precision": sumP[j] / nk,
                       "recall": sumR[j] / nk, "f1": sumF[j] / nk}  # fmt: skip
    res = OperatingPoints(conf, best["precision"], best["recall"], best["f1"], overall)
    if at_precision is None:
        return res

    res.at_precision = float(at_precision)
    res.conf_at = np.full(K, np.nan)
    res.recall_at = np.where(has, 0.0, np.nan)
    okp = (prec >= at_precision) & g & (rec > 0)
    if okp.any():
        e = np.flatnonzero(okp)
        # entries are by class then decreasing score: the last qualifying one of each class
        lastq = e[np.r_[c[e][1:] != c[e][:-1], True]]
        res.conf_at[c[lastq]] = score_of[s[lastq]]
        res.recall_at[c[lastq]] = rec[lastq]
    res.all_at = {"conf": np.nan, "precision": np.nan, "recall": np.nan}
    if nk:
        event = np.zeros(U, bool)
        event[s[g]] = True  # the sums change only there
        q = np.flatnonzero(event & (sumP / nk >= at_precision))
        if len(q) and sumR[q[-1]] > 0:
            j = int(q[-1])
            res.all_at = {"conf": score_of[j], "precision": sumP[j] / nk, "recall": sumR[j] / nk}
        else:
            res.all_at = {"conf": np.nan, "precision": 0.0, "recall": 0.0}
    return res
