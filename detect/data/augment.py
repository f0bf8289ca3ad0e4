"""Training augmentations: mosaic, random scale/translate, horizontal flip, HSV jitter.

Everything is numpy + OpenCV on uint8 BGR images, one call each: `cv2.warpAffine` does the
whole geometric step in one pass and a 256-entry lookup table does the HSV jitter (YOLOv5's way).
Only scale, translation and flips are used, so boxes map exactly (no rotated-corner guess).
Boxes are `(x1, y1, x2, y2)` pixels throughout.

`AugmentedDataset` yields what `detect.data.dataset.DetectionDataset` yields, `(img Tensor[3, S, S]
uint8 RGB, targets Tensor[N, 5] (class, x1, y1, x2, y2), index)`, so the same `collate_fn`
batches both. Randomness comes from a generator seeded by (seed, epoch, index): a sample does not
depend on which worker loads it, so runs (and resumed runs) are reproducible.
"""

from __future__ import annotations

import hashlib
import io
import os
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from detect.data.dataset import DetectionDataset
from detect.data.transforms import flip_boxes_lr, flip_boxes_ud
from detect.data.types import DatasetRecords
from detect.errors import DetectError
from detect.files import WriteError, atomic_write_bytes

PAD = 114  # grey fill of letterbox / mosaic borders (YOLOv5's)


@dataclass
class AugmentConfig:
    """Augmentation strengths (YOLOv5/v8 defaults, suited to training from scratch)."""

    mosaic: float = 1.0  # probability of a 4-image mosaic (more objects and contexts per sample)
    scale: float = 0.5  # random zoom in 1 +- scale
    translate: float = 0.1  # random shift, fraction of the image side
    fliplr: float = 0.5  # probability of a horizontal flip
    flipud: float = 0.0  # probability of a vertical flip (off: most scenes have an up)
    hsv_h: float = 0.015  # hue gain (fraction of the hue circle)
    hsv_s: float = 0.7  # saturation gain
    hsv_v: float = 0.4  # value gain
    min_size: float = 2.0  # boxes smaller than this (pixels) after augmenting are dropped
    min_area: float = 0.1  # ... and boxes keeping less than this fraction of their area


def resize_long_side(img: np.ndarray, size: int) -> tuple[np.ndarray, float]:
    """Resize so the long side is `size` (aspect kept); returns (img, scale)."""
    h, w = img.shape[:2]
    r = size / max(h, w)
    if r != 1:
        interp = cv2.INTER_LINEAR if r > 1 else cv2.INTER_AREA
        img = cv2.resize(img, (max(1, round(w * r)), max(1, round(h * r))), interpolation=interp)
    return img, r


def affine_boxes(boxes: np.ndarray, m: np.ndarray) -> np.ndarray:
    """Apply a scale+translation 2x3 matrix to `[N, 4]` xyxy boxes (exact: no rotation/shear)."""
    out = boxes.copy()
    out[:, [0, 2]] = boxes[:, [0, 2]] * m[0, 0] + m[0, 2]
    out[:, [1, 3]] = boxes[:, [1, 3]] * m[1, 1] + m[1, 2]
    return out


def keep_boxes(
    after: np.ndarray, size: int, min_size: float, min_area: float
) -> tuple[np.ndarray, np.ndarray]:
    """Clip `after` ([N, 4] xyxy, unclipped) to the `size` square and say which boxes survive.

    A box survives if both sides are at least `min_size` and it keeps at least `min_area` of
    its unclipped area (so a sliver of an object cut by the border is not a target).
    """
    clipped = after.clip(0, size)
    w, h = clipped[:, 2] - clipped[:, 0], clipped[:, 3] - clipped[:, 1]
    full = (after[:, 2] - after[:, 0]) * (after[:, 3] - after[:, 1])
    keep = (w >= min_size) & (h >= min_size) & (w * h >= min_area * np.maximum(full, 1e-9))
    return clipped, keep


