"""Helpers the readers share: image ids from file stems and building one ImageRecord."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

import numpy as np

from detect.data.types import ImageRecord


def stem_id(stem: str) -> int | str:
    """The image id of a file stem: an int when the stem is all (ASCII) digits, else the stem."""
    return int(stem) if stem.isascii() and stem.isdigit() else stem


def relative_paths(files: Sequence[Path]) -> list[str]:
    """Posix paths of `files` below their common folder (what image ids are made from)."""
    if not files:
        return []
    try:
        base = os.path.commonpath([os.path.abspath(f.parent) for f in files])
    except ValueError:  # different drives
        return [f.as_posix() for f in files]
    return [Path(os.path.relpath(os.path.abspath(f), base)).as_posix() for f in files]


def unique_ids(paths: Sequence[str]) -> list[int | str]:
    """One unique image id per path (posix, relative to the data set's root, with extension).

    The id is the file stem (an int when all digits, as COCO ids are) wherever that is
    unambiguous in the set; otherwise the stem as text where that is (`0001.jpg` and `001.jpg`
    would both be 1); otherwise the relative path without its extension (`cam1/000001`,
    `cam2/000001`); otherwise the relative path itself (`a.jpg` beside `a.png`).
    `detect predict --save-json` writes the same ids over the same files, so predictions read
    back into `detect evaluate` exactly, and `detect.metrics.predictions` matches the rest by
    path.
    """
    rel = [PurePosixPath(p) for p in paths]
    levels = (
        lambda r: stem_id(r.stem),
        lambda r: r.stem,
        lambda r: str(r.with_suffix("")),
        lambda r: str(r),
    )
    ids: list[int | str | None] = [None] * len(rel)
    todo = list(range(len(rel)))
    for level in levels:
        keys = {i: level(rel[i]) for i in todo}
        # a key is taken if no other image still unassigned, nor any assigned id, shares it
        counts = Counter(keys.values())
        taken = set(i for i in ids if i is not None)
        left = []
        for i in todo:
            k = keys[i]
            if counts[k] == 1 and k not in taken:
                ids[i] = k
            else:
                left.append(i)
        todo = left
        if not todo:
            break
    for i in todo:  # the same path twice: the caller's list has duplicates
        ids[i] = str(rel[i])
    return ids  # type: ignore[return-value]


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
