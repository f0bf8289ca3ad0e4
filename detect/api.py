"""`detect.Detector`: the Python API, as simple as ultralytics' `YOLO(w)(img)`.

    from detect import Detector
    det = Detector()                          # the shipped default model (PASCAL VOC, 20 classes)
    r = det("photo.jpg")[0]                   # one Result per image or frame
    r.boxes, r.scores, r.classes, r.names     # xyxy float32 pixels [N, 4], [N], [N], class names
    cv2.imwrite("out.jpg", r.plot())          # the CLI's drawing, BGR
    det.train("data.yaml", time=10)           # `detect train`, starting from these weights
    det.evaluate("data.yaml")                 # `detect evaluate DATA --weights W`
    for r in det.track("clip.mp4"): r.ids     # `detect track`: ByteTrack identities

Every method calls the library the CLI calls, with the CLI's defaults (`detect.settings`).
Pixels: a numpy array is BGR uint8 HxWx3 as OpenCV reads it (`channels="rgb"` for RGB arrays),
a PIL image is RGB (converted). Nothing prints; errors are `detect.errors.DetectError`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from detect import resources
from detect.data import load_dataset
from detect.data.types import ReadReport
from detect.errors import DetectError
from detect.files import file_sha256
from detect.inference.draw import draw_detections
from detect.inference.run import make_predictor
from detect.inference.sources import Frame, Source, expand_sources, iter_frames
from detect.inference.stream import prefetch
from detect.metrics import evaluate as score
from detect.runtime import is_exported
from detect.settings import VAL_CONF, VAL_IOU, VAL_MAX_DET, PredictConfig, TrackerConfig
from detect.track.run import track_frames

_ARRAY_NAME = "<array>"


@dataclass
class Result:
    """The detections of one image or video frame.

    Attributes:
        boxes: float32 [N, 4] (x1, y1, x2, y2) in the original image's pixels.
        scores: float32 [N] confidence (objectness x class probability), decreasing (tracks:
            by id).
        classes: int64 [N] class index into `names`.
        names: class index -> name (the model's).
        path: the file it came from (None for an array or PIL image; a video's path for each of
            its frames).
        frame: the frame number in its video (0 for an image).
        orig_shape: (height, width) of the original image.
        orig_img: the original image, uint8 [H, W, 3] BGR (None when it could not be read).
        ids: int64 [N] track ids (`Detector.track`), else None.
        error: why the image could not be read (its result is then empty), else None.
    """

    boxes: np.ndarray
    scores: np.ndarray
    classes: np.ndarray
    names: list[str]
    path: str | None = None
    frame: int = 0
    orig_shape: tuple[int, int] = (0, 0)
    orig_img: np.ndarray | None = field(default=None, repr=False)
    ids: np.ndarray | None = None
    error: str | None = None

    def __len__(self) -> int:
        return len(self.scores)

    def __repr__(self) -> str:
        what = (self.path or "array") + (f" frame {self.frame}" if self.frame else "")
        counts: dict[str, int] = {}
        for c in self.classes.tolist():
            counts[self.label(c)] = counts.get(self.label(c), 0) + 1
        found = ", ".join(f"{n} {name}" for name, n in counts.items()) or "nothing"
        if self.error:
            found = f"error: {self.error}"
        h, w = self.orig_shape
        return f"Result({what} {w}x{h}: {found})"

    def label(self, cls: int) -> str:
        """The name of class `cls` (its number where the model has no name for it)."""
        return self.names[cls] if 0 <= cls < len(self.names) else str(cls)

    @property
    def dets(self) -> np.ndarray:
        """float32 [N, 6] rows (x1, y1, x2, y2, score, class): the library's own form
        (`detect.inference.Predictor`'s output)."""
        return np.concatenate(
            [self.boxes, self.scores[:, None], self.classes[:, None].astype(np.float32)], 1
        ).astype(np.float32)

    def plot(
        self,
        line_width: int | None = None,
        labels: bool = True,
        conf: bool = True,
        img: np.ndarray | None = None,
    ) -> np.ndarray:
        """The image with its boxes drawn as `detect predict` draws them (track ids first in
        the labels, colours by id, as `detect track`).

        Args:
            line_width: box lines in pixels (None: from the image size).
            labels: draw the class names; conf: with the scores.
            img: draw on this BGR image instead of a copy of `orig_img`.
        Returns:
            uint8 [H, W, 3] BGR, a new array (`orig_img` is left as it is).
        Raises:
            DetectError when there is no image to draw on (it could not be read).
        """

        base = img if img is not None else self.orig_img
        if base is None:
            raise DetectError(f"no image to draw on: {self.error or 'not kept'}")
        hide = {"hide_labels": not labels, "hide_conf": not conf}
        return draw_detections(base.copy(), self.dets, self.names, line_width, ids=self.ids, **hide)

    def to_coco(self, image_id: int | str | None = None) -> list[dict]:
        """COCO results rows, as `detect predict --save-json` writes them:
        `{"image_id", "file_name", "category_id", "bbox": [x, y, w, h], "score"}` in pixels,
        `category_id` the class index; `image_id` defaults to the file stem (an int when all
        digits; a video frame: `<stem>_<frame>`), 0 for an array. Track results add
        `"track_id"`."""
        stem = Path(self.path).stem if self.path else ""
        if image_id is None:
            image_id = int(stem) if stem.isdigit() else (stem or 0)
            if self.path and self.frame:
                image_id = f"{stem}_{self.frame}"
        rows = []
        for k, ((x1, y1, x2, y2), s, c) in enumerate(
            zip(self.boxes.tolist(), self.scores.tolist(), self.classes.tolist(), strict=True)
        ):
            row = {"image_id": image_id, "file_name": Path(self.path).name if self.path else "",
                   "category_id": int(c),
                   "bbox": [round(x1, 3), round(y1, 3), round(x2 - x1, 3), round(y2 - y1, 3)],
                   "score": round(s, 5)}  # fmt: skip
            if self.ids is not None:
                row["track_id"] = int(self.ids[k])
            rows.append(row)
        return rows

    def to_supervision(self) -> Any:
        """A `supervision.Detections` (xyxy, confidence, class_id, tracker_id, and
        data["class_name"]), for supervision's annotators, zones and line counters.

        supervision is not a dependency of detect: this imports it (DetectError if it is not
        installed). Without it, `supervision.Detections(**result.supervision_fields())` is the
        same thing.
        """
        try:
            import supervision as sv
        except ImportError:
            raise DetectError(
                "to_supervision needs the supervision package (pip install supervision); "
                "supervision_fields() gives the same arrays without it"
            ) from None
        return sv.Detections(**self.supervision_fields())

    def supervision_fields(self) -> dict[str, Any]:
        """The keyword arguments of `supervision.Detections(...)`: xyxy float32 [N, 4],
        confidence float32 [N], class_id int64 [N], tracker_id int64 [N] or None, and
        data {"class_name": str array [N]} (supervision's own key for the names)."""
        return {
            "xyxy": self.boxes.astype(np.float32),
            "confidence": self.scores.astype(np.float32),
            "class_id": self.classes.astype(np.int64),
            "tracker_id": None if self.ids is None else self.ids.astype(np.int64),
            "data": {"class_name": np.array([self.label(c) for c in self.classes.tolist()])},
        }


def _result(names, dets: np.ndarray | None, frame: Frame, ids=None) -> Result:
    path = None if frame.source.path is None else str(frame.source.path)
    if frame.source.kind in ("camera", "stream"):
        path = frame.source.name
    if dets is None:
        empty = np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64)
        return Result(*empty, names, path, frame.index, error=frame.error)
    dets = np.asarray(dets, np.float32).reshape(-1, 6)
    img = frame.image
    return Result(
        boxes=dets[:, :4].copy(), scores=dets[:, 4].copy(), classes=dets[:, 5].astype(np.int64),
        names=names, path=path, frame=frame.index, orig_shape=tuple(img.shape[:2]),
        orig_img=img, ids=None if ids is None else np.asarray(ids, np.int64),
    )  # fmt: skip


# ---------------------------------------------------------------- inputs


def as_bgr(image: Any, channels: str = "bgr") -> np.ndarray:
    """One image in memory -> uint8 [H, W, 3] BGR, contiguous.

    Args:
        image: a numpy array, uint8 [H, W, 3] (BGR as cv2.imread gives; `channels="rgb"` for
            RGB, as PIL, matplotlib and torchvision give), [H, W, 4] (BGRA / RGBA: alpha
            dropped) or [H, W] (grayscale); or a PIL image (any mode, converted from RGB).
    Raises:
        DetectError naming what was expected, for another shape, dtype or type.
    """
    if channels not in ("bgr", "rgb"):
        raise DetectError(f"channels must be 'bgr' or 'rgb', got {channels!r}")
    if _is_pil(image):
        rgb = np.asarray(image.convert("RGB"))
        return np.ascontiguousarray(rgb[:, :, ::-1])
    if not isinstance(image, np.ndarray):
        raise DetectError(
            "expected an image: a numpy array uint8 [H, W, 3] BGR, a PIL image, or a path; "
            f"got {type(image).__name__}"
        )
    shape = "x".join(map(str, image.shape))
    if image.dtype != np.uint8:
        hint = " (floats in 0..1: (img * 255).astype(np.uint8))" if image.dtype.kind == "f" else ""
        raise DetectError(f"expected a uint8 image array, got {image.dtype} [{shape}]{hint}")
    if image.ndim == 2:
        return np.ascontiguousarray(np.repeat(image[:, :, None], 3, 2))
    if image.ndim != 3 or image.shape[2] not in (3, 4) or min(image.shape[:2]) < 1:
        hint = ""
        if image.ndim == 3 and image.shape[0] in (1, 3, 4) and image.shape[2] > 4:
            hint = " (channels first? use img.transpose(1, 2, 0))"
        raise DetectError(
            f"expected an image array [H, W, 3] (or [H, W] gray, [H, W, 4] with alpha), "
            f"got [{shape}]{hint}"
        )
    img = image[:, :, :3]
    if channels == "rgb":
        img = img[:, :, ::-1]
    return np.ascontiguousarray(img)


def _is_pil(obj: Any) -> bool:
    return type(obj).__module__.startswith("PIL.") and hasattr(obj, "convert")


def _array_frame(img: np.ndarray, k: int) -> Frame:
    src = Source("image", None, _ARRAY_NAME, Path(f"image{k}.jpg"), image_id=k)
    return Frame(src, 0, img)


def _frames(source: Any, channels: str) -> tuple[Iterator[Frame], bool]:
    """Frames of any input the API takes, and whether they are lazy (read as they go: a
    video, folder, glob, list file, stream or camera) rather than all at hand."""
    items = list(source) if isinstance(source, (list, tuple)) else [source]
    if isinstance(source, np.ndarray) and source.ndim == 4:  # a batch [B, H, W, C]
        items = list(source)
    lazy = False
    parts: list[Any] = []  # Frames of arrays, or lists of Sources
    k = 0
    for item in items:
        if isinstance(item, (str, Path)):
            srcs = expand_sources([str(item)])
            if len(srcs) > 1 or srcs[0].kind != "image" or Path(str(item)).is_dir():
                lazy = True
            parts.append(srcs)
        else:
            parts.append(_array_frame(as_bgr(item, channels), k))
            k += 1
    if not parts:
        raise DetectError("no image given (an empty list)")

    def gen() -> Iterator[Frame]:
        for p in parts:
            if isinstance(p, Frame):
                yield p
            else:
                yield from iter_frames(p)

    return gen(), lazy


# ---------------------------------------------------------------- the detector


class Detector:
    """A detection model: call it on images, train, evaluate, export and track with it.

    Args:
        weights: a `.safetensors` file, a model exported by `detect export` (`.onnx` file,
            OpenVINO folder), or None: the shipped default model (`detect.resources`; on the
            CPU its ONNX export, run without PyTorch, as `detect predict` does).
        device: "auto" (CUDA when present), "cpu", "cuda", "cuda:N", "mps".
        **options: prediction defaults for every call (`detect.settings.PredictConfig`
            fields: conf=0.25, iou=0.45, imgsz (the weights'), max_det=300, classes,
            agnostic_nms, batch=8, augment, half, tile, ...).
    Raises:
        DetectError for a missing or bad weights file, an unknown option or a bad value.

    Attributes: `names` (class names), `imgsz`, `weights` (Path), `runtime` ("pytorch",
    "onnxruntime", "openvino").
    """

    def __init__(self, weights: str | Path | None = None, device: str = "auto", **options):

        self.device = device
        self.default = weights is None
        self.weights = Path(
            resources.default_predict_weights(device, bool(options.get("half")))
            if weights is None
            else weights
        )
        self.cfg = _config(PredictConfig(), options)
        self._load()

    def _load(self) -> None:

        self._predictor = make_predictor(str(self.weights), self.cfg, self.device)
        self._model = self._predictor.model  # loaded once; other settings reuse it
        self.names: list[str] = list(self._predictor.names)
        self.imgsz: int = int(self._predictor.imgsz)
        self.runtime: str = self._predictor.runtime
        self.trackers: dict = {}  # `track(..., persist=True)`: ByteTrackers kept between calls

    def __repr__(self) -> str:
        return (f"Detector({str(self.weights)!r}: {len(self.names)} classes, imgsz {self.imgsz}, "
                f"{self.runtime})")  # fmt: skip

    def predictor(self, cfg: PredictConfig | None = None) -> Any:
        """The `detect.inference` predictor for `cfg` (default: this detector's): BGR arrays in,
        float32 [K, 6] rows (x1, y1, x2, y2, score, class) out. The model is shared."""

        cfg = cfg or self.cfg
        if cfg == self._predictor.cfg:
            return self._predictor
        if cfg.half:  # fp16 weights are a copy made from the file
            return make_predictor(str(self.weights), cfg, self.device)
        return make_predictor(self._model, cfg, self.device)

    def __call__(
        self, source: Any, *, channels: str = "bgr", stream: bool | None = None, **options
    ) -> list[Result] | Iterator[Result]:
        """Detect objects.

        Args:
            source: an image path, a folder (recursive), a glob, a `.txt` list of paths, a video
                file, a stream URL, a camera index ("0"), a numpy array ([H, W, 3] uint8,
                BGR; [B, H, W, 3] for several), a PIL image, or a list of any of these.
            channels: "bgr" (OpenCV's order, the default) or "rgb": how to read numpy arrays.
            stream: True: a generator, one Result at a time (flat memory); False: a list.
                None (default): a generator when the source is read as it goes (a video, a
                folder, a glob, a list file, a stream or a camera), else a list.
            **options: this call's prediction settings (conf, iou, imgsz, classes, max_det,
                agnostic_nms, batch, augment, tile, ...), over the detector's.
        Returns:
            One Result per image or frame, in order; an image that cannot be read gives a
            Result with `error` set and no boxes.
        Raises:
            DetectError for a path that does not exist, an array of the wrong shape or dtype,
            or a bad setting.
        """
        cfg = _config(self.cfg, options)
        predictor = self.predictor(cfg)
        frames, lazy = _frames(source, channels)
        out = self._detect(frames, predictor, cfg.batch, lazy)
        return out if (stream if stream is not None else lazy) else list(out)

    def _detect(self, frames: Iterator[Frame], predictor, batch: int, lazy: bool):
        if lazy:
            frames = prefetch(frames, depth=2 * batch)
        pending: list[Frame] = []

        def flush() -> Iterator[Result]:
            good = [f for f in pending if f.error is None]
            results = iter(predictor([f.image for f in good]) if good else [])
            for f in pending:
                yield _result(self.names, None if f.error else next(results), f)

        for f in frames:
            pending.append(f)
            if f.source.kind in ("camera", "stream") or (
                sum(p.error is None for p in pending) >= batch
            ):
                yield from flush()
                pending = []
        yield from flush()

    predict = __call__

    def track(
        self,
        source: Any,
        *,
        channels: str = "bgr",
        stream: bool | None = None,
        persist: bool = False,
        tracker: Any = None,
        **options,
    ) -> list[Result] | Iterator[Result]:
        """Detect and track objects through frames: ByteTrack (`detect.track`), as
        `detect track`; each Result has `ids` (int64 [N], the same id for the same object
        across frames) and its boxes are the tracks' (Kalman-filtered) boxes.

        Args:
            source: as `__call__`. A video, camera or stream is one sequence; so are the images
                of one folder, glob or list (in sorted order), and the arrays of one call.
            persist: keep the tracks for the next call (one frame per call from your own loop,
                as ultralytics' `track(frame, persist=True)`); `self.trackers.clear()` resets.
            tracker: ByteTrack's settings: a `detect.track.TrackerConfig` or a dict of its
                fields (high_thresh 0.5, low_thresh 0.1, new_track_thresh 0.6, match_thresh
                0.8, track_buffer 30).
            **options: prediction settings as `__call__`; `conf` defaults to
                `tracker.low_thresh` (0.1): ByteTrack needs the low-score boxes.
        Returns:
            One Result per frame (a generator for videos, folders and other lazy sources,
            as `__call__`).
        """

        if isinstance(tracker, dict):
            tracker = TrackerConfig(**tracker)
        tcfg = (tracker or TrackerConfig()).check()
        cfg = _config(self.cfg, {"conf": tcfg.low_thresh, **options})
        predictor = self.predictor(cfg)
        frames, lazy = _frames(source, channels)
        if lazy:
            frames = prefetch(frames, depth=2 * cfg.batch)
        if not persist:
            self.trackers = {}
        items = track_frames(frames, predictor, tcfg, cfg.batch, self.trackers)
        out = (
            _result(self.names, None, t.frame)
            if t.tracks is None
            else _result(
                self.names,
                np.concatenate([t.tracks[:, :4], t.tracks[:, 5:7]], 1),
                t.frame,
                t.tracks[:, 4],
            )  # fmt: skip
            for t in items
        )
        return out if (stream if stream is not None else lazy) else list(out)

    # ------------------------------------------------------------ the other commands

    def _trainable(self) -> Path:
        """The safetensors behind this detector (the default model's, for its ONNX export)."""

        if self.default:
            return resources.default_weights()
        if is_exported(self.weights):
            raise DetectError(
                f"{self.weights}: an exported model cannot be trained or exported again; "
                "use the .safetensors weights it was exported from"
            )
        return self.weights

    def train(self, data: str | Path, callback: Any = None, **options) -> Any:
        """Train on `data`, as `detect train DATA`, starting from this detector's weights
        (fine-tuning, as ultralytics' `YOLO(w).train`); `weights=None` trains from scratch.
        Afterwards this detector predicts with the run's best weights.

        Args:
            data: an ultralytics YAML, a COCO instances JSON or a VOC folder.
            callback: `callback(event)` with detect.engine.events (progress, epoch rows).
            **options: `detect train`'s options by their Python names, with its defaults
                (`detect.settings.TrainConfig`): epochs, time (minutes), imgsz, batch, model,
                lr, patience, out, device (default: this detector's), ...
        Returns:
            detect.engine.TrainResult: run_dir, best and last weights, epochs, map50, map.
        Raises:
            DetectError for bad data or options.
        """
        from detect.engine import TrainConfig, train  # (torch)

        opts = dict(options)
        if "weights" not in opts:
            opts["weights"] = str(self._trainable())
        opts.setdefault("device", self.device)
        cfg = TrainConfig.create(data=str(data), **opts)
        result = train(cfg, callback)
        if result.best and Path(result.best).is_file():
            self.weights, self.default = Path(result.best), False
            self._load()
        return result

    def evaluate(
        self,
        data: str | Path,
        split: str = "val",
        images: str | Path | None = None,
        callback: Any = None,
        **options,
    ) -> Any:
        """Predict `data`'s split and score it, as `detect evaluate DATA --weights W`, with its
        defaults: the validation settings training uses (`detect.settings.VAL_CONF`,
        `VAL_IOU`; the batch the weights were validated at, `validation_batch`), so the
        numbers are the training table's.

        Args:
            data: an ultralytics YAML, a COCO instances JSON or a VOC folder.
            split: which split (for VOC: a list in ImageSets/Main).
            images: the image folder of a COCO JSON (default: next to it).
            callback: `callback(done, total)` after each batch.
            **options: conf, iou, max_det, imgsz, batch, augment.
        Returns:
            detect.metrics.EvalResult: `map50`, `map` (mAP50-95), `coco_stats` (pycocotools'
            12), `voc`, per-class figures, `operating` (best-F1 confidence), `to_json()`.
            Skipped or mended data is in `.report` (a detect.data.types.ReadReport).
        Raises:
            DetectError for bad data, or a model whose classes are not the data set's.
        """
        from detect.inference.dataset import predict_records  # (torch)

        batch = validation_batch(self._predictor.meta)
        opts = {"conf": VAL_CONF, "iou": VAL_IOU, "max_det": VAL_MAX_DET, "batch": batch,
                **options}  # fmt: skip
        report = ReadReport()
        gt = load_dataset(data, split=split, images=images, report=report)
        dets = predict_records(gt, self._model, device=_device(self), callback=callback, **opts)
        result = score(gt, dets)
        result.report = report
        return result

    def export(self, format: str = "onnx", imgsz: int | None = None, out: str | Path | None = None):
        """Export for deployment, as `detect export W --format F`: ONNX (file), OpenVINO
        (folder) or TorchScript; decoded rows before NMS, dynamic batch, height and width,
        the class names and input size inside. Returns the path written."""
        from detect.models import load_weights  # (torch)
        from detect.models.export import FORMATS, default_output, export_model

        if format not in FORMATS:
            raise DetectError(f"unknown export format {format!r} (expected {', '.join(FORMATS)})")
        src = self._trainable()
        model, meta = load_weights(src)
        meta["source"] = {"file": src.name, "sha256": file_sha256(src)}
        size = imgsz or int(meta.get("imgsz") or 320)
        dst = default_output(src, format) if out is None else Path(out)
        return export_model(model, format, dst, size, meta)


def _device(det: Detector) -> Any:
    if det.runtime != "pytorch":
        return "cpu"
    return det._predictor.device


def _config(base: PredictConfig, options: dict) -> PredictConfig:
    """`base` with `options` over it, checked; DetectError names an unknown option."""
    known = {f.name for f in dataclasses.fields(PredictConfig)}
    unknown = sorted(set(options) - known)
    if unknown:
        raise DetectError(
            f"unknown option {', '.join(unknown)} (prediction options: {', '.join(sorted(known))})"
        )
    return dataclasses.replace(base, **options).check()


def validation_batch(weights: Any) -> int:
    """The batch `weights` (a .safetensors path, or its metadata dict) were validated at in
    training, from its training summary; else 16. Validation predicts a batch at one letterbox
    shape (the largest of its images'), so the same batch gives the same boxes."""
    meta = weights
    if not isinstance(weights, dict):
        meta = {}
        if str(weights).endswith(".safetensors") and Path(weights).is_file():
            from detect.models.weights_file import read_metadata

            meta = read_metadata(weights)
    batch = (meta.get("training") or {}).get("batch")
    return int(batch) if batch else 16
