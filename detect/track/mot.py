"""MOTChallenge text rows: what trackers write and TrackEval / py-motmetrics read.

One line per box and frame: `frame,id,x,y,w,h,conf,x,y,z` (Milan et al., "MOT16: A Benchmark
for Multi-Object Tracking", 2016): frames from 1, (x, y) the top-left corner and (w, h) the size
in pixels. A tracker's rows end in `-1,-1,-1` (the 3-D position, unused in 2-D); ground truth
(`gt.txt`, what `detect synth --video` writes as `video_gt.txt`) has `conf` 1 (0: ignore the
box), then the class and the visible fraction: `frame,id,x,y,w,h,1,class,visibility`.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from detect.errors import DetectError
from detect.files import WriteError, temp_beside


def tracker_lines(frame: int, tracks: np.ndarray) -> str:
    """Rows for one frame of tracks.

    Args:
        frame: the frame number, from 1.
        tracks: float [T, >=6] rows (x1, y1, x2, y2, id, score, ...) in pixels
            (`ByteTracker.update`'s output).
    Returns:
        `frame,id,x,y,w,h,conf,-1,-1,-1` lines, each ending in a newline.
    """
    out = []
    for x1, y1, x2, y2, tid, score in np.asarray(tracks, np.float64)[:, :6].tolist():
        xywh = f"{x1:.2f},{y1:.2f},{x2 - x1:.2f},{y2 - y1:.2f}"
        out.append(f"{frame},{int(tid)},{xywh},{score:.4f},-1,-1,-1\n")
    return "".join(out)


def gt_lines(frame: int, ids, boxes, classes, visibility) -> str:
    """Ground-truth rows `frame,id,x,y,w,h,1,class,visibility` for one frame.

    Args:
        ids: int [N]; boxes: float [N, 4] xyxy pixels; classes: int [N] (0-based, as the
            data set's); visibility: float [N] the visible fraction of each object, 0..1.
    """
    out = []
    for tid, (x1, y1, x2, y2), c, v in zip(ids, np.asarray(boxes, np.float64).tolist(), classes,
                                           visibility, strict=True):  # fmt: skip
        xywh = f"{x1:.2f},{y1:.2f},{x2 - x1:.2f},{y2 - y1:.2f}"
        out.append(f"{frame},{int(tid)},{xywh},1,{int(c)},{v:.3f}\n")
    return "".join(out)


def read_mot(path: str | Path) -> np.ndarray:
    """A MOTChallenge text file -> float64 [N, 10]: frame, id, x, y, w, h, conf, then the
    three remaining columns (class and visibility in ground truth; -1 where a row is shorter).

    Raises DetectError naming the file and line of a malformed row.
    """
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise DetectError(f"{path}: cannot read MOT rows ({e})") from None
    rows = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        parts = line.replace(" ", "").split(",")
        try:
            vals = [float(v) for v in parts]
        except ValueError:
            raise DetectError(f"{path}:{n}: not a MOTChallenge row: {line.strip()!r}") from None
        if len(vals) < 7:
            raise DetectError(f"{path}:{n}: a MOTChallenge row has at least 7 fields")
        rows.append((vals + [-1.0] * 3)[:10])
    return np.array(rows, np.float64).reshape(-1, 10)


class MotWriter:
    """A MOTChallenge file written frame by frame (flat memory) into a temporary file beside
    `path`, renamed into place by `close`: the file holds every frame written before, even
    after Ctrl-C, or does not exist. Raises DetectError naming `path` when it cannot be
    written."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        try:
            fd, self.tmp = temp_beside(self.path)
        except OSError as e:
            raise WriteError(self.path, e) from None
        self.f = os.fdopen(fd, "w", encoding="utf-8")
        self.rows = 0

    def write(self, frame: int, tracks: np.ndarray) -> None:
        try:
            self.f.write(tracker_lines(frame, tracks))
        except OSError as e:
            self.close(keep=False)
            raise WriteError(self.path, e) from None
        self.rows += len(tracks)

    def close(self, keep: bool = True) -> None:
        """Rename the file into place (`keep`), else remove it. Idempotent."""
        if self.f.closed:
            return
        try:
            self.f.close()
            if keep:
                os.replace(self.tmp, self.path)
        except OSError as e:
            raise WriteError(self.path, e) from None
        finally:
            Path(self.tmp).unlink(missing_ok=True)
