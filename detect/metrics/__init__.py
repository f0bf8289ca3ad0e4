"""Detection metrics, pure numpy (never imports torch): COCO mAP equal to pycocotools, VOC07 and
VOC all-point AP, per-class tables, PR curves and a confusion matrix (detect.metrics.plots)."""

from detect.metrics.arrays import GroundTruth, Predictions, ground_truth, predictions
from detect.metrics.coco import (
    STAT_NAMES,
    CocoMatch,
    CocoParams,
    CocoResult,
    accumulate,
    evaluate_coco,
    match,
    summarize,
)
from detect.metrics.evaluate import EvalResult, evaluate
from detect.metrics.predictions import (
    coco_ground_truth,
    coco_results,
    read_coco_ground_truth,
    read_predictions,
)
from detect.metrics.voc import VocResult, evaluate_voc

__all__ = [
    "STAT_NAMES",
    "CocoMatch",
    "CocoParams",
    "CocoResult",
    "EvalResult",
    "GroundTruth",
    "Predictions",
    "VocResult",
    "accumulate",
    "coco_ground_truth",
    "coco_results",
    "evaluate",
    "evaluate_coco",
    "evaluate_voc",
    "ground_truth",
    "match",
    "predictions",
    "read_coco_ground_truth",
    "read_predictions",
    "summarize",
]
