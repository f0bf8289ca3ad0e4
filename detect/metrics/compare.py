"""Is model B better than model A? A paired bootstrap over images (Efron & Tibshirani 1993; the
paired form as in Koehn 2004's significance tests): draw the images with replacement, score every
prediction set on the same draw, and read the confidence interval of the mAP difference off the
draws' percentiles.

A draw re-uses each run's COCO matching (matching is per image, so it does not change when images
are repeated) and weights each detection and GT by how often its image was drawn; the AP is
COCO's (101 recall points, IoU 0.50:0.95 and 0.50, all areas, 100 detections), on the data set
in which every drawn image is repeated with its copies next to each other in score order. With
every weight 1 it is exactly COCO's AP and AP50.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from detect.metrics.arrays import GroundTruth, Predictions
from detect.metrics.coco import CocoMatch, CocoParams, recall_counts
from detect.metrics.evaluate import evaluate


class _Run:
    """One prediction set's matched detections, in the order COCO accumulates them."""

    def __init__(self, gt: GroundTruth, pr: Predictions, m: CocoMatch, p: CocoParams):
        K = gt.num_classes
        cls = pr.classes[m.det]
        o = m.class_order(pr)
        self.cls = cls[o]
        self.image = pr.image[m.det][o]
        st = m.state[o, 0, :].T  # [T,D] area "all"
        tp = st == 1
        counted = tp | ((st == 0) & ~m.out_of_range[0][o])  # not ignored
        self.bounds = np.searchsorted(self.cls, np.arange(K + 1))
        self.tp_pos = [np.flatnonzero(t) for t in tp]  # per threshold: TP positions
        # positions where the counted flag differs from "every detection counts"
        self.uncounted = [np.flatnonzero(~c) for c in counted]
        ig = gt.iscrowd | gt.difficult  # GT counted in area "all"
        self.gt_image, self.gt_cls = gt.image[~ig], gt.classes[~ig]
        self.K, self.T = K, len(p.iou_thrs)
        self.t50 = int(np.flatnonzero(p.iou_thrs == 0.5)[0])
        self.rec_thrs = p.rec_thrs

    def maps(self, w: np.ndarray) -> tuple[float, float]:
        """(mAP50-95, mAP50) with image weights w (int [I]); NaN without any GT drawn."""
        K = self.K
        npig = np.bincount(self.gt_cls, weights=w[self.gt_image], minlength=K)
        npig = np.rint(npig).astype(np.int64)
        has = npig > 0
        if not has.any():
            return float("nan"), float("nan")
        need = recall_counts(npig, self.rec_thrs)  # [K,R]
        wd = w[self.image].astype(np.int64)
        cum_all = np.cumsum(wd)  # counted weight up to each position, if all counted
        start = np.r_[0, cum_all][self.bounds[:-1]]  # [K] before each class
        ap = np.zeros((self.T, K))
        for t in range(self.T):
            pos = self.tp_pos[t]
            if len(pos) == 0:
                continue
            k = self.cls[pos]
            unc = self.uncounted[t]
            # counted weight up to each TP: all weight minus the ignored ones' before it
            n_unc = np.r_[0, np.cumsum(wd[unc])][np.searchsorted(unc, pos, "right")]
            unc_start = np.r_[0, np.cumsum(wd[unc])][np.searchsorted(unc, self.bounds[k])]
            n = cum_all[pos] - start[k] - (n_unc - unc_start)
            wt = wd[pos]
            tb = np.searchsorted(k, np.arange(K + 1))  # class segments among the TPs
            ctp = np.cumsum(wt)
            v = ctp - np.r_[0, ctp][tb[k]]  # TP weight up to and including each TP
            prec = v / (n + np.spacing(1))  # as pycocotools: tp / (fp + tp + eps)
            # envelope: max precision from each TP on, inside its class (segment offsets keep
            # classes apart; precision is in [0, 1])
            off = 2.0 * (K - k)
            env = np.maximum.accumulate((prec + off)[::-1])[::-1] - off
            # precision at recall r: the envelope at the first TP whose cumulated weight
            # reaches need (the first TP for r = 0), 0 if the class never gets there
            key = v + (k * (int(v.max()) + 2))
            q = np.maximum(need, 1) + (np.arange(K) * (int(v.max()) + 2))[:, None]  # [K,R]
            idx = np.searchsorted(key, q, "left")
            ntp = np.diff(np.r_[0, ctp][tb])  # [K] TP weight per class
            ok = (need <= ntp[:, None]) & (ntp[:, None] > 0)
            vals = np.where(ok, env[np.minimum(idx, len(env) - 1)], 0.0)
            ap[t] = vals.mean(axis=1)
        ap = ap[:, has]
        return float(ap.mean()), float(ap[self.t50].mean())


