"""The flat float64 arrays evaluation runs on, built from DatasetRecords / Detections or read
straight from JSON.

Boxes are `(x, y, w, h)` float64 pixels here, not the canonical float32 xyxy: pycocotools computes
IoU on the xywh numbers of the JSON files in double precision, and matching it to 1e-12 needs the
same numbers (x + w - x is not always w in floating point, and float32 scores make ties).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from detect.data.types import DatasetRecords, Detections
from detect.errors import DetectError


@dataclass
class GroundTruth:
    """All ground-truth boxes of a split as flat arrays, one row per box."""

    names: list[str]  # class index -> name
    category_ids: list[int]  # class index -> `category_id` in prediction files
    image_ids: list  # image index -> id (`image_id` in prediction files), unique
    image_paths: list[str]  # image index -> file path (COCO: `file_name`); predictions whose id
    # is not an image's are matched by the trailing parts of this path (detect.metrics.predictions)
    image_wh: np.ndarray  # int64 [I, 2] image width, height (YOLO txt is normalised)
    image: np.ndarray  # int64 [N] image index
    classes: np.ndarray  # int64 [N] class index
    xywh: np.ndarray  # float64 [N, 4] (x, y, w, h) pixels
    area: np.ndarray  # float64 [N] COCO `area` (area ranges use it, as pycocotools does)
    iscrowd: np.ndarray  # bool [N] crowd region: IoU = inter / det area, matches many, ignored
    difficult: np.ndarray  # bool [N] VOC difficult: ignored (neither TP nor FP when matched)
    exact_ids: bool = False  # COCO ground truth: `image_id` must be an id, as pycocotools asserts
    _rank: np.ndarray | None = field(default=None, repr=False)

    @property
    def num_images(self) -> int:
        return len(self.image_ids)

    @property
    def num_classes(self) -> int:
        return len(self.names)

    def image_rank(self) -> np.ndarray:
        """int64 [I]: position of each image in pycocotools' order, `sorted(imgIds)` (it breaks
        cross-image score ties, so exactness needs it): ints numerically, strings by code point;
        a mix (which pycocotools cannot sort) ints first."""
        if self._rank is None:
            ids = self.image_ids
            if all(isinstance(i, int | np.integer) for i in ids):
                order = np.argsort(np.asarray(ids, dtype=np.int64), kind="stable")
            else:
                keys = [(0, i, "") if isinstance(i, int | np.integer) else (1, 0, i) for i in ids]
                order = np.asarray(sorted(range(len(ids)), key=keys.__getitem__), np.int64)
            rank = np.empty(len(ids), np.int64)
            rank[order] = np.arange(len(ids))
            self._rank = rank
        return self._rank


@dataclass
class Predictions:
    """Detections as flat float64 arrays, one row per detection, in file / model order."""

    image: np.ndarray  # int64 [D] image index into GroundTruth
    classes: np.ndarray  # int64 [D] class index
    xywh: np.ndarray  # float64 [D, 4] (x, y, w, h) pixels
    scores: np.ndarray  # float64 [D]
    _srank: np.ndarray | None = field(default=None, repr=False)

    def score_rank(self) -> np.ndarray:
        """int64 [D]: dense rank of decreasing score (ties share a rank), computed once."""
        if self._srank is None:
            self._srank = score_rank(self.scores)
        return self._srank

    def __len__(self) -> int:
        return len(self.scores)

    @classmethod
    def empty(cls) -> Predictions:
        return cls(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros((0, 4)), np.zeros(0))


def score_rank(scores: np.ndarray) -> np.ndarray:
    """int64 [D]: dense rank of decreasing score; equal scores (and -0.0, 0.0) share a rank.

    One float sort; every later ordering by score is then a sort of small ints.
    """
    uniq, inv = np.unique(scores, return_inverse=True)
    return len(uniq) - 1 - inv.reshape(-1).astype(np.int64)


def ground_truth(records: DatasetRecords | GroundTruth) -> GroundTruth:
    """DatasetRecords -> GroundTruth (xyxy float32 -> xywh float64); a GroundTruth passes."""
    if isinstance(records, GroundTruth):
        return records
    ims = records.images
    n = [len(im.boxes) for im in ims]

    def cat(get, dtype, shape=()):
        parts = [np.asarray(get(im), dtype).reshape(-1, *shape) for im in ims]
        return np.concatenate(parts) if parts else np.zeros((0, *shape), dtype)

    xyxy = cat(lambda im: im.boxes, np.float64, (4,))  # [N,4]
    xywh = np.concatenate([xyxy[:, :2], xyxy[:, 2:] - xyxy[:, :2]], axis=1)
    return GroundTruth(
        names=list(records.names),
        category_ids=list(records.category_ids),
        image_ids=[im.id for im in ims],
        image_paths=[im.path.as_posix() if im.path is not None else str(im.id) for im in ims],
        image_wh=np.asarray([[im.width, im.height] for im in ims], np.int64).reshape(-1, 2),
        image=np.repeat(np.arange(len(ims), dtype=np.int64), n),
        classes=cat(lambda im: im.classes, np.int64),
        xywh=xywh,
        area=cat(lambda im: im.area, np.float64),
        iscrowd=cat(lambda im: im.iscrowd, bool),
        difficult=cat(lambda im: im.difficult, bool),
    )


def predictions(dets: Detections | Predictions, gt: GroundTruth) -> Predictions:
    """Detections -> Predictions (xyxy -> xywh float64), checked against `gt`."""
    if isinstance(dets, Predictions):
        p = dets
    else:
        xyxy = np.asarray(dets.boxes, np.float64).reshape(-1, 4)
        p = Predictions(
            image=np.asarray(dets.image, np.int64),
            classes=np.asarray(dets.classes, np.int64),
            xywh=np.concatenate([xyxy[:, :2], xyxy[:, 2:] - xyxy[:, :2]], axis=1),
            scores=np.asarray(dets.scores, np.float64),
        )
    check_predictions(p, gt)
    return p


def check_predictions(p: Predictions, gt: GroundTruth, source: str = "detections") -> None:
    """Raise DetectError for what pycocotools would assert on or silently mis-score."""
    if len(p) == 0:
        return
    if p.image.min() < 0 or p.image.max() >= gt.num_images:
        raise DetectError(f"{source}: detection on an image absent from the ground truth")
    if p.classes.min() < 0 or p.classes.max() >= gt.num_classes:
        raise DetectError(f"{source}: class index outside the ground truth's categories")
    if not np.isfinite(p.scores).all():
        raise DetectError(f"{source}: non-finite (NaN/inf) score")
    if not np.isfinite(p.xywh).all():
        raise DetectError(f"{source}: non-finite box coordinate")
    if (p.xywh[:, 2:] < 0).any():
        raise DetectError(f"{source}: box with a negative width or height")
