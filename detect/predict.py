"""Prediction: images in, boxes in original pixels out.

Pipeline per batch: letterbox to `imgsz` -> one forward pass -> decode + NMS on the model's device
(`detect.boxes.postprocess`) -> boxes mapped back to original pixels (`unletterbox_boxes`).
Reading runs one step ahead in a background thread (OpenCV releases the GIL while decoding), and
nothing is accumulated: a folder or a video of any length streams through in constant memory.

Two entry points:
- `predict_records(records, model_or_weights, ...) -> Detections`: a data set's images, for the
  training loop's validation and `detect evaluate DATA --weights`.
- `run_predict(sources, weights, cfg, ...) -> PredictSummary`: `detect predict`; writes annotated
  images / videos, YOLO label files and a COCO results list into a new run folder.

The library never prints; progress is reported through an optional callback.
"""

from __future__ import annotations

import json
import os
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import numpy as np

from detect.errors import DetectError
from detect.files import temp_beside

if TYPE_CHECKING:
    import torch

    from detect.data.types import DatasetRecords, Detections
    from detect.sources import Frame, Source

METHODS = ("yolo", "sliding", "conv-sliding")


@dataclass
class PredictConfig:
    """How to predict; the defaults are `detect predict`'s."""

    imgsz: int | None = None  # letterbox side; None: the size the weights were trained at
    conf: float = 0.25  # keep detections scoring at least this (obj * class prob)
    iou: float = 0.45  # NMS IoU threshold (per class)
    max_det: int = 300  # cap per image, highest scores kept
    classes: list[int] | None = None  # keep only these class ids
    multi_label: bool = False  # one row per (box, class) above conf: evaluation wants it
    batch: int = 8  # images per forward pass; larger amortises Python overhead
    method: str = "yolo"  # "yolo" | "sliding" | "conv-sliding" (window classifier weights)
    scales: str | Sequence[int] | None = None  # sliding: window sides in px (None: its default)
    stride: int | None = None  # sliding: window step in pixels (None: the classifier's stride)

    def validate(self) -> PredictConfig:
        if self.method not in METHODS:
            raise DetectError(f"unknown --method {self.method!r} (use {', '.join(METHODS)})")
        if self.imgsz is not None and (self.imgsz < 32 or self.imgsz % 32):
            raise DetectError(f"--imgsz must be a positive multiple of 32, got {self.imgsz}")
        if not 0.0 <= self.conf <= 1.0:
            raise DetectError(f"--conf must be in [0, 1], got {self.conf}")
        if not 0.0 <= self.iou <= 1.0:
            raise DetectError(f"--iou must be in [0, 1], got {self.iou}")
        if self.max_det < 1:
            raise DetectError(f"--max-det must be >= 1, got {self.max_det}")
        if self.batch < 1:
            raise DetectError(f"--batch must be >= 1, got {self.batch}")
        return self


# ---------------------------------------------------------------------------------------------
# Model loading and one batch of inference


def _unwrap(model: Any) -> Any:
    """The bare model under DDP / DataParallel wrappers."""
    return getattr(model, "module", model)


def _model_device(model: Any) -> torch.device:
    import torch

    for p in model.parameters():
        return p.device
    return torch.device("cpu")


def load_model(model_or_weights: Any, device: str | torch.device = "cpu") -> tuple[Any, dict]:
    """A model in memory is returned as is (never moved); a path is loaded onto `device`.

    Returns (model, meta) where meta is the weights' metadata ({} for a model in memory).
    """
    if isinstance(model_or_weights, (str, Path)):
        from detect.weights import load_weights

        path = Path(model_or_weights)
        if not path.is_file():
            raise DetectError(f"weights file not found: {path}")
        if isinstance(device, str):
            from detect.device import select_device

            device = select_device(device)
        model, meta = load_weights(path, device=device)
        return model, dict(meta or {})
    if not hasattr(model_or_weights, "parameters"):
        raise DetectError(f"expected a model or a weights path, got {type(model_or_weights)!r}")
    return model_or_weights, {}