@dataclass
class Bootstrap:
    """Paired bootstrap of the mAP differences of each run against the first."""

    n: int
    seed: int
    confidence: float
    diff: np.ndarray  # float64 [runs, 2] observed (mAP50-95, mAP50) minus the first run's
    low: np.ndarray  # float64 [runs, 2] percentile interval of the difference
    high: np.ndarray
    p_not_better: np.ndarray  # float64 [runs, 2] share of draws where the difference <= 0

    def to_json(self, k: int) -> dict:
        """Run k's differences to run 0; null where undefined (no GT drawn, a -1 mAP)."""

        def f(v) -> float | None:
            return None if v != v else float(v)

        return {
            name: {
                "diff": f(self.diff[k, j]),
                "ci": [f(self.low[k, j]), f(self.high[k, j])],
                "p_not_better": f(self.p_not_better[k, j]),
            }
            for j, name in enumerate(("mAP50-95", "mAP50"))
        }


def paired_bootstrap(
    gt: GroundTruth,
    runs: list[tuple[Predictions, CocoMatch]],
    n: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
    params: CocoParams | None = None,
    callback=None,
) -> Bootstrap:
    """Confidence intervals of mAP50-95 and mAP50 differences (run i minus run 0) over `n`
    draws of the images with replacement (numpy's default_rng(seed)), every run on the same draw.

    Args:
        gt: the ground truth all runs were scored on. runs: (Predictions, their CocoMatch).
        callback: called as callback(done, n) after each draw.
    Returns:
        Bootstrap with percentile intervals at `confidence` (rows: runs; row 0 is all zeros).
    """
    p = params or CocoParams()
    rs = [_Run(gt, pr, m, p) for pr, m in runs]
    n_img = gt.num_images
    base = np.array([r.maps(np.ones(n_img, np.int64)) for r in rs])  # [runs, 2]
    rng = np.random.default_rng(seed)
    draws = np.full((n, len(rs), 2), np.nan)
    for b in range(n):
        w = np.bincount(rng.integers(0, n_img, n_img), minlength=n_img)
        draws[b] = [r.maps(w) for r in rs]
        if callback is not None:
            callback(b + 1, n)
    d = draws - draws[:, :1]  # [n, runs, 2]
    ok = ~np.isnan(d).any(axis=(1, 2))
    d = d[ok]
    a = (1 - confidence) / 2
    low = np.quantile(d, a, axis=0) if len(d) else np.full(base.shape, np.nan)
    high = np.quantile(d, 1 - a, axis=0) if len(d) else np.full(base.shape, np.nan)
    p_nb = (d <= 0).mean(axis=0) if len(d) else np.full(base.shape, np.nan)
    return Bootstrap(n, seed, confidence, base - base[:1], low, high, p_nb)


def _diff(v: float, base: float) -> float | None:
    """v - base; None where either is undefined (-1, as pycocotools marks it)."""
    return None if v < 0 or base < 0 else v - base


@dataclass
class Comparison:
    """Several prediction sets scored on one ground truth, the first being the baseline."""

    names: list[str]
    results: list  # list[EvalResult], one per name
    bootstrap: Bootstrap | None = None

    def to_json(self) -> dict:
        """{"runs": [each run's `detect evaluate --json` dict + "name"], "compare": [per run
        after the first: differences to the first (+ "bootstrap" when drawn)]}."""
        runs = [{"name": n, **r.to_json()} for n, r in zip(self.names, self.results, strict=True)]
        base = runs[0]
        compare = []
        for i, run in enumerate(runs[1:], 1):
            d = {
                "name": run["name"],
                "baseline": base["name"],
                "coco": {k: _diff(run["coco"][k], base["coco"][k]) for k in base["coco"]},
                "voc07_mAP": _diff(run["voc07"]["mAP"], base["voc07"]["mAP"]),
                "voc_mAP": _diff(run["voc"]["mAP"], base["voc"]["mAP"]),
                "per_class_AP": {
                    c["name"]: _diff(c["AP"], b["AP"])
                    for c, b in zip(run["per_class"], base["per_class"], strict=True)
                },
            }
            if "tide" in run and "tide" in base:
                d["tide_dAP"] = {
                    k: run["tide"]["dAP"][k] - base["tide"]["dAP"][k] for k in base["tide"]["dAP"]
                }
            if self.bootstrap is not None:
                d["bootstrap"] = {
                    "n": self.bootstrap.n,
                    "seed": self.bootstrap.seed,
                    "confidence": self.bootstrap.confidence,
                    **self.bootstrap.to_json(i),
                }
            compare.append(d)
        return {"runs": runs, "compare": compare}


def compare_runs(
    gt,
    dets: dict,
    *,
    tide: bool = False,
    at_precision: float | None = None,
    bootstrap: int = 0,
    seed: int = 0,
    callback=None,
) -> Comparison:
    """Score each prediction set of `dets` ({name: Detections | Predictions}, the first the
    baseline) on `gt` with detect.metrics.evaluate, and with `bootstrap` > 0 draw that many
    paired bootstrap samples (paired_bootstrap; `callback(done, total)` after each)."""
    results = [evaluate(gt, d, tide=tide, at_precision=at_precision) for d in dets.values()]
    bs = None
    if bootstrap > 0 and len(results) > 1:
        g = results[0].gt
        runs = [(r.pred, r.match) for r in results]
        bs = paired_bootstrap(g, runs, n=bootstrap, seed=seed, callback=callback)
    return Comparison(list(dets), results, bs)
