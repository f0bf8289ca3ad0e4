"""Detection metrics, pure numpy (never imports torch): COCO mAP equal to pycocotools, VOC07 and
VOC all-point AP, per-class tables, operating points (best-F1 confidence, recall at a precision),
TIDE's error breakdown (equal to tidecv), a paired image bootstrap to compare prediction sets,
PR curves, a confusion matrix and TIDE bar charts (detect.metrics.plots)."""

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
from detect.metrics.compare import Bootstrap, Comparison, compare_runs, paired_bootstrap
from detect.metrics.evaluate import EvalResult, evaluate
from detect.metrics.operating import OperatingPoints, operating_points
from detect.metrics.predictions import (
    coco_ground_truth,
    coco_results,
    read_coco_ground_truth,
    read_predictions,
)
from detect.metrics.tide import TideResult, evaluate_tide
from detect.metrics.voc import VocResult, evaluate_voc

__all__ = [
    "STAT_NAMES",
    "Bootstrap",
    "Comparison",
    "OperatingPoints",
    "TideResult",
    "compare_runs",
    "evaluate_tide",
    "operating_points",
    "paired_bootstrap",
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