def random_affine(
    img: np.ndarray,
    boxes: np.ndarray,
    out_size: int,
    centre: tuple[float, float],
    rng: np.random.Generator,
    scale: float,
    translate: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Zoom by a random factor about `centre` and shift; crop to `out_size` square.

    The point `centre` of `img` lands at the output centre (plus the random shift).
    Returns (img `[S, S, 3]`, boxes `[N, 4]` unclipped).
    """
    s = rng.uniform(1 - scale, 1 + scale)
    tx = out_size / 2 + rng.uniform(-translate, translate) * out_size
    ty = out_size / 2 + rng.uniform(-translate, translate) * out_size
    m = np.array([[s, 0, tx - s * centre[0]], [0, s, ty - s * centre[1]]], dtype=np.float64)
    out = cv2.warpAffine(
        img, m, (out_size, out_size), flags=cv2.INTER_LINEAR, borderValue=(PAD, PAD, PAD)
    )
    return out, affine_boxes(boxes, m)


def augment_hsv(img: np.ndarray, rng: np.random.Generator, h: float, s: float, v: float) -> None:
    """Random hue/saturation/value gains, in place on a uint8 BGR image (lookup tables)."""
    if not (h or s or v):
        return
    r = rng.uniform(-1, 1, 3) * np.array([h, s, v]) + 1  # gains
    hue, sat, val = cv2.split(cv2.cvtColor(img, cv2.COLOR_BGR2HSV))
    x = np.arange(256, dtype=np.float64)
    lut_h = ((x * r[0]) % 180).astype(np.uint8)  # OpenCV hue is 0..179
    lut_s = np.clip(x * r[1], 0, 255).astype(np.uint8)
    lut_v = np.clip(x * r[2], 0, 255).astype(np.uint8)
    hsv = cv2.merge((cv2.LUT(hue, lut_h), cv2.LUT(sat, lut_s), cv2.LUT(val, lut_v)))
    cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR, dst=img)


@dataclass
class CacheReport:
    """What `AugmentedDataset.cache_images` did: `bytes` held in RAM (`folder` None) or on disk
    under `folder`, of which `reused` images were already cached by an earlier run."""

    images: int
    folder: Path | None = None
    bytes: int = 0
    reused: int = 0


def disk_cache_name(path: str | Path, imgsz: int) -> str:
    """The `--cache disk` file of an image: a hash of its absolute path, size, modification
    time and the training side, so an edited image or another `--imgsz` never reads a stale
    file."""
    p = Path(path).resolve()
    st = p.stat()
    key = f"{p}\0{st.st_size}\0{st.st_mtime_ns}\0{int(imgsz)}"
    return hashlib.sha1(key.encode("utf-8", "surrogateescape")).hexdigest()[:24] + ".npz"


def disk_cache_dir() -> Path:
    """Where `--cache disk` writes: `$DETECT_CACHE_DIR/images`, else the user's cache folder
    (`$XDG_CACHE_HOME/detect/images`, `~/.cache/detect/images`). Safe to delete any time."""
    root = os.environ.get("DETECT_CACHE_DIR")
    if root:
        return Path(root) / "images"
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "detect" / "images"


class AugmentedDataset(Dataset):
    """Training samples with augmentation; see the module docstring for the item format.

    Args:
        records: the training split.
        imgsz: output side S.
        cfg: augmentation strengths; `AugmentConfig(mosaic=0, scale=0, translate=0, fliplr=0,
            hsv_*=0)` gives plain letterboxed images.
        seed: base seed; with `set_epoch` every sample is reproducible.
    """

    def __init__(
        self, records: DatasetRecords, imgsz: int, cfg: AugmentConfig | None = None, seed: int = 0
    ) -> None:
        self.records = records
        self.base = DetectionDataset(records, imgsz)  # reading, clipping, ignored boxes
        self.imgsz = int(imgsz)
        self.cfg = cfg or AugmentConfig()
        self.seed = int(seed)
        self.epoch = 0
        self.mosaic_on = True  # switched off for the last epochs ("close mosaic", YOLOv8)
        self._cache: list[tuple[np.ndarray, np.ndarray, np.ndarray]] | None = None  # --cache ram
        self._disk: list[Path] | None = None  # --cache disk: one .npz per image

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.records.images)

    def cache_images(
        self, callback: Callable[[int, int], None] | None = None, disk: str | Path | None = None
    ) -> CacheReport:
        """Decode and resize every image once, before the DataLoader starts.

        `--cache ram` (`disk=None`): the resized images stay in RAM for all epochs (forked
        workers share them copy-on-write). `--cache disk`: each is written under `disk` as an
        uncompressed .npz (the resized pixels and the original size), named after the image's
        path, size, modification time and `imgsz`, so later epochs and later runs read it back
        instead of decoding the JPEG (a changed image gets a new file); RAM stays flat.

        Returns what was cached. Raises DetectError naming the first image that cannot be read,
        or the cache file that cannot be written.
        """
        n = len(self)
        report = CacheReport(images=n, folder=Path(disk) if disk is not None else None)
        if disk is None:
            cache = []
            for i in range(n):
                item = self._read(i)
                cache.append(item)
                report.bytes += item[0].nbytes
                if callback is not None:
                    callback(i + 1, n)
            self._cache = cache
            return report
        files = []
        for i in range(n):
            path = Path(disk) / disk_cache_name(self.records.images[i].path, self.imgsz)
            if path.is_file():
                report.reused += 1
            else:
                img = self.base.load(i)[0]  # only the pixels: boxes are re-read per sample
                h, w = img.shape[:2]
                img, _ = resize_long_side(img, self.imgsz)
                buf = io.BytesIO()
                np.savez(buf, img=img, hw=np.array([h, w], np.int64))
                try:
                    atomic_write_bytes(path, buf.getvalue())
                except WriteError as e:
                    raise DetectError(
                        f"--cache disk: cannot write {path}: {e.reason} (set "
                        "DETECT_CACHE_DIR to a writable folder, or use --cache ram)"
                    ) from None
            report.bytes += path.stat().st_size
            files.append(path)
            if callback is not None:
                callback(i + 1, n)
        self._disk = files
        return report

    def _read(self, i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Image i decoded and resized to long side S, boxes scaled to match, classes."""
        img, boxes, cls = self.base.load(i)
        img, r = resize_long_side(img, self.imgsz)
        return img, boxes.reshape(-1, 4) * r, cls.astype(np.int64).reshape(-1)

    def _read_disk(self, i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Image i from its `--cache disk` file; decoded afresh if the file is unreadable."""
        try:
            with np.load(self._disk[i], allow_pickle=False) as z:
                img, (h, w) = z["img"], z["hw"].tolist()
        except (OSError, ValueError, KeyError, zipfile.BadZipFile):
            return self._read(i)  # a damaged cache file costs a decode, never a wrong sample
        boxes, cls = self.base.targets(i, (h, w))
        r = self.imgsz / max(h, w)  # resize_long_side's scale
        return img, boxes.reshape(-1, 4) * r, cls.astype(np.int64).reshape(-1)

    def _load(self, i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Image i resized to long side S with its boxes (scaled) and classes."""
        if self._cache is not None:
            return self._cache[i]
        return self._read_disk(i) if self._disk is not None else self._read(i)

    def _mosaic(self, i: int, rng: np.random.Generator):
        """Four images around a random centre of a 2S x 2S canvas (YOLOv5's load_mosaic)."""
        s = self.imgsz
        xc, yc = (int(v) for v in rng.uniform(s / 2, 3 * s / 2, 2))
        idx = [i, *rng.integers(0, len(self), 3).tolist()]
        canvas = np.full((2 * s, 2 * s, 3), PAD, dtype=np.uint8)
        all_boxes, all_cls = [], []
        for k, j in enumerate(idx):
            img, boxes, cls = self._load(j)
            h, w = img.shape[:2]
            if k == 0:  # top left of the centre
                x1a, y1a, x2a, y2a = max(xc - w, 0), max(yc - h, 0), xc, yc
                x1b, y1b, x2b, y2b = w - (x2a - x1a), h - (y2a - y1a), w, h
            elif k == 1:  # top right
                x1a, y1a, x2a, y2a = xc, max(yc - h, 0), min(xc + w, 2 * s), yc
                x1b, y1b, x2b, y2b = 0, h - (y2a - y1a), min(w, x2a - x1a), h
            elif k == 2:  # bottom left
                x1a, y1a, x2a, y2a = max(xc - w, 0), yc, xc, min(2 * s, yc + h)
                x1b, y1b, x2b, y2b = w - (x2a - x1a), 0, w, min(y2a - y1a, h)
            else:  # bottom right
                x1a, y1a, x2a, y2a = xc, yc, min(xc + w, 2 * s), min(2 * s, yc + h)
                x1b, y1b, x2b, y2b = 0, 0, min(w, x2a - x1a), min(y2a - y1a, h)
            canvas[y1a:y2a, x1a:x2a] = img[y1b:y2b, x1b:x2b]
            dx, dy = x1a - x1b, y1a - y1b
            b = boxes + np.array([dx, dy, dx, dy], dtype=np.float32)
            # Only the visible part of each tile counts (another tile may cover the rest).
            vis = np.array([x1a, y1a, x2a, y2a], dtype=np.float32)
            bc = np.concatenate((np.maximum(b[:, :2], vis[:2]), np.minimum(b[:, 2:], vis[2:])), 1)
            ok = (bc[:, 2] - bc[:, 0] > 0) & (bc[:, 3] - bc[:, 1] > 0)
            all_boxes.append(bc[ok])
            all_cls.append(cls[ok])
        return canvas, np.concatenate(all_boxes), np.concatenate(all_cls), (s, s)

    def _letterboxed(self, i: int):
        """Image i centred in an S x S grey square (the inference letterbox)."""
        s = self.imgsz
        img, boxes, cls = self._load(i)
        h, w = img.shape[:2]
        canvas = np.full((s, s, 3), PAD, dtype=np.uint8)
        top, left = (s - h) // 2, (s - w) // 2
        canvas[top : top + h, left : left + w] = img
        boxes = boxes + np.array([left, top, left, top], dtype=np.float32)
        return canvas, boxes, cls, (s / 2, s / 2)

    def __getitem__(self, i: int):
        c, s = self.cfg, self.imgsz
        rng = np.random.default_rng((self.seed, self.epoch, int(i)))
        if self.mosaic_on and c.mosaic > 0 and rng.random() < c.mosaic:
            img, boxes, cls, centre = self._mosaic(i, rng)
        else:
            img, boxes, cls, centre = self._letterboxed(i)
        if c.scale or c.translate or img.shape[0] != s:
            img, boxes = random_affine(img, boxes, s, centre, rng, c.scale, c.translate)
        boxes, keep = keep_boxes(boxes, s, c.min_size, c.min_area)
        boxes, cls = boxes[keep], cls[keep]
        augment_hsv(img, rng, c.hsv_h, c.hsv_s, c.hsv_v)
        if c.fliplr and rng.random() < c.fliplr:
            img, boxes = img[:, ::-1], flip_boxes_lr(boxes, s)
        if c.flipud and rng.random() < c.flipud:
            img, boxes = img[::-1], flip_boxes_ud(boxes, s)
        chw = np.ascontiguousarray(img[..., ::-1].transpose(2, 0, 1))  # BGR HWC -> RGB CHW
        targets = np.concatenate((cls[:, None].astype(np.float32), boxes.astype(np.float32)), 1)
        return torch.from_numpy(chw), torch.from_numpy(targets.reshape(-1, 5)), int(i)
