"""The one in-memory form of a labelled data set, whatever file format it came from.

Pure numpy, no torch: evaluation and anchors use it without importing torch.
Boxes are `(x1, y1, x2, y2)` in pixels of the original image, float32 (the canonical format).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from detect.errors import DetectError


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


# What each kind of ReadReport entry means, as the summary line names it. Warnings change what a
# command sees (`--strict` makes them fatal); notes are ordinary data (a background image).
REPORT_KINDS: dict[str, tuple[str, str]] = {
    "bad_class": ("error", "labels with a class outside the names skipped"),
    "bad_line": ("warning", "malformed label lines or objects skipped"),
    "bad_image": ("warning", "unreadable or missing images skipped"),
    "missing_annotation": ("warning", "listed images without an annotation file skipped"),
    "unmatched": ("warning", "predictions on images outside the ground truth ignored"),
    "clipped_box": ("warning", "boxes outside the image clipped"),
    "zero_size_box": ("warning", "zero-size boxes (not trained on, still scored)"),
    "duplicate_box": ("warning", "duplicate boxes (same class and corners)"),
    "orphan_label": ("warning", "label files without an image"),
    "missing_label": ("note", "images without a label file (no objects)"),
}


@dataclass
class ReadReport:
    """What a reader skipped or mended, by kind, every entry kept as `"path[:line]: reason"`.

    Kinds are the keys of `REPORT_KINDS`. Commands print one summary line per kind (count and
    the first entries) and `--strict` turns any warning kind into exit 1; nothing a reader
    skips goes unsaid. A class id outside the names is a DetectError naming file:line, unless
    `collect_errors` (what `detect check` uses to list them all) makes it a "bad_class" entry.
    """

    entries: dict[str, list[str]] = field(default_factory=dict)
    collect_errors: bool = False

    def error(self, kind: str, message: str) -> None:
        """An error: raised as DetectError, or kept as an entry under `collect_errors`."""
        if not self.collect_errors:
            raise DetectError(message)
        self.add(kind, message)

    def add(self, kind: str, message: str) -> None:
        if kind not in REPORT_KINDS:
            raise ValueError(f"unknown report kind {kind!r}")
        self.entries.setdefault(kind, []).append(message)

    def count(self, kind: str) -> int:
        return len(self.entries.get(kind, ()))

    def warnings(self) -> int:
        """Entries of the warning and error kinds (what `--strict` refuses)."""
        return sum(len(v) for k, v in self.entries.items() if REPORT_KINDS[k][0] != "note")

    def merge(self, other: ReadReport) -> ReadReport:
        for kind, msgs in other.entries.items():
            self.entries.setdefault(kind, []).extend(msgs)
        return self

    @property
    def messages(self) -> list[str]:
        """Every entry, kinds in REPORT_KINDS order."""
        return [m for k in REPORT_KINDS for m in self.entries.get(k, ())]

    # Counts by their older names.
    bad_lines = property(lambda self: self.count("bad_line"))
    bad_images = property(lambda self: self.count("bad_image"))
    missing_labels = property(
        lambda self: self.count("missing_label") + self.count("missing_annotation")
    )
    clipped_boxes = property(lambda self: self.count("clipped_box"))
    zero_size_boxes = property(lambda self: self.count("zero_size_box"))


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

    @classmethod
    def from_images(cls, parts: Iterable[tuple[int, np.ndarray]]) -> Detections:
        """The one place detections are assembled: `(image index, ndarray[K, 6])` pairs, rows
        (x1, y1, x2, y2, score, class) as a predictor returns them, in any order of images."""
        parts = [(i, np.asarray(d, np.float32).reshape(-1, 6)) for i, d in parts]
        parts = [(i, d) for i, d in parts if len(d)]
        if not parts:
            return cls.empty()
        d = np.concatenate([d for _, d in parts])  # [D,6]
        return cls(
            image=np.concatenate([np.full(len(d), i, np.int64) for i, d in parts]),
            boxes=np.ascontiguousarray(d[:, :4]),
            scores=np.ascontiguousarray(d[:, 4]),
            classes=d[:, 5].astype(np.int64),
        )
