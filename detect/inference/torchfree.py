"""The torch-free side of prediction: what an exported model needs, and tiling.

Imports numpy, OpenCV, detect.runtime and detect.tiling, never torch, so `detect predict
--weights model.onnx` (or an OpenVINO folder) starts in a fraction of a second (`import torch`
alone is ~2.7 s on a 2-core CPU):

- `letterbox_batch`: BGR images -> one RGB uint8 batch, square or rectangular (the smallest
  multiple of the stride holding the resized image, as ultralytics predicts; a batch shares the
  largest such shape), and where each image went (`Letterboxed`).
- `RuntimeBackend`: letterbox -> the exported model's forward pass (ONNX Runtime / OpenVINO)
  -> NMS in numpy (`detect.runtime.postprocess`) -> boxes mapped back; the same detections as
  the PyTorch `YoloBackend` on the weights it was exported from.
- `TiledBackend`: tiled inference around any backend: overlapping tiles plus the whole image,
  batched, boxes mapped back and merged across tiles (`detect.tiling`, SAHI's NMS or NMM).
- `AugmentedBackend`: test-time augmentation around any backend (`--augment`; the passes and
  their merge in `detect.inference.tta`).
- `wrap_backend`: test-time augmentation and tiling around the backend of any runtime.
- `ExportedPredictor`: `detect.inference.Predictor`'s interface for an exported model.

A backend takes BGR uint8 images of any sizes and returns one float32 ndarray[K, 6] per image,
rows (x1, y1, x2, y2, score, class) in original pixels by decreasing score, adding the seconds it
spent to `times["pre"]`, `times["inference"]` and `times["post"]`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import cv2
import numpy as np

from detect import runtime, tiling
from detect.errors import DetectError
from detect.inference.tta import TTA_VARIANTS, flip_boxes_lr, merge_passes, tta_sides
from detect.runtime import ExportedModel, letterbox, letterbox_shape, load_exported
from detect.settings import Method, PredictConfig

Times = dict[str, float]  # seconds per stage: "pre", "inference", "post"


class Backend(Protocol):
    def __call__(self, images: Sequence[np.ndarray], times: Times) -> list[np.ndarray]: ...


@dataclass
class Letterboxed:
    """Where one image went inside the network input: what mapping back needs."""

    scale: float
    pad: tuple[float, float]  # (padx, pady) pixels added left / top
    orig_hw: tuple[int, int]


def letterbox_batch(
    images: Sequence[np.ndarray], imgsz: int, rect: bool = False, stride: int = 32
) -> tuple[np.ndarray, list]:
    """Letterbox BGR images into one RGB uint8 array [B, H, W, 3] and their geometry.

    Square (`imgsz` x `imgsz`, equal to `detect.data.transforms.letterbox`), or with `rect` the
    smallest multiple of `stride` on each side that holds every resized image of the batch.
    """
    shapes = [letterbox_shape(im.shape[:2], imgsz, rect, stride) for im in images]
    hw = (max(h for h, _ in shapes), max(w for _, w in shapes))
    out = np.empty((len(images), *hw, 3), np.uint8)  # [B,H,W,3]
    metas = []
    for i, img in enumerate(images):
        lb, scale, pad = letterbox(img, imgsz, shape=hw)
        cv2.cvtColor(lb, cv2.COLOR_BGR2RGB, dst=out[i])  # the models are trained on RGB
        metas.append(Letterboxed(float(scale), (float(pad[0]), float(pad[1])), img.shape[:2]))
    return out, metas


def map_back_np(dets: np.ndarray, meta: Letterboxed) -> np.ndarray:
    """Rows `(x1, y1, x2, y2, score, class)` in input pixels (`detect.runtime.postprocess`'s)
    -> a float32 ndarray[K, 6] with the boxes in original pixels, clipped to the image."""
    d = np.array(dets, dtype=np.float32).reshape(-1, 6)
    if len(d):
        d[:, :4] = runtime.unletterbox_boxes(d[:, :4], meta.scale, meta.pad, meta.orig_hw)
    return d


class RuntimeBackend:
    """A model exported by `detect export` (detect.runtime.ExportedModel), on the CPU: letterbox,
    the runtime's forward pass, NMS in numpy. No torch in any step."""

    def __init__(self, model: ExportedModel, cfg: PredictConfig, imgsz: int) -> None:
        self.model, self.cfg, self.imgsz = model, cfg, imgsz
        # a fixed-size export (older versions) takes its square only
        self.rect = cfg.rect and model.dynamic

    def __call__(self, images: Sequence[np.ndarray], times: Times) -> list[np.ndarray]:
        c = self.cfg
        t0 = time.perf_counter()
        batch, metas = letterbox_batch(images, self.imgsz, self.rect, self.model.stride)
        x = np.ascontiguousarray(batch.transpose(0, 3, 1, 2))  # [B,3,H,W] uint8 RGB
        t1 = time.perf_counter()
        decoded = self.model(x)  # [B,N,5+C]
        t2 = time.perf_counter()
        dets = runtime.postprocess(
            decoded, c.conf, c.iou, c.max_det, c.classes, c.multi_label, c.agnostic_nms
        )
        out = [map_back_np(d, m) for d, m in zip(dets, metas, strict=True)]
        t3 = time.perf_counter()
        times["pre"] += t1 - t0
        times["inference"] += t2 - t1
        times["post"] += t3 - t2
        return out


class TiledBackend:
    """Tiled (sliced) inference over another backend, one image at a time (flat memory for
    any number of images or video frames).

    Per image: `tile` x `tile` windows overlapping by `overlap` (SAHI's), plus the whole image
    for the objects larger than a tile, in batches of `cfg.batch` through `inner`; each tile's
    boxes are mapped back to the image and all are merged (`detect.tiling.merge_detections`:
    class-wise NMS, or greedy NMM that re-joins an object cut by a tile border, matching at IOS
    >= `merge_threshold`). An image no larger than one tile is predicted once, whole.
    """

    def __init__(self, inner: Backend, cfg: PredictConfig) -> None:
        self.inner, self.cfg = inner, cfg

    def __call__(self, images: Sequence[np.ndarray], times: Times) -> list[np.ndarray]:
        c = self.cfg
        tile = int(c.tile or 0)
        out = []
        for img in images:
            h, w = img.shape[:2]
            if h <= tile and w <= tile:
                out.extend(self.inner([img], times))
                continue
            windows = tiling.tile_windows(w, h, tile, c.overlap)  # [K,4]
            crops = [tiling.crop(img, win) for win in windows] + [img]  # the whole image last
            dets: list[np.ndarray] = []
            for i in range(0, len(crops), c.batch):
                dets.extend(self.inner(crops[i : i + c.batch], times))
            t0 = time.perf_counter()
            merged = tiling.merge_detections(
                dets[:-1], windows, dets[-1], method=str(c.merge),
                threshold=c.merge_threshold, metric="ios", max_det=c.max_det,
            )  # fmt: skip
            out.append(merged)
            times["post"] += time.perf_counter() - t0
        return out


class AugmentedBackend:
    """Test-time augmentation around backends built by `make(side)` (one per input side of
    `TTA_VARIANTS`); same interface as any backend: BGR uint8 images in, one float32
    ndarray[K, 6] per image out (original pixels, by decreasing score). Every pass runs as one
    batch of all `images`; the time of the merge counts as post-processing."""

    def __init__(
        self,
        make: Callable[[int], Backend],
        cfg: PredictConfig,
        imgsz: int,
        stride: int,
        variants: Sequence[tuple[float, bool]] = TTA_VARIANTS,
    ) -> None:
        self.cfg = cfg
        sides = tta_sides(imgsz, stride, [s for s, _ in variants])
        self.passes = [(make(side), flip) for side, (_, flip) in zip(sides, variants, strict=True)]

    def __call__(self, images: Sequence[np.ndarray], times: Times) -> list[np.ndarray]:
        per_image: list[list[np.ndarray]] = [[] for _ in images]
        for backend, flip in self.passes:
            batch = [np.ascontiguousarray(im[:, ::-1]) for im in images] if flip else images
            for k, d in enumerate(backend(batch, times)):
                per_image[k].append(flip_boxes_lr(d, images[k].shape[1]) if flip else d)
        t0 = time.perf_counter()
        out = [merge_passes(p, self.cfg) for p in per_image]
        times["post"] += time.perf_counter() - t0
        return out


def wrap_backend(
    make: Callable[[int], Backend], cfg: PredictConfig, imgsz: int, stride: int
) -> Backend:
    """`make(imgsz)`, or with `--augment` the test-time augmentation over `make` at several
    sides (`detect.inference.tta`), inside `TiledBackend` with `--tile` (each tile augmented)."""
    backend = AugmentedBackend(make, cfg, imgsz, stride) if cfg.augment else make(imgsz)
    return TiledBackend(backend, cfg) if cfg.tile else backend


def backend_for(model: ExportedModel, cfg: PredictConfig, imgsz: int) -> Backend:
    """The backend of an exported model: `RuntimeBackend`, with `--augment` and `--tile`
    around it (`wrap_backend`)."""
    if cfg.augment and not model.dynamic:
        raise DetectError(
            f"{model.path}: --augment needs an export with dynamic height and width "
            "(re-export it with this version of detect export)"
        )
    return wrap_backend(lambda side: RuntimeBackend(model, cfg, side), cfg, imgsz, model.stride)


def check_batch(images: Any) -> None:
    """DetectError unless `images` is a list of images (a 4-D array passes): one array
    [H, W, 3] alone would be read as H images of one row each."""
    if isinstance(images, np.ndarray) and images.ndim != 4:
        raise DetectError(
            f"expected a list of BGR uint8 [H, W, 3] images, got one array of shape "
            f"{list(images.shape)}: pass [image] (detect.Detector takes either)"
        )


def check_classes(cfg: PredictConfig, names: Sequence[str]) -> None:
    """DetectError for a `--classes` id the model does not have."""
    bad = [c for c in cfg.classes or () if not 0 <= c < len(names)]
    if bad:
        raise DetectError(
            f"--classes {bad[0]}: the model has classes 0..{len(names) - 1} "
            f"({', '.join(names[:6])}{', ...' if len(names) > 6 else ''})"
        )


class ExportedPredictor:
    """`Predictor`'s interface for a model exported by `detect export`, without torch.

    `ExportedPredictor(path_or_model, cfg)(images)`: BGR uint8 images of any sizes in, one
    float32 ndarray[K, 6] per image out (rows x1, y1, x2, y2, score, class in original pixels,
    by decreasing score). The class names and input size are the export's (`cfg.imgsz`
    overrides the size where the export has dynamic height and width).

    Raises DetectError for a path that is not an export, a device other than the CPU, a
    sliding method, a `--classes` id the model lacks, or an `--imgsz` a fixed-size export
    cannot take.
    """

    exported = True

    def __init__(
        self,
        model_or_path: ExportedModel | str | Path,
        cfg: PredictConfig | None = None,
        device: Any = "auto",
    ) -> None:
        self.cfg = (cfg or PredictConfig()).check()
        if isinstance(model_or_path, ExportedModel):
            self.model = model_or_path
        else:
            if str(device) not in ("auto", "cpu"):
                raise DetectError(
                    f"{model_or_path}: an exported model runs on the CPU (ONNX Runtime / "
                    f"OpenVINO); use the .safetensors weights for --device {device}"
                )
            self.model = load_exported(model_or_path)
        if self.cfg.half:
            raise DetectError(
                f"{self.model.path}: --half runs fp16 on a CUDA GPU with .safetensors weights; "
                "an exported model runs float32 on the CPU"
            )
        if self.cfg.method != Method.yolo:
            raise DetectError(f"--method {self.cfg.method} needs window classifier weights")
        self.meta = dict(self.model.meta)
        self.names = list(self.model.names)
        check_classes(self.cfg, self.names)
        self.imgsz = self.cfg.imgsz or self.model.imgsz
        if not self.model.dynamic and self.imgsz != self.model.imgsz:
            raise DetectError(
                f"{self.model.path}: this export takes {self.model.imgsz} x {self.model.imgsz} "
                f"inputs only (--imgsz {self.imgsz})"
            )
        self.device = "cpu"
        self.backend = backend_for(self.model, self.cfg, self.imgsz)
        self.times: Times = {"pre": 0.0, "inference": 0.0, "post": 0.0}
        self.images = 0

    @property
    def runtime(self) -> str:
        """What runs the model: "onnxruntime" or "openvino"."""
        return self.model.backend

    def __call__(self, images: Sequence[np.ndarray]) -> list[np.ndarray]:
        check_batch(images)
        if not len(images):
            return []
        out = self.backend(images, self.times)
        self.images += len(images)
        return out

    def ms_per_image(self) -> dict[str, float]:
        n = max(self.images, 1)
        return {k: 1000.0 * v / n for k, v in self.times.items()}
