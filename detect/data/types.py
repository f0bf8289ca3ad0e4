"""The one in-memory form of a labelled data set, whatever file format it came from.

Pure numpy, no torch: evaluation and anchors use it without importing torch.
Boxes are `(x1, y1, x2, y2)` in pixels of the original image, float32 (the canonical format).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


@dataclass
class ImageRecord:
    """One image and its ground truth.

    `id` is the COCO image id for COCO data, otherwise the file stem (an int when all digits);
    it is what the predictions JSON calls `image_id`.
    """

    path: Path | None  # image file; may not exist (readers open no pixels)
    id: int | str
    width: int
    height: int
    boxes: np.ndarray  # float32 [N, 4] xyxy pixels
    classes: np.ndarray  # int64 [N] class index into DatasetRecords.names
    area: np.ndarray  # float64 [N] COCO `area`, else the box area
    iscrowd: np.ndarray  # bool [N]
    difficult: np.ndarray  # bool [N] VOC `difficult`: kept, ignored in scoring

    @property
    def file_name(self) -> str:
        return self.path.name if self.path is not None else str(self.id)


@dataclass
class ReadReport:
    """What a reader skipped or mended: counted, with the first messages kept for the user."""

    clipped_boxes: int = 0  # coordinates outside the image / 0..1, clipped
    zero_size_boxes: int = 0  # zero-area boxes (dropped from training, kept for evaluation)
    bad_lines: int = 0  # malformed label lines skipped
    bad_images: int = 0  # unreadable / corrupt images skipped
    missing_labels: int = 0  # images with no label file (= no objects)
    messages: list[str] = field(default_factory=list)  # "path:line: what" (first ~50 kept)

    def warn(self, message: str, limit: int = 50) -> None:
        if len(self.messages) < limit:
            self.messages.append(message)


@dataclass
class DatasetRecords:
    """All images of one split with their boxes and the class names."""

    names: list[str]  # class index -> name
    images: list[ImageRecord]
    category_ids: list[int]  # class index -> id written as `category_id` (COCO ids; else 0..C-1)
    format: str  # "yaml" | "coco" | "voc"
    source: Path  # the path the user gave
    split: str
    report: ReadReport = field(default_factory=ReadReport)

    @property
    def num_classes(self) -> int:
        return len(self.names)

    def num_boxes(self) -> int:
        return int(sum(len(im.boxes) for im in self.images))


@dataclass
class Detections:
    """Predictions for a set of images as flat arrays, one row per detection.

    The form evaluation takes (no JSON round trip) and prediction returns in bulk.
    """

    image: np.ndarray  # int64 [D] index into DatasetRecords.images
    boxes: np.ndarray  # float32 [D, 4] xyxy pixels of the original image
    scores: np.ndarray  # float32 [D]
    classes: np.ndarray  # int64 [D] class index

    def __len__(self) -> int:
        return len(self.scores)

    @classmethod
    def empty(cls) -> Detections:
        return cls(
            np.zeros(0, np.int64),
            np.zeros((0, 4), np.float32),
            np.zeros(0, np.float32),
            np.zeros(0, np.int64),
        )