def model_imgsz(model: Any, meta: dict | None = None) -> int:
    """The input side the model was trained at: weights metadata, else its config, else 320."""
    if meta and meta.get("imgsz"):
        return int(meta["imgsz"])
    cfg = getattr(_unwrap(model), "cfg", None)
    return int(getattr(cfg, "imgsz", 320) or 320)


def model_names(model: Any, meta: dict | None = None) -> list[str]:
    cfg = getattr(_unwrap(model), "cfg", None)
    names = list(getattr(cfg, "names", []) or [])
    if not names and meta and meta.get("names"):
        names = list(meta["names"])
    return names


@dataclass
class Letterboxed:
    """Where one image went inside the square input: what mapping back needs."""

    scale: float
    pad: tuple[float, float]  # (padx, pady) pixels added left / top
    orig_hw: tuple[int, int]


def letterbox_batch(images: Sequence[np.ndarray], imgsz: int) -> tuple[np.ndarray, list]:
    """Letterbox BGR images into one RGB uint8 array [B, S, S, 3] and their geometry."""
    import cv2

    from detect.data.transforms import letterbox

    out = np.empty((len(images), imgsz, imgsz, 3), np.uint8)  # [B,S,S,3]
    metas = []
    for i, img in enumerate(images):
        lb, scale, pad = letterbox(img, imgsz)
        cv2.cvtColor(lb, cv2.COLOR_BGR2RGB, dst=out[i])  # the models are trained on RGB
        metas.append(Letterboxed(float(scale), (float(pad[0]), float(pad[1])), img.shape[:2]))
    return out, metas


def to_input(batch_rgb: np.ndarray, device: torch.device) -> torch.Tensor:
    """uint8 [B, S, S, 3] RGB -> float Tensor[B, 3, S, S] in 0..1 on `device`.

    The uint8 array crosses to the device (4x fewer bytes than float). The result keeps the
    NHWC layout in memory (channels_last): no transposing copy, and oneDNN convolutions run
    ~25% faster on it than on NCHW (bench/README.md, Predict).
    """
    import torch

    x = torch.from_numpy(batch_rgb).to(device, non_blocking=True)  # [B,S,S,3]
    return x.permute(0, 3, 1, 2).float().div_(255.0)  # [B,3,S,S] channels_last


def map_back(dets: torch.Tensor, meta: Letterboxed) -> np.ndarray:
    """Tensor[K, 6] rows (x1, y1, x2, y2, score, class) in input pixels -> float32 ndarray[K, 6]
    with boxes in original pixels (clipped to the image)."""
    from detect.data.transforms import unletterbox_boxes

    d = dets.detach().float().cpu().numpy()  # [K,6]
    if len(d):
        boxes = unletterbox_boxes(d[:, :4], meta.scale, meta.pad, meta.orig_hw)
        d[:, :4] = np.asarray(boxes, dtype=np.float32)
    return d.astype(np.float32, copy=False)


