"""Training losses: the detector's (`DetectionLoss`, on `detect.losses.assign`'s targets).

The window classifier's loss is plain cross-entropy (`detect.engine.tasks.window`).
"""

from detect.losses.assign import (
    LevelTargets,
    assign_targets,
    ignore_mask,
    pad_targets,
    reach_regions,
    task_aligned_assign,
)
from detect.losses.detection import (
    DetectionLoss,
    LossConfig,
    LossTerms,
    bbox_ciou,
    class_targets,
)

__all__ = [
    "DetectionLoss",
    "LevelTargets",
    "LossConfig",
    "LossTerms",
    "assign_targets",
    "bbox_ciou",
    "class_targets",
    "ignore_mask",
    "pad_targets",
    "reach_regions",
    "task_aligned_assign",
]
