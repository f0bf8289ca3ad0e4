"""evaluate(gt, dets) -> EvalResult: COCO, VOC07 and VOC scores, operating points and (asked for)
TIDE's error breakdown in one call, no torch, no JSON."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from detect.data.types import DatasetRecords, Detections
from detect.metrics.arrays import GroundTruth, Predictions, ground_truth, predictions
from detect.metrics.coco import (
    STAT_NAMES,
    CocoMatch,
    CocoParams,
    CocoResult,
    accumulate,
    match,
    summarize,
)
from detect.metrics.operating import OperatingPoints, operating_points
from detect.metrics.tide import TideResult, evaluate_tide
from detect.metrics.voc import VocResult, evaluate_voc


@dataclass
class EvalResult:
    coco: CocoResult
    voc: VocResult
    names: list[str]  # class index -> name
    category_ids: list[int]
    gt_count: np.ndarray  # int64 [K] GT boxes per class (all, crowd and difficult included)
    pred_count: np.ndarray  # int64 [K] detections per class
    images: int
    seconds: float
    operating: OperatingPoints | None = None
    tide: TideResult | None = None
    # what a paired bootstrap re-uses (detect.metrics.compare)
    gt: GroundTruth | None = field(default=None, repr=False)
    pred: Predictions | None = field(default=None, repr=False)
    match: CocoMatch | None = field(default=None, repr=False)

    @property
    def coco_stats(self) -> np.ndarray:
        """float64 [12]: pycocotools' COCOeval.stats."""
        return self.coco.stats

    @property
    def map(self) -> float:
        """AP at IoU 0.50:0.95 (COCO stats[0])."""
        return float(self.coco.stats[0])

    @property
    def map50(self) -> float:
        """AP at IoU 0.50 (COCO stats[1])."""
        return float(self.coco.stats[1])

    @property
    def ap_per_class(self) -> np.ndarray:
        """float64 [K] AP50-95 per class, -1 without GT."""
        return self.coco.per_class_ap()[0]

    @property
    def ap50_per_class(self) -> np.ndarray:
        """float64 [K] AP50 per class, -1 without GT."""
        return self.coco.per_class_ap()[1]

    def to_json(self) -> dict:
        """The contract's `detect evaluate --json` dict, plus `per_class[k]["operating"]`,
        `"operating_points"` and (when computed) `"tide"`."""
        ap, ap50 = self.coco.per_class_ap()
        out = {
            "coco": {k: float(v) for k, v in zip(STAT_NAMES, self.coco.stats, strict=True)},
            "voc07": {
                "mAP": self.voc.map07,
                "AP": {n: float(a) for n, a in zip(self.names, self.voc.ap07, strict=True)},
            },
            "voc": {
                "mAP": self.voc.map,
                "AP": {n: float(a) for n, a in zip(self.names, self.voc.ap, strict=True)},
            },
            "per_class": [
                {
                    "id": int(self.category_ids[k]),
                    "name": self.names[k],
                    "AP": float(ap[k]),
                    "AP50": float(ap50[k]),
                    "gt": int(self.gt_count[k]),
                    "pred": int(self.pred_count[k]),
                }
                for k in range(len(self.names))
            ],
            "images": self.images,
            "seconds": round(self.seconds, 4),
        }
        if self.operating is not None:
            for k, c in enumerate(out["per_class"]):
                c["operating"] = self.operating.class_json(k)
            out["operating_points"] = self.operating.to_json()
        if self.tide is not None:
            out["tide"] = self.tide.to_json()
        return out


def evaluate(
    gt: DatasetRecords | GroundTruth,
    dets: Detections | Predictions,
    params: CocoParams | None = None,
    *,
    tide: bool = False,
    at_precision: float | None = None,
) -> EvalResult:
    """Score detections against ground truth: COCO (= pycocotools), VOC07 and VOC AP@0.5, the
    operating points (detect.metrics.operating) and, with `tide`, TIDE's error breakdown
    (detect.metrics.tide, = tidecv).

    Args:
        gt: the split's ground truth (DatasetRecords, or the GroundTruth arrays of a COCO JSON).
        dets: Detections (`image` indexes gt.images, xyxy pixels, class index), or Predictions.
        at_precision: also report the recall (and confidence) at this precision, in [0, 1].
    Raises:
        DetectError: a detection on an unknown image or class, a NaN score, a negative size.
    """
    t0 = time.perf_counter()
    g = ground_truth(gt)
    p = predictions(dets, g)
    params = params or CocoParams()
    m = match(g, p, params)
    # COCOeval.stats reads precision at the last max_dets only
    precision, recall = accumulate(g, p, m, params, precision_for=params.max_dets[-1:])
    coco = CocoResult(precision, recall, summarize(precision, recall, params), params)
    voc = evaluate_voc(g, p, pairs=m.pairs)
    ops = operating_points(g, p, m, params, at_precision)
    tide_result = evaluate_tide(g, p) if tide else None
    K = g.num_classes
    return EvalResult(
        coco=coco,
        voc=voc,
        names=list(g.names),
        category_ids=list(g.category_ids),
        gt_count=np.bincount(g.classes, minlength=K),
        pred_count=np.bincount(p.classes, minlength=K),
        images=g.num_images,
        seconds=time.perf_counter() - t0,
        operating=ops,
        tide=tide_result,
        gt=g,
        pred=p,
        match=m,
    )
