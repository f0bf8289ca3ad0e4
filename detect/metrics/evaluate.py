"""evaluate(gt, dets) -> EvalResult: COCO, VOC07 and VOC scores in one call, no torch, no JSON."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from detect.data.types import DatasetRecords, Detections
from detect.metrics.arrays import GroundTruth, Predictions, ground_truth, predictions
from detect.metrics.coco import STAT_NAMES, CocoParams, CocoResult, evaluate_coco
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
        """The contract's `detect evaluate --json` dict."""
        ap, ap50 = self.coco.per_class_ap()
        return {
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


def evaluate(
    gt: DatasetRecords | GroundTruth,
    dets: Detections | Predictions,
    params: CocoParams | None = None,
) -> EvalResult:
    """Score detections against ground truth: COCO (= pycocotools), VOC07 and VOC AP@0.5.

    Args:
        gt: the split's ground truth (DatasetRecords, or the GroundTruth arrays of a COCO JSON).
        dets: Detections (`image` indexes gt.images, xyxy pixels, class index), or Predictions.
    Raises:
        DetectError: a detection on an unknown image or class, a NaN score, a negative size.
    """
    t0 = time.perf_counter()
    g = ground_truth(gt)
    p = predictions(dets, g)
    coco = evaluate_coco(g, p, params)
    voc = evaluate_voc(g, p)
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
    )
