"""What a training run leaves for a first look at its best weights: `RUN/val/`.

From the best epoch's validation (its EvalResult: the detections and matches it scored, nothing
predicted again):
- `val_batch0_labels.jpg` / `val_batch0_pred.jpg`: the first 16 val images in a 4 x 4 grid, with
  their ground truth and with the detections kept at the best-F1 confidence (as ultralytics'
  `val_batch*_labels` / `val_batch*_pred`);
- `pr_all.png` (every class's PR curve at IoU 0.5 and their mean) and `confusion_matrix.png`
  (detect.metrics.plots, as `detect evaluate --plots` draws them).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from detect.data.image import read_image
from detect.data.types import DatasetRecords
from detect.errors import DetectError
from detect.files import atomic_write_bytes
from detect.inference.draw import draw_detections
from detect.metrics.plots import save_plots

GRID = 4  # images per side of the grid
TILE = 320  # pixels per image in the grid


def grid_image(images: list[np.ndarray], dets: list[np.ndarray], names: list[str]) -> np.ndarray:
    """Up to GRID x GRID images, each letterboxed into a TILE x TILE cell with its boxes drawn.

    Args:
        images: BGR uint8 [H, W, 3] each; dets: float [K, 6] (x1, y1, x2, y2, score, class) in
            each image's pixels (score < 0: a ground-truth box, drawn without a score).
    Returns:
        uint8 [rows * TILE, GRID * TILE, 3] BGR (gray where no image).
    """
    rows = max(1, -(-len(images) // GRID))
    out = np.full((rows * TILE, GRID * TILE, 3), 114, np.uint8)
    for k, (img, d) in enumerate(zip(images, dets, strict=True)):
        h, w = img.shape[:2]
        s = TILE / max(h, w)
        small = cv2.resize(img, (max(1, round(w * s)), max(1, round(h * s))))
        boxes = np.asarray(d, np.float32).reshape(-1, 6).copy()
        boxes[:, :4] *= s
        gt = (boxes[:, 4] < 0).any()
        small = draw_detections(small, boxes, names, line_width=1, hide_conf=bool(gt))
        r, c = divmod(k, GRID)
        out[r * TILE : r * TILE + small.shape[0], c * TILE : c * TILE + small.shape[1]] = small
    return out


def write_val_report(folder: str | Path, res, records: DatasetRecords) -> list[Path]:
    """Write the grids and plots of `res` (the best epoch's EvalResult on `records`, the val
    split) into `folder`; returns the paths written. Images that cannot be read are left out of
    the grids. Raises WriteError (a DetectError) when a file cannot be written."""
    folder = Path(folder)
    written = []
    if res.gt is not None and res.pred is not None:
        written += save_plots(res, folder, res.gt, res.pred, per_class=False)
    conf = 0.25
    if res.operating is not None and res.operating.all.get("conf") == res.operating.all.get("conf"):
        conf = float(res.operating.all["conf"])  # the best-F1 threshold (not NaN)
    images, labels, preds = [], [], []
    pr = res.pred
    for i, rec in enumerate(records.images):
        if len(images) == GRID * GRID:
            break
        try:
            img = read_image(rec.path)
        except DetectError:
            continue
        images.append(img)
        gt = np.asarray(rec.boxes, np.float32).reshape(-1, 4)
        cls = np.asarray(rec.classes, np.float32).reshape(-1, 1)
        labels.append(np.concatenate([gt, -np.ones_like(cls), cls], 1))
        if pr is None:
            preds.append(np.zeros((0, 6), np.float32))
            continue
        m = (pr.image == i) & (pr.scores >= conf)
        xyxy = np.concatenate([pr.xywh[m, :2], pr.xywh[m, :2] + pr.xywh[m, 2:]], 1)
        preds.append(np.concatenate([xyxy, pr.scores[m, None], pr.classes[m, None]], 1))
    if images:
        for name, dets in (("val_batch0_labels.jpg", labels), ("val_batch0_pred.jpg", preds)):
            ok, buf = cv2.imencode(".jpg", grid_image(images, dets, list(res.names)))
            if ok:
                written.append(atomic_write_bytes(folder / name, buf.tobytes()))
    return written
