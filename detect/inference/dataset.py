"""Predicting a set of images: one loop for validation, `detect evaluate --weights` and
`detect bench` (as detectron2's `inference_on_dataset`: any predictor over any images).

`predict_images` feeds a `Predictor` batches of `(index, image or read error)` and gathers the
results into `Detections` (`Detections.from_images`, the one place they are assembled), with
the seconds spent inside the predictor. `predict_records` streams a data set's images from disk
through it; `bench_methods` runs it over decoded images for each backend and scores them.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from detect.data.image import read_image
from detect.data.types import DatasetRecords, Detections
from detect.errors import DetectError
from detect.inference.backends import SlidingBackend
from detect.inference.loading import check_class_names
from detect.inference.predictor import Predictor
from detect.inference.sliding import parse_scales
from detect.inference.stream import batched, prefetch
from detect.metrics.evaluate import evaluate
from detect.settings import Method, PredictConfig

Loaded = tuple[int, np.ndarray | None, str | None]  # (image index, BGR image, read error)


@dataclass
class ImagesResult:
    """What `predict_images` produced."""

    detections: Detections  # `image` indexes the items given
    failed: list[tuple[int, str]] = field(default_factory=list)  # (index, read error)
    seconds: float = 0.0  # wall-clock inside the predictor (no reading)
    images: int = 0  # images predicted


def predict_images(
    predictor: Predictor,
    items: Iterable[Loaded],
    batch: int,
    callback: Callable[[int], None] | None = None,
) -> ImagesResult:
    """Predict `(index, image, error)` items `batch` at a time; `callback(done)` after each
    batch counts items (failed ones too). Items with an error are listed, not predicted."""
    parts: list[tuple[int, np.ndarray]] = []
    out = ImagesResult(Detections.empty())
    done = 0
    for chunk in batched(items, batch):
        good = [(i, img) for i, img, err in chunk if err is None]
        out.failed += [(i, err) for i, _, err in chunk if err is not None]
        t0 = time.perf_counter()
        results = predictor([img for _, img in good])
        out.seconds += time.perf_counter() - t0
        parts += [(i, d) for (i, _), d in zip(good, results, strict=True)]
        out.images += len(good)
        done += len(chunk)
        if callback is not None:
            callback(done)
    out.detections = Detections.from_images(parts)
    return out


def _read_or_error(path: Path | None) -> tuple[np.ndarray | None, str | None]:
    if path is None:
        return None, "image has no file path"
    try:
        return read_image(path), None
    except DetectError as e:
        return None, str(e)


def predict_records(
    records: DatasetRecords,
    model_or_weights: Any,
    imgsz: int | None = None,
    conf: float = 0.001,
    iou: float = 0.45,
    max_det: int = 300,
    device: str | torch.device = "cpu",
    batch: int = 16,
    multi_label: bool = False,
    callback: Callable[[int, int], None] | None = None,
    method: Method | str = Method.yolo,
    augment: bool = False,
) -> Detections:
    """Predict every image of `records`; boxes in original pixels, ready for `evaluate`.

    Args:
        records: the images (their `path`s are read, one batch ahead in a background thread;
            ground truth is not used).
        model_or_weights: a model in memory (used on its own device and left there, its
            train/eval mode restored afterwards) or a weights path (loaded onto `device`).
        imgsz: letterbox side (None: the model's training size).
        conf, iou, max_det, multi_label: as `detect.boxes.postprocess`.
        device: where to load weights given as a path; ignored for a model in memory.
        batch: images per forward pass.
        callback: called as `callback(done, total)` after each batch.
        method: the backend (a window classifier: sliding or conv-sliding, default scales).
        augment: test-time augmentation (`detect.inference.tta`).
    Returns:
        Detections with `image` indexing `records.images`. An unreadable image is skipped
        and reported in `records.report` ("bad_image"; its objects then count as missed).
    Raises:
        DetectError: the model's classes are not the data set's (`check_class_names`), or not
            one image could be read (a split whose images are all missing scores nothing).
    """
    cfg = PredictConfig(
        imgsz=imgsz, conf=conf, iou=iou, max_det=max_det, multi_label=multi_label, batch=batch,
        method=method, augment=augment,
    )  # fmt: skip
    predictor = Predictor(model_or_weights, cfg, device)
    check_class_names(predictor.names, records.names, str(records.source))
    total = len(records.images)
    loaded = ((i, *_read_or_error(im.path)) for i, im in enumerate(records.images))
    res = predict_images(
        predictor, prefetch(loaded, depth=2 * batch), batch,
        None if callback is None else (lambda done: callback(done, total)),
    )  # fmt: skip
    for _, err in res.failed:
        records.report.add("bad_image", f"{err}: not predicted, its objects count as missed")
    if total and len(res.failed) == total:
        raise DetectError(
            f"{records.source}: none of the {total} images of split '{records.split}' could be "
            f"read (first: {res.failed[0][1]})"
        )
    return res.detections


@dataclass
class BenchRow:
    """One method's line of `detect bench`."""

    method: str  # "yolo" | "sliding" | "conv-sliding"
    map50: float  # val mAP at IoU 0.5 (COCO-style, 101-point)
    map: float  # val mAP50-95
    ms_per_image: float  # model time per image (images decoded beforehand, batch of 1)
    windows: int  # windows classified over all images (0 for yolo)
    images: int


def bench_methods(
    records: DatasetRecords,
    yolo_weights: str | None,
    window_weights: str | None,
    imgsz: int | None = None,
    scales: Sequence[int] | None = None,
    stride: int | None = None,
    conf: float = 0.001,
    iou: float = 0.45,
    max_det: int = 300,
    device: str = "cpu",
    max_images: int | None = None,
    callback: Callable[[str, int, int], None] | None = None,
) -> list[BenchRow]:
    """YOLO vs sliding window vs conv-sliding on the same images -> one BenchRow per method.

    Images are decoded once up front and each backend predicts them one at a time (batch 1,
    `predict_images`), so ms/image compares the models, not the disk. mAP is
    detect.metrics.evaluate on those images. A method whose weights are None is skipped.
    callback(method, done, total) follows the progress.
    """
    if max_images:
        records = replace(records, images=records.images[:max_images])
    images = [read_image(rec.path) for rec in records.images]
    scales = parse_scales(scales)
    plan: list[tuple[Method, str]] = []
    if yolo_weights:
        plan.append((Method.yolo, yolo_weights))
    if window_weights:
        plan += [(Method.sliding, window_weights), (Method.conv_sliding, window_weights)]
    rows = []
    n = len(images)
    for method, weights in plan:
        cfg = PredictConfig(
            imgsz=imgsz if method == Method.yolo else None, conf=conf, iou=iou,
            max_det=max_det, batch=1, method=method, scales=scales, stride=stride,
        )  # fmt: skip
        predictor = Predictor(weights, cfg, device)

        def progress(done: int, method: Method = method) -> None:
            if callback is not None:
                callback(method.value, done, n)

        res = predict_images(predictor, ((i, im, None) for i, im in enumerate(images)), 1, progress)
        backend = predictor.backend
        windows = backend.stats.windows if isinstance(backend, SlidingBackend) else 0
        score = evaluate(records, res.detections)
        ms = 1000 * res.seconds / max(n, 1)
        rows.append(BenchRow(method.value, score.map50, score.map, ms, windows, n))
    return rows
