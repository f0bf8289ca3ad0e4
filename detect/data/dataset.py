"""The torch Dataset over DatasetRecords: decode with OpenCV, letterbox, targets in pixels."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch.utils.data import Dataset

from detect.data.image import read_image
from detect.data.transforms import letterbox, letterbox_boxes
from detect.data.types import DatasetRecords
from detect.errors import DetectError

# augment(img BGR uint8 [H,W,3], boxes float32 [N,4] xyxy pixels, classes int64 [N])
#   -> the same three, transformed together.
Augment = Callable[[np.ndarray, np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray, np.ndarray]]


class DetectionDataset(Dataset):
    """Letterboxed training / validation samples.

    `__getitem__(i)` returns `(img Tensor[3, S, S] uint8 RGB, targets Tensor[N, 5] float32
    (class, x1, y1, x2, y2) letterboxed pixels, i)`. Zero-size boxes are dropped (they have no
    shape to learn); by default so are `difficult` and `iscrowd` boxes, as darknet's and
    ultralytics' VOC / COCO converters do (`keep_ignored=True` keeps them). `augment`, if given,
    runs on the original-size BGR image before letterboxing.
    """

    def __init__(
        self,
        records: DatasetRecords,
        imgsz: int,
        augment: Augment | None = None,
        keep_ignored: bool = False,
    ) -> None:
        self.records = records
        self.imgsz = int(imgsz)
        self.augment = augment
        self.keep_ignored = keep_ignored

    def __len__(self) -> int:
        return len(self.records.images)

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Original BGR image, its boxes `[N, 4]` xyxy pixels (clipped) and classes `[N]`."""
        rec = self.records.images[index]
        if rec.path is None:
            raise DetectError(f"{self.records.source}: image {rec.id} has no file name")
        img = read_image(rec.path)  # DetectError naming the file if it cannot be decoded
        return (img, *self.targets(index, img.shape[:2]))

    def targets(self, index: int, hw: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
        """Boxes `[N, 4]` xyxy pixels and classes `[N]` of image `index`, whose pixels are
        `hw = (height, width)`: clipped to it, zero-size and (by default) ignored boxes dropped."""
        rec = self.records.images[index]
        boxes = rec.boxes.astype(np.float32, copy=True)  # [N,4]
        h, w = int(hw[0]), int(hw[1])
        if (w, h) != (rec.width, rec.height):
            # Annotation size disagrees with the pixels: boxes follow the annotation's frame.
            boxes *= np.array([w / rec.width, h / rec.height] * 2, np.float32)
        boxes[:, 0::2] = boxes[:, 0::2].clip(0, w)
        boxes[:, 1::2] = boxes[:, 1::2].clip(0, h)
        keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
        if not self.keep_ignored:
            keep &= ~rec.difficult & ~rec.iscrowd
        return boxes[keep], rec.classes[keep]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, int]:
        img, boxes, classes = self.load(index)
        if self.augment is not None:
            img, boxes, classes = self.augment(img, boxes, classes)
        out, scale, pad = letterbox(img, self.imgsz)
        boxes = letterbox_boxes(np.asarray(boxes, np.float32).reshape(-1, 4), scale, pad)
        targets = np.concatenate(
            [np.asarray(classes, np.float32).reshape(-1, 1), boxes.astype(np.float32)], axis=1
        )  # [N,5]
        rgb = np.ascontiguousarray(out[:, :, ::-1].transpose(2, 0, 1))  # [3,S,S]
        return torch.from_numpy(rgb), torch.from_numpy(targets), index


def collate_fn(
    batch: list[tuple[torch.Tensor, torch.Tensor, int]],
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Stack samples: `(imgs Tensor[B, 3, S, S] uint8, targets Tensor[T, 6], indices Tensor[B])`.

    Target rows are `(batch_index, class, x1, y1, x2, y2)` in letterboxed pixels.
    """
    imgs = torch.stack([b[0] for b in batch])
    rows = [torch.cat([torch.full((len(b[1]), 1), float(i)), b[1]], 1) for i, b in enumerate(batch)]
    targets = torch.cat(rows)  # [T,6]
    indices = torch.tensor([b[2] for b in batch], dtype=torch.int64)
    return imgs, targets.reshape(-1, 6), indices