class Predictor:
    """A model ready to predict, with its settings and running time counters.

    `predictor(images)` takes BGR uint8 images of any sizes and returns one float32
    ndarray[K, 6] per image: rows (x1, y1, x2, y2, score, class), boxes in original pixels, by
    decreasing score. `times` accumulates seconds of pre-processing, inference and
    post-processing, `images` the number of images seen.
    """

    def __init__(
        self,
        model_or_weights: Any,
        cfg: PredictConfig | None = None,
        device: str | torch.device = "cpu",
    ) -> None:
        self.cfg = (cfg or PredictConfig()).validate()
        self.model, self.meta = load_model(model_or_weights, device)
        self.net = _unwrap(self.model)
        self.device = _model_device(self.net)
        self.names = model_names(self.net, self.meta)
        bad = [c for c in self.cfg.classes or () if not 0 <= c < len(self.names)]
        if bad:
            raise DetectError(
                f"--classes {bad[0]}: the model has classes 0..{len(self.names) - 1} "
                f"({', '.join(self.names[:6])}{', ...' if len(self.names) > 6 else ''})"
            )
        self.imgsz = self.cfg.imgsz or model_imgsz(self.net, self.meta)
        arch = getattr(getattr(self.net, "cfg", None), "arch", None)
        if self.cfg.method == "yolo" and arch == "window":
            raise DetectError(
                "these weights are a window classifier: use --method sliding or conv-sliding"
            )
        if self.cfg.method != "yolo" and arch not in (None, "window"):
            raise DetectError(
                f"--method {self.cfg.method} needs window classifier weights "
                f"(e.g. weights/shapes-window.safetensors), got a '{arch}' detector"
            )
        self._conv = None  # conv-sliding: the classifier rewritten as a conv net
        if isinstance(model_or_weights, (str, Path)) and self.cfg.method == "yolo":
            fuse = getattr(self.net, "fuse", None)
            if callable(fuse):  # our own copy: fold BN into the convs (fewer kernels per layer)
                fuse()
        self.times = {"pre": 0.0, "inference": 0.0, "post": 0.0}
        self.images = 0

    def _sync(self) -> None:
        if self.device.type == "cuda":
            import torch

            torch.cuda.synchronize(self.device)

    def __call__(self, images: Sequence[np.ndarray]) -> list[np.ndarray]:
        if not len(images):
            return []
        import torch

        was_training = self.net.training
        self.net.eval()
        try:
            with torch.inference_mode():
                out = self._yolo(images) if self.cfg.method == "yolo" else self._sliding(images)
        finally:
            self.net.train(was_training)
        self.images += len(images)
        return out

    def _yolo(self, images: Sequence[np.ndarray]) -> list[np.ndarray]:
        from detect.boxes import postprocess

        c = self.cfg
        t0 = time.perf_counter()
        batch, metas = letterbox_batch(images, self.imgsz)
        x = to_input(batch, self.device)  # [B,3,S,S]
        self._sync()
        t1 = time.perf_counter()
        decoded = self.net.predict(x)  # [B,N,5+C]
        self._sync()
        t2 = time.perf_counter()
        dets = postprocess(decoded, c.conf, c.iou, c.max_det, c.classes, c.multi_label)
        out = [map_back(d, m) for d, m in zip(dets, metas, strict=True)]
        t3 = time.perf_counter()
        self.times["pre"] += t1 - t0
        self.times["inference"] += t2 - t1
        self.times["post"] += t3 - t2
        return out

    def _sliding(self, images: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Window classifier, one image at a time (detect.sliding batches the windows); its time
        counts as inference."""
        from detect import sliding

        c = self.cfg
        if c.method == "conv-sliding" and self._conv is None:
            from detect.models.window import to_conv

            self._conv = to_conv(self.net).eval()  # convert once, not per image
        out = []
        for img in images:
            t0 = time.perf_counter()
            d = sliding.detect_windows(
                self.net,
                img,
                method=c.method,
                scales=c.scales,
                stride=c.stride,
                conf=c.conf,
                iou=c.iou,
                max_det=c.max_det,
                classes=c.classes,
                conv_model=self._conv,
            )
            self._sync()
            t1 = time.perf_counter()
            out.append(d.detach().float().cpu().numpy().reshape(-1, 6))
            self.times["inference"] += t1 - t0
            self.times["post"] += time.perf_counter() - t1
        return out

    def ms_per_image(self) -> dict[str, float]:
        n = max(self.images, 1)
        return {k: 1000.0 * v / n for k, v in self.times.items()}


# ---------------------------------------------------------------------------------------------
# Streaming helpers


def prefetch(items: Iterable, depth: int = 2) -> Iterator:
    """Iterate `items` in a background thread, at most `depth` items ahead.

    Decoding images / video frames overlaps with inference (both release the GIL). Bounded, so
    memory stays flat. Exceptions in the producer are re-raised in the consumer.
    """
    q: queue.Queue = queue.Queue(maxsize=max(depth, 1))
    stop = threading.Event()
    end = object()

    def produce() -> None:
        try:
            for item in items:
                while not stop.is_set():
                    try:
                        q.put((item, None), timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            q.put((end, None))
        except BaseException as e:  # handed to the consumer
            q.put((end, e))

    thread = threading.Thread(target=produce, name="detect-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            item, err = q.get()
            if item is end:
                if err is not None:
                    raise err
                return
            yield item
    finally:
        stop.set()
        while thread.is_alive():  # drain so a blocked put can see `stop`
            try:
                q.get_nowait()
            except queue.Empty:
                thread.join(timeout=0.05)


def batched(items: Iterable, n: int) -> Iterator[list]:
    buf: list = []
    for item in items:
        buf.append(item)
        if len(buf) == n:
            yield buf
            buf = []
    if buf:
        yield buf


# ---------------------------------------------------------------------------------------------
# A data set's images -> Detections (validation / evaluate --weights)


def _read_or_none(path: Path | None) -> tuple[np.ndarray | None, str | None]:
    from detect.data.image import read_image

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
) -> Detections:
    """Predict every image of `records`; boxes in original pixels, ready for `evaluate`.

    Args:
        records: the images (their `path`s are read; ground truth is not used).
        model_or_weights: a Detector in memory (used on its own device and left there, its
            train/eval mode restored afterwards) or a weights path (loaded onto `device`).
        imgsz: letterbox side (None: the model's training size).
        conf, iou, max_det, multi_label: as `detect.boxes.postprocess`.
        device: where to load weights given as a path; ignored for a model in memory.
        batch: images per forward pass.
        callback: called as `callback(done, total)` after each batch.
    Returns:
        Detections with `image` indexing `records.images`. An unreadable image is skipped
        and reported in `records.report` ("bad_image"; its objects then count as missed).
    Raises:
        DetectError: the model's classes are not the data set's (`check_class_names`), or not
            one image could be read (a split whose images are all missing scores nothing).
    """
    from detect.data.types import Detections

    cfg = PredictConfig(
        imgsz=imgsz, conf=conf, iou=iou, max_det=max_det, multi_label=multi_label, batch=batch
    )
    predictor = Predictor(model_or_weights, cfg, device)
    check_class_names(predictor.names, records.names, str(records.source))
    total = len(records.images)
    failed: list[str] = []

    def load(i: int) -> tuple[int, np.ndarray | None, str | None]:
        img, err = _read_or_none(records.images[i].path)
        return i, img, err

    parts_i, parts_d = [], []
    done = 0
    loaded = (load(i) for i in range(total))
    for chunk in batched(prefetch(loaded, depth=2 * batch), batch):
        good = [(i, img) for i, img, err in chunk if err is None]
        for _, _, err in chunk:
            if err is not None:
                failed.append(err)
                msg = f"{err}: not predicted, its objects count as missed"
                records.report.add("bad_image", msg)
        results = predictor([img for _, img in good])
        for (i, _), d in zip(good, results, strict=True):
            parts_i.append(np.full(len(d), i, np.int64))
            parts_d.append(d)
        done += len(chunk)
        if callback is not None:
            callback(done, total)
    if total and len(failed) == total:
        raise DetectError(
            f"{records.source}: none of the {total} images of split '{records.split}' could be "
            f"read (first: {failed[0]})"
        )
    if not parts_d:
        return Detections.empty()
    d = np.concatenate(parts_d)  # [D,6]
    return Detections(
        image=np.concatenate(parts_i),
        boxes=np.ascontiguousarray(d[:, :4], dtype=np.float32),
        scores=np.ascontiguousarray(d[:, 4], dtype=np.float32),
        classes=d[:, 5].astype(np.int64),
    )


def check_class_names(model: Sequence[str], data: Sequence[str], source: str) -> None:
    """Raise DetectError unless a model's class names are the data set's, in the same order.

    Scoring a model against data whose class ids mean other things gives a plausible wrong
    mAP. Placeholder names (`0`, `1`, ... as a YAML with only `nc` gets) match any names of
    the same count.
    """
    model, data = list(model), list(data)
    if model == data:
        return
    placeholder = [str(i) for i in range(len(data))]
    if len(model) == len(data) and placeholder in (model, data):
        return

    def show(names: list[str]) -> str:
        text = ", ".join(names[:8]) + (", ..." if len(names) > 8 else "")
        return f"{len(names)}: {text}"

    raise DetectError(
        f"{source}: the model's classes ({show(model)}) are not the data set's ({show(data)})"
    )


# ---------------------------------------------------------------------------------------------
# `detect predict`: sources -> annotated files, label files, a COCO results list, a summary

_WRITABLE_IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}


@dataclass
class SourceStats:
    """Counts for one SOURCE argument (a file, a folder, a glob, a video or a camera)."""

    arg: str
    kind: str  # "image" | "video" | "camera" | "folder" | "glob"
    frames: int = 0  # images / video frames predicted
    detections: int = 0
    failed: int = 0  # inputs (or broken videos) that could not be read


@dataclass
class PredictSummary:
    """What a `run_predict` did; the CLI turns it into tables and the exit code."""

    names: list[str]
    run_dir: Path | None  # None when nothing was written there (--no-images, no --save-txt)
    sources: list[SourceStats]
    class_counts: np.ndarray  # int64 [C] detections per class
    frames: int = 0  # images + video frames predicted
    detections: int = 0
    failed: list[str] = field(default_factory=list)  # one message per input that failed
    ms: dict[str, float] = field(default_factory=dict)  # per image: pre, inference, post
    saved_images: int = 0
    saved_videos: int = 0
    saved_labels: int = 0
    json_path: Path | None = None
    imgsz: int = 0
    device: str = "cpu"
    method: str = "yolo"
    seconds: float = 0.0


def _json_id(source: Source, index: int) -> tuple[int | str, str]:
    """(image_id, file_name) of one image or video frame in the COCO results list."""
    if source.kind == "image":
        return source.image_id, source.file_name
    return f"{source.image_id}_{index}", source.file_name


class _JsonRows:
    """A COCO results list written row by row (flat memory), atomically for a file.

    Rows go to a temporary file beside the target, renamed over it on `close`.
    """

    def __init__(self, target: Path | TextIO) -> None:
        self.path: Path | None = None
        self.tmp: str | None = None
        if isinstance(target, (str, Path)):
            self.path = Path(target)
            fd, self.tmp = temp_beside(self.path)
            self.f: TextIO = os.fdopen(fd, "w", encoding="utf-8")
        else:
            self.f = target
        self.n = 0
        self.f.write("[")

    def add(self, image_id: int | str, file_name: str, dets: np.ndarray) -> None:
        for x1, y1, x2, y2, score, cls in dets.tolist():
            row = {
                "image_id": image_id,
                "file_name": file_name,
                "category_id": int(cls),
                "bbox": [round(x1, 3), round(y1, 3), round(x2 - x1, 3), round(y2 - y1, 3)],
                "score": round(score, 5),
            }
            self.f.write(("\n  " if self.n == 0 else ",\n  ") + json.dumps(row))
            self.n += 1

    def close(self, ok: bool = True) -> None:
        self.f.write("\n]\n" if self.n else "]\n")
        self.f.flush()
        if self.path is None:
            return
        self.f.close()
        if ok:
            os.replace(self.tmp, self.path)
        else:
            Path(self.tmp).unlink(missing_ok=True)


def _write_atomic(path: Path, data: bytes) -> None:
    """Temporary file + rename, like detect.files.atomic_write_bytes but without the fsync.

    A reader never sees half a file; an annotated image or a label file is reproducible output,
    and one fsync per frame cost 0.5 s of a 10 s run over 200 images (bench/README.md).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _save_image(path: Path, img: np.ndarray) -> None:
    import cv2

    ok, buf = cv2.imencode(path.suffix, img)
    if not ok:
        raise DetectError(f"cannot encode image {path}")
    _write_atomic(path, buf.tobytes())


class _VideoOut:
    """An annotated copy of a video: mp4v, the source's fps and size, renamed into place when
    complete (an interrupted run leaves no half-written file under the final name)."""

    def __init__(self, path: Path, fps: float, size: tuple[int, int]) -> None:
        import cv2

        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
        self.writer = cv2.VideoWriter(str(self.tmp), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
        if not self.writer.isOpened():
            raise DetectError(f"cannot write video {path}")

    def write(self, img: np.ndarray) -> None:
        self.writer.write(img)

    def close(self) -> None:
        self.writer.release()
        os.replace(self.tmp, self.path)


def _yolo_lines(dets: np.ndarray, hw: tuple[int, int]) -> str:
    """`class cx cy w h conf` lines, coordinates normalised by the image size."""
    h, w = hw
    lines = []
    for x1, y1, x2, y2, score, cls in dets.tolist():
        cx, cy, bw, bh = (x1 + x2) / 2 / w, (y1 + y2) / 2 / h, (x2 - x1) / w, (y2 - y1) / h
        lines.append(f"{int(cls)} {cx:.6f} {cy:.6f} {bw:.6f} {bh:.6f} {score:.6f}")
    return "\n".join(lines) + "\n"


class _Outputs:
    """Everything `run_predict` writes for each predicted frame, streaming."""

    def __init__(
        self,
        run_dir: Path | None,
        names: list[str],
        save_images: bool,
        save_txt: bool,
        json_rows: _JsonRows | None,
    ) -> None:
        self.run_dir = run_dir
        self.names = names
        self.save_images = save_images
        self.save_txt = save_txt
        self.json = json_rows
        self.video: _VideoOut | None = None
        self.video_source: Source | None = None
        self.images = self.videos = self.labels = 0

    def _video_for(self, frame: Frame) -> _VideoOut:
        if self.video_source is not frame.source:
            self.close_video()
            from detect.sources import open_video

            h, w = frame.image.shape[:2]
            fps = 30.0
            if frame.source.kind == "video":
                cap, info = open_video(frame.source)
                cap.release()
                fps = info.fps
            path = self.run_dir / frame.source.rel.with_suffix(".mp4")
            self.video, self.video_source = _VideoOut(path, fps, (w, h)), frame.source
        return self.video

    def close_video(self) -> None:
        if self.video is not None:
            self.video.close()
            self.videos += 1
        self.video = self.video_source = None

    def write(self, frame: Frame, dets: np.ndarray) -> None:
        src = frame.source
        is_image = src.kind == "image"
        if self.json is not None:
            self.json.add(*_json_id(src, frame.index), dets)
        if self.save_txt and len(dets):
            rel = src.rel if is_image else src.rel.with_name(f"{src.rel.stem}_{frame.index}")
            path = self.run_dir / "labels" / rel.with_suffix(".txt")
            _write_atomic(path, _yolo_lines(dets, frame.image.shape[:2]).encode())
            self.labels += 1
        if not self.save_images:
            return
        from detect.draw import draw_detections

        img = draw_detections(frame.image, dets, self.names)
        if is_image:
            rel = src.rel
            if rel.suffix.lower() not in _WRITABLE_IMAGE_EXTS:
                rel = rel.with_suffix(".jpg")
            _save_image(self.run_dir / rel, img)
            self.images += 1
        else:
            self._video_for(frame).write(img)


def run_predict(
    sources: Sequence[str],
    weights: Any,
    cfg: PredictConfig | None = None,
    device: str = "auto",
    out: str | Path = "runs/predict",
    save_images: bool = True,
    save_txt: bool = False,
    save_json: Path | TextIO | None = None,
    vid_stride: int = 1,
    callback: Callable[[int, int | None, str], None] | None = None,
) -> PredictSummary:
    """Predict on SOURCE arguments and write the results; the library side of `detect predict`.

    Args:
        sources: image files, folders (recursive), globs, video files, camera indices.
        weights: a weights path (or a model in memory).
        cfg: thresholds, input size, batch, method.
        out: the run folder to create (`out`, else `out-2`, ...; never overwritten); made only
            when images or label files are saved.
        save_images: annotated images, and annotated videos (mp4v, the source's fps and size;
            with `vid_stride` N only every N-th frame is predicted and written, as ultralytics).
        save_txt: `labels/<name>.txt` per image (`<name>_<frame>.txt` per video frame) with
            `class cx cy w h conf` rows normalised to 0..1; none for an image without detections.
        save_json: a path or an open text stream for the COCO results list.
        callback: `callback(done, total, source_name)` after each frame; total is None when
            unknown (a camera).
    Returns:
        PredictSummary. Unreadable inputs are skipped and listed in `failed`.
    Raises:
        DetectError before any work for a missing path, an empty folder, bad options or weights.
    """
    from detect.files import new_run_dir
    from detect.sources import count_frames, expand_sources, iter_frames

    t_start = time.perf_counter()
    cfg = (cfg or PredictConfig()).validate()
    if vid_stride < 1:
        raise DetectError(f"--vid-stride must be >= 1, got {vid_stride}")
    srcs = expand_sources(sources)
    predictor = Predictor(weights, cfg, device)
    names = predictor.names
    total = count_frames(srcs, vid_stride) if callback is not None else None

    stats: dict[str, SourceStats] = {}
    for s in srcs:
        if s.arg in stats:
            stats[s.arg].kind = "folder" if Path(s.arg).is_dir() else "glob"
        else:
            stats[s.arg] = SourceStats(s.arg, s.kind)
    run_dir = new_run_dir(out) if (save_images or save_txt) else None
    json_rows = _JsonRows(save_json) if save_json is not None else None
    outputs = _Outputs(run_dir, names, save_images, save_txt, json_rows)
    summary = PredictSummary(
        names=names,
        run_dir=run_dir,
        sources=list(stats.values()),
        class_counts=np.zeros(max(len(names), 1), np.int64),
        imgsz=predictor.imgsz,
        device=str(predictor.device),
        method=cfg.method,
    )

    done = 0
    ok = False

    def finish(frame: Frame, dets: np.ndarray | None) -> None:
        nonlocal done
        st = stats[frame.source.arg]
        if frame.error is not None:
            st.failed += 1
            summary.failed.append(frame.error)
            if outputs.video_source is frame.source:
                outputs.close_video()
        else:
            outputs.write(frame, dets)
            st.frames += 1
            st.detections += len(dets)
            summary.frames += 1
            summary.detections += len(dets)
            cls = dets[:, 5].astype(np.int64)
            if len(cls) and cls.max() >= len(summary.class_counts):
                grown = np.zeros(cls.max() + 1, np.int64)
                grown[: len(summary.class_counts)] = summary.class_counts
                summary.class_counts = grown
            np.add.at(summary.class_counts, cls, 1)
        done += 1
        if callback is not None:
            callback(done, total, frame.source.name)

    try:
        pending: list[Frame] = []  # in arrival order; errors wait with the good frames
        n_good = 0

        def flush() -> None:
            nonlocal pending, n_good
            good = [f for f in pending if f.error is None]
            results = iter(predictor([f.image for f in good]))
            for f in pending:
                finish(f, None if f.error is not None else next(results))
                f.image = None  # drop pixels as soon as the frame is written
            pending, n_good = [], 0

        for frame in prefetch(iter_frames(srcs, vid_stride), depth=2 * cfg.batch):
            pending.append(frame)
            if frame.error is None:
                n_good += 1
            if n_good == cfg.batch:
                flush()
        flush()
        ok = True
    except KeyboardInterrupt:  # a camera is stopped with Ctrl-C: keep what was written
        ok = True
        raise
    finally:
        outputs.close_video()
        if json_rows is not None:
            json_rows.close(ok)
    summary.ms = predictor.ms_per_image()
    summary.saved_images, summary.saved_videos = outputs.images, outputs.videos
    summary.saved_labels = outputs.labels
    summary.json_path = json_rows.path if json_rows is not None else None
    summary.seconds = time.perf_counter() - t_start
    return summary
