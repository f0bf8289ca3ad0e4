"""Torch-free inference on an exported detector: ONNX Runtime or OpenVINO, with letterboxing,
NMS and YOLO post-processing in numpy.

This module imports numpy, OpenCV and the runtime package it is asked for, never torch: a
predict path built on it starts in a fraction of a second (bench/README.md, Runtimes). The
functions give the results of their torch counterparts:

- `letterbox`, `letterbox_shape`, `letterbox_boxes`, `unletterbox_boxes` are
  `detect.data.transforms`' own (torch-free), re-exported here; `letterbox_batch` builds one
  network input from them.
- `nms` / `batched_nms` return the keep indices of `torchvision.ops.nms` / `batched_nms` (same
  float32 arithmetic, same strict `IoU > threshold`, same per-class strategy and order).
- `postprocess` equals `detect.boxes.postprocess` (rows `(x1, y1, x2, y2, score, class)`).

Boxes are `(x1, y1, x2, y2)` pixels, float32, everywhere.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

# torch-free (numpy, OpenCV); the box mappings are re-exported for the runtime's callers
from detect.data.transforms import PAD_VALUE as PAD_VALUE
from detect.data.transforms import letterbox, letterbox_shape
from detect.data.transforms import letterbox_boxes as letterbox_boxes
from detect.data.transforms import unletterbox_boxes as unletterbox_boxes
from detect.errors import DetectError

PRECISIONS = ("f32", "bf16")
_OPENVINO_XML = "model.xml"
_OPENVINO_META = "metadata.json"
_EXPORT_FORMAT = "detect-export"  # detect.models.export.EXPORT_FORMAT (no torch import here)


def cpu_count() -> int:
    """CPUs this process may run on (its affinity mask; containers and taskset included)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


# ---------------------------------------------------------------------------------------------
# Letterbox


@dataclass(frozen=True)
class Letterbox:
    """Where one image went inside the network input: what mapping boxes back needs.

    A point `p` of the original image lands at `p * scale + pad` in the input.
    """

    scale: float
    pad: tuple[int, int]  # (padx, pady): whole pixels added left / top
    orig_hw: tuple[int, int]  # (H, W) of the original image


def letterbox_batch(
    images: Sequence[np.ndarray], size: int, auto: bool = True, stride: int = 32
) -> tuple[np.ndarray, list[Letterbox]]:
    """Letterbox BGR images into one network input: `uint8 ndarray[B, 3, H, W]` RGB.

    With `auto` the batch takes the smallest stride multiple holding every resized image (all
    4:3 landscape photos at 320: 256 x 320; a mix of portrait and landscape: 320 x 320); without,
    `size` x `size`. Returns the input and each image's `Letterbox` (for `unletterbox_boxes`).
    """
    if not len(images):
        raise DetectError("letterbox_batch: no images")
    shapes = [letterbox_shape(im.shape[:2], size, auto, stride) for im in images]
    hw = (max(s[0] for s in shapes), max(s[1] for s in shapes))
    out = np.empty((len(images), 3, *hw), np.uint8)  # [B,3,H,W]
    metas = []
    for i, img in enumerate(images):
        if img.ndim != 3 or img.shape[2] != 3:
            raise DetectError(f"expected BGR images [H, W, 3], got shape {img.shape}")
        lb, scale, pad = letterbox(img, size, shape=hw)
        out[i] = lb[..., ::-1].transpose(2, 0, 1)  # BGR HWC -> RGB CHW, the models' input
        metas.append(Letterbox(float(scale), (int(pad[0]), int(pad[1])), img.shape[:2]))
    return out, metas


def to_float_input(x: np.ndarray) -> np.ndarray:
    """uint8 `[B, 3, H, W]` (0..255) -> contiguous float32 in 0..1 (as `x.float() / 255` in
    torch: the same division, bit for bit). Float input is returned as contiguous float32."""
    if x.dtype == np.uint8:
        out = np.empty(x.shape, np.float32)
        return np.divide(x, np.float32(255.0), out=out, dtype=np.float32)
    return np.ascontiguousarray(x, dtype=np.float32)


# ---------------------------------------------------------------------------------------------
# NMS and post-processing (numpy, torchvision's results)

# Up to this many boxes NMS builds the IoU matrix at once (1 MiB); above, it computes the IoU of
# each kept box against the boxes left (cost: kept x N, and O(N) memory).
_MATRIX_MAX = 512


