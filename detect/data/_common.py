"""Helpers the readers share: image ids from file stems and building one ImageRecord."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from detect.data.types import ImageRecord


def stem_id(stem: str) -> int | str:
    """The image id of a file stem: an int when the stem is all (ASCII) digits, else the stem."""
    return int(stem) if stem.isascii() and stem.isdigit() else stem


def make_record(
    path: Path | None,
    image_id: int | str,
    width: int,
    height: int,
    rows: list[tuple[float, float, float, float]],
    classes: list[int],
    area: list[float] | None = None,
    iscrowd: list[bool] | None = None,
    difficult: list[bool] | None = None,
) -> ImageRecord:
    """One ImageRecord from python lists; `rows` are xyxy pixels, `area` defaults to box area."""
    boxes = np.asarray(rows, dtype=np.float32).reshape(-1, 4)  # [N,4]
    n = len(boxes)
    if area is None:
        b = boxes.astype(np.float64)
        area_arr = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    else:
        area_arr = np.asarray(area, dtype=np.float64).reshape(n)
    return ImageRecord(
        path=path,
        id=image_id,
        width=int(width),
        height=int(height),
        boxes=boxes,
        classes=np.asarray(classes, dtype=np.int64).reshape(n),
        area=area_arr,
        iscrowd=_flags(iscrowd, n),
        difficult=_flags(difficult, n),
    )


def _flags(values: list[bool] | None, n: int) -> np.ndarray:
    return np.zeros(n, bool) if values is None else np.asarray(values, bool).reshape(n)


def clip_box(
    x1: float, y1: float, x2: float, y2: float, w: float, h: float
) -> tuple[tuple[float, float, float, float], bool]:
    """Clip an xyxy box to [0, w] x [0, h]; also say whether anything moved."""
    c = (min(max(x1, 0.0), w), min(max(y1, 0.0), h), min(max(x2, 0.0), w), min(max(y2, 0.0), h))
    return c, c != (x1, y1, x2, y2)