def _check_nms_args(boxes: Any, scores: Any, classes: Any = None) -> tuple[np.ndarray, ...]:
    boxes = np.asarray(boxes)
    scores = np.asarray(scores)
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise DetectError(f"boxes must be an ndarray[N, 4], got shape {boxes.shape}")
    if scores.shape != (boxes.shape[0],):
        raise DetectError(f"scores must be an ndarray[{boxes.shape[0]}], got {scores.shape}")
    if classes is not None:
        classes = np.asarray(classes)
        if classes.shape != (boxes.shape[0],):
            raise DetectError(f"classes must be an ndarray[{boxes.shape[0]}], got {classes.shape}")
        return boxes, scores, classes
    return boxes, scores


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Greedy non-maximum suppression with the results of `torchvision.ops.nms`.

    Boxes are visited by decreasing score (ties: lower index first); each kept box drops every
    later box whose IoU with it is > `iou_threshold` (strict; a NaN IoU, from two empty boxes,
    drops nothing). IoU is computed in float32 in torchvision's order of operations and compared
    in float64, so decisions at the threshold match bit for bit.

    Args:
        boxes (ndarray[N, 4]): `(x1, y1, x2, y2)`; computed in float32.
        scores (ndarray[N]): higher is better.
    Returns:
        int64 ndarray[K]: indices of the kept boxes, by decreasing score.
    """
    boxes, scores = _check_nms_args(boxes, scores)
    if boxes.shape[0] == 0:
        return np.empty(0, np.int64)
    boxes = boxes.astype(np.float32, copy=False)
    order = np.argsort(-scores.astype(np.float32, copy=False), kind="stable")
    thr = np.float64(iou_threshold)
    if len(order) <= _MATRIX_MAX:
        return order[_nms_matrix(boxes[order], thr)].astype(np.int64, copy=False)
    return _nms_loop(boxes, order, thr)


def _nms_matrix(b: np.ndarray, thr: np.float64) -> np.ndarray:
    """Kept positions of boxes `b` already sorted by decreasing score (one IoU matrix)."""
    x1, y1, x2, y2 = b[:, 0], b[:, 1], b[:, 2], b[:, 3]
    area = (x2 - x1) * (y2 - y1)  # [N]
    w = np.maximum(np.float32(0), np.minimum(x2[:, None], x2) - np.maximum(x1[:, None], x1))
    h = np.maximum(np.float32(0), np.minimum(y2[:, None], y2) - np.maximum(y1[:, None], y1))
    inter = w * h  # [N,N]
    with np.errstate(invalid="ignore", divide="ignore"):
        over = inter / (area[:, None] + area - inter) > thr  # [N,N]; NaN compares False
    n = len(b)
    removed = np.zeros(n, bool)
    keep = []
    for i in range(n):
        if removed[i]:
            continue
        keep.append(i)
        removed |= over[i]  # marks earlier boxes too: already decided, harmless
    return np.asarray(keep, np.int64)


def _nms_loop(boxes: np.ndarray, order: np.ndarray, thr: np.float64) -> np.ndarray:
    """Same result as `_nms_matrix` in O(N) memory: IoU of each kept box against the rest."""
    x1, y1, x2, y2 = boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3]
    area = (x2 - x1) * (y2 - y1)
    keep = []
    while order.size:
        i, rest = order[0], order[1:]
        keep.append(i)
        w = np.maximum(np.float32(0), np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]))
        h = np.maximum(np.float32(0), np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]))
        inter = w * h
        with np.errstate(invalid="ignore", divide="ignore"):
            drop = inter / (area[i] + area[rest] - inter) > thr
        order = rest[~drop]
    return np.asarray(keep, np.int64)


def batched_nms(
    boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray, iou_threshold: float
) -> np.ndarray:
    """Per-class NMS with the results of `torchvision.ops.batched_nms`.

    As torchvision on the CPU: up to 1000 boxes, one NMS over boxes shifted apart by
    `class * (max coordinate + 1)` (its "coordinate trick", whose float32 rounding is reproduced);
    above, an NMS per class, the kept boxes then ordered by decreasing score (equal scores by
    index: torchvision's unstable sort may order such ties differently there).

    Args:
        boxes (ndarray[N, 4]): `(x1, y1, x2, y2)`.
        scores (ndarray[N]): higher is better.
        classes (ndarray[N]): integer group of each box; boxes of different groups never
            suppress each other.
    Returns:
        int64 ndarray[K]: indices of the kept boxes, by decreasing score.
    """
    boxes, scores, classes = _check_nms_args(boxes, scores, classes)
    n = boxes.shape[0]
    if n == 0:
        return np.empty(0, np.int64)
    boxes = boxes.astype(np.float32, copy=False)
    scores = scores.astype(np.float32, copy=False)
    if n * 4 <= 4000:  # torchvision: boxes.numel() > 4000 on the CPU takes the per-class loop
        offsets = classes.astype(np.float32) * (boxes.max() + np.float32(1))  # [N]
        return nms(boxes + offsets[:, None], scores, iou_threshold)
    order = np.lexsort((np.arange(n), classes))  # grouped by class, index order within
    sorted_cls = classes[order]
    starts = np.flatnonzero(np.r_[True, sorted_cls[1:] != sorted_cls[:-1]])
    kept = []
    for idx in np.split(order, starts[1:]):
        kept.append(idx[nms(boxes[idx], scores[idx], iou_threshold)])
    keep = np.sort(np.concatenate(kept))  # index order, then a stable sort by score
    return keep[np.argsort(-scores[keep], kind="stable")].astype(np.int64, copy=False)


def postprocess(
    decoded: np.ndarray,
    conf: float = 0.25,
    iou: float = 0.45,
    max_det: int = 300,
    classes: Sequence[int] | None = None,
    multi_label: bool = False,
    agnostic: bool = False,
) -> list[np.ndarray]:
    """Decoded YOLO outputs -> final detections per image; `detect.boxes.postprocess` in numpy.

    Score threshold, optional class filter, per-class (or class-agnostic) greedy NMS, `max_det`
    cap. Only rows with objectness >= `conf` are scored (exact: obj * p <= obj as p <= 1), so the
    cost follows the candidates, not the 6300 rows per image.

    Args:
        decoded (ndarray[B, N, 5 + C]): rows `(x1, y1, x2, y2, obj, p_1..p_C)`, boxes in input
            pixels, probabilities; what an exported model returns.
        conf: a row (with `multi_label` a (box, class) pair) is kept when obj * p_c >= conf.
        iou: NMS IoU threshold.
        max_det: at most this many detections per image (the highest scores).
        classes: keep only these class ids (None: all).
        multi_label: every class with score >= conf gives its own row (else the best class only).
        agnostic: NMS across classes.
    Returns:
        list of B float32 `ndarray[K, 6]`: rows `(x1, y1, x2, y2, score, class)` by decreasing
        score, boxes in input pixels.
    Raises:
        DetectError: `decoded` not `[B, N, 5 + C]` with C >= 1, or `max_det` < 0.
    """
    decoded = np.asarray(decoded)
    if decoded.ndim != 3 or decoded.shape[-1] < 6:
        raise DetectError(
            f"decoded must be an ndarray[B, N, 5 + C] with C >= 1, got {decoded.shape}"
        )
    if max_det < 0:
        raise DetectError(f"max_det must be >= 0, got {max_det}")
    decoded = decoded.astype(np.float32, copy=False)
    bsz, _, width = decoded.shape
    if bsz == 0:
        return []
    nc = width - 5
    b, n = np.nonzero(decoded[..., 4] >= np.float32(conf))  # [R] candidates, (image, row) order
    rows = decoded[b, n]  # [R,5+C]
    scores = rows[:, 5:] * rows[:, 4:5]  # [R,C] the same float32 products as torch
    if multi_label:
        r, c = np.nonzero(scores >= np.float32(conf))
        score, b, boxes = scores[r, c], b[r], rows[r, :4]
    else:
        c = scores.argmax(1)  # first of equal maxima, as torch.max
        score = scores[np.arange(len(c)), c]
        m = score >= np.float32(conf)
        b, c, score, boxes = b[m], c[m], score[m], rows[m, :4]
    if classes is not None:
        m = np.isin(c, np.asarray(list(classes), dtype=np.int64))
        b, c, score, boxes = b[m], c[m], score[m], boxes[m]
    group = b if agnostic else b * nc + c
    keep = batched_nms(boxes, score, group, iou)  # by decreasing score
    keep = keep[np.argsort(b[keep], kind="stable")]  # grouped by image, scores stay decreasing
    out = np.empty((len(keep), 6), np.float32)
    out[:, :4] = boxes[keep]
    out[:, 4] = score[keep]
    out[:, 5] = c[keep]
    splits = np.cumsum(np.bincount(b[keep], minlength=bsz))[:-1]
    return [r[:max_det] for r in np.split(out, splits)]


# ---------------------------------------------------------------------------------------------
# Exported models


@dataclass
class ExportedModel:
    """A model written by `detect export` (ONNX file or OpenVINO folder), ready to run.

    Call it with a batch `ndarray[B, 3, H, W]` RGB, uint8 (0..255) or float (0..1): it returns
    the decoded `float32 ndarray[B, N, 5 + C]` rows `(x1, y1, x2, y2, obj, p_1..p_C)`, boxes in
    input pixels (before NMS: see `postprocess`). H and W are multiples of `stride` (any, with a
    dynamic export; `imgsz` x `imgsz` with an older fixed-size one, see `dynamic`).

    Attributes:
        path: the file or folder loaded.
        backend: "onnxruntime" or "openvino".
        precision: "f32" or "bf16" (the inference precision in effect, after any fallback).
        names: class names; `imgsz`: the letterbox side it was trained at; `stride`: the
            largest stride (input sides must be multiples of it); `dynamic`: height and width
            may vary; `meta`: the whole export metadata (config, anchors, training summary).
        note: why the precision asked for was not used ("" when it was).
    """

    path: Path
    backend: str
    precision: str
    names: list[str]
    imgsz: int
    stride: int
    dynamic: bool
    meta: dict[str, Any]
    note: str = ""
    _run: Any = field(default=None, repr=False)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x)
        if x.ndim != 4 or x.shape[1] != 3:
            raise DetectError(f"{self.path.name}: input must be [B, 3, H, W], got {x.shape}")
        h, w = x.shape[2:]
        if self.dynamic:
            if h % self.stride or w % self.stride:
                raise DetectError(
                    f"{self.path.name}: input height and width must be multiples of "
                    f"{self.stride}, got {h} x {w}"
                )
        elif (h, w) != (self.imgsz, self.imgsz):
            raise DetectError(
                f"{self.path.name}: this export takes {self.imgsz} x {self.imgsz} inputs only, got "
                f"{h} x {w} (re-export it with this version for any size)"
            )
        return self._run(to_float_input(x))

    @property
    def num_classes(self) -> int:
        return len(self.names)


def load_exported(
    path: str | Path, precision: str = "f32", threads: int | None = None
) -> ExportedModel:
    """Load a model exported by `detect export` for CPU inference, without torch.

    Args:
        path: a `.onnx` file (run by ONNX Runtime) or an OpenVINO folder holding `model.xml`,
            `model.bin` and `metadata.json` (run by OpenVINO on the CPU); `model.xml` itself
            also works.
        precision: "f32" (default) or "bf16". bf16 is OpenVINO's (its
            `INFERENCE_PRECISION_HINT`) and used only where the CPU reports BF16 support (AMX or
            AVX512-BF16); elsewhere, and for ONNX files, the model runs in f32 and `note` says why.
        threads: intra-op threads (default: the CPUs this process may use). ONNX Runtime's
            thread spinning is turned off (`session.intra_op.allow_spinning` and
            `session.inter_op.allow_spinning` = "0"): between batches the threads sleep instead
            of burning the CPU that image decoding and drawing need.
    Returns:
        An ExportedModel.
    Raises:
        DetectError: a missing path, a file that is not an ONNX model, an ONNX model or folder
        that is not a detect export (no `names` / `imgsz` metadata), or the runtime package
        missing; each names the path.
    """
    if precision not in PRECISIONS:
        raise DetectError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    path = Path(path)
    if path.is_file() and path.suffix == ".xml":
        path = path.parent
    if not path.exists():
        raise DetectError(f"exported model not found: {path}")
    threads = threads or cpu_count()
    if path.is_dir():
        return _load_openvino(path, precision, threads)
    if path.suffix.lower() == ".onnx":
        return _load_onnx(path, precision, threads)
    raise DetectError(
        f"{path}: not an exported model (expected a .onnx file or an OpenVINO folder from "
        "`detect export`)"
    )


def is_exported(path: str | Path) -> bool:
    """Whether `path` looks like an exported model (`.onnx` file, OpenVINO folder or its xml),
    by its name and layout only; `load_exported` checks the contents."""
    path = Path(path)
    if path.is_dir():
        return (path / _OPENVINO_XML).is_file() or (path / _OPENVINO_META).is_file()
    return path.suffix.lower() in (".onnx", ".xml")


def _parse_meta(raw: dict[str, Any], path: Path, kind: str, fmt: str) -> dict[str, Any]:
    """Export metadata (ONNX: JSON-encoded strings; OpenVINO: JSON values) -> one dict."""
    meta: dict[str, Any] = {}
    for key, value in raw.items():
        if isinstance(value, str) and key not in ("format", "input", "output"):
            with contextlib.suppress(ValueError):
                value = json.loads(value)
        meta[key] = value
    if (
        meta.get("format") not in (None, _EXPORT_FORMAT)
        or "names" not in meta
        or "imgsz" not in meta
    ):
        raise DetectError(
            f"{path}: {kind}, but not a detect export (no 'names' / 'imgsz' metadata); "
            f"export weights with `detect export W --format {fmt}`"
        )
    names = meta["names"]
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        raise DetectError(f"{path}: bad 'names' metadata {str(names)[:80]!r}")
    try:
        meta["imgsz"] = int(meta["imgsz"])
    except (TypeError, ValueError):
        raise DetectError(f"{path}: bad 'imgsz' metadata {meta['imgsz']!r}") from None
    meta.setdefault("stride", 32)
    return meta


def _model(path, backend, precision, meta, dynamic, run, note="") -> ExportedModel:
    return ExportedModel(
        path=path,
        backend=backend,
        precision=precision,
        names=list(meta["names"]),
        imgsz=meta["imgsz"],
        stride=int(meta["stride"]),
        dynamic=dynamic,
        meta=meta,
        note=note,
        _run=run,
    )


def _load_onnx(path: Path, precision: str, threads: int) -> ExportedModel:
    try:
        import onnxruntime as ort
    except ImportError:
        raise DetectError(f"{path}: running ONNX models needs onnxruntime") from None
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.add_session_config_entry("session.inter_op.allow_spinning", "0")
    opts.log_severity_level = 3  # errors only: no warnings on stderr
    try:
        sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime raises its own types (InvalidProtobuf, Fail, ...)
        detail = " ".join(str(e).split())[:200]
        raise DetectError(f"{path}: not a loadable ONNX model ({detail})") from None
    meta = _parse_meta(
        dict(sess.get_modelmeta().custom_metadata_map), path, "an ONNX model", "onnx"
    )
    inp = sess.get_inputs()[0]
    dynamic = not all(isinstance(d, int) for d in inp.shape[2:])
    name = inp.name

    def run(x: np.ndarray) -> np.ndarray:
        return sess.run(None, {name: x})[0]

    note = "bf16 is OpenVINO's; ONNX Runtime runs f32" if precision == "bf16" else ""
    return _model(path, "onnxruntime", "f32", meta, dynamic, run, note)


def _load_openvino(path: Path, precision: str, threads: int) -> ExportedModel:
    xml, meta_file = path / _OPENVINO_XML, path / _OPENVINO_META
    if not xml.is_file() or not meta_file.is_file():
        raise DetectError(
            f"{path}: not an OpenVINO export of detect (needs {_OPENVINO_XML} and "
            f"{_OPENVINO_META}); export weights with `detect export W --format openvino`"
        )
    try:
        raw = json.loads(meta_file.read_text())
    except (OSError, ValueError) as e:
        raise DetectError(f"{meta_file}: unreadable metadata ({e})") from None
    if not isinstance(raw, dict):
        raise DetectError(f"{meta_file}: metadata must be a JSON object")
    meta = _parse_meta(raw, path, "an OpenVINO folder", "openvino")
    try:
        import openvino as ov
    except ImportError:
        raise DetectError(f"{path}: running OpenVINO models needs openvino") from None
    core = ov.Core()
    note = ""
    if precision == "bf16" and "BF16" not in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES"):
        precision, note = "f32", "this CPU has no bf16 support (AMX / AVX512-BF16): f32"
    try:
        model = core.read_model(str(xml))
    except Exception as e:  # openvino raises RuntimeError subclasses
        detail = " ".join(str(e).split())[:200]
        raise DetectError(f"{xml}: not a loadable OpenVINO model ({detail})") from None
    dynamic = model.input(0).get_partial_shape().is_dynamic
    config = {
        "INFERENCE_PRECISION_HINT": precision,
        "PERFORMANCE_HINT": "LATENCY",
        "INFERENCE_NUM_THREADS": threads,
    }
    compiled = core.compile_model(model, "CPU", config)
    request = compiled.create_infer_request()

    def run(x: np.ndarray) -> np.ndarray:
        request.infer({0: x}, share_inputs=True)
        return request.get_output_tensor(0).data.copy()

    return _model(path, "openvino", precision, meta, dynamic, run, note)
