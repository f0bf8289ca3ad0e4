"""`detect check`: a data set's health before training, per split.

`check_dataset(DATA)` reads each split with error collection on (a class id outside the names
becomes an entry instead of stopping the read), opens every image (a full decode, or only the
header with `decode=False`), looks for label files that no image uses, and counts what a user
wants to see before spending hours training: images and boxes per class, background images,
and box sizes in pixels as the letterboxed model will see them at `imgsz`.

Problems are `ReadReport` entries (`"path[:line]: reason"`); `ERROR_KINDS` are the ones that
lose data (an image, a label) and make `detect check` exit 1. Pure numpy + OpenCV, no torch.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

from detect.data import image_size, load_dataset, read_image
from detect.data.image import IMAGE_SUFFIXES
from detect.data.types import REPORT_KINDS, DatasetRecords, ReadReport
from detect.data.yolo import label_path
from detect.errors import DetectError

# Kinds that lose data: an image nobody can read, a label nobody can use.
ERROR_KINDS = ("bad_class", "bad_image", "bad_line", "missing_annotation")
# Box size bins: sqrt(w * h) in pixels at the model input (COCO's small/medium/large are
# 32 / 96 px on 640-ish images; a stride-8 grid starts to lose objects under ~8 px).
SIZE_EDGES = (0, 8, 16, 32, 64, 128, 256)
_CLASS_LIST = re.compile(r"^.+_(train|val|trainval|test)$")


@dataclass
class SplitCheck:
    """What one split holds and what is wrong with it."""

    split: str
    images: int  # images the split lists (annotated); unreadable ones are also in `report`
    boxes: int
    class_boxes: list[int]  # boxes per class index
    class_images: list[int]  # images holding the class
    background: int  # images without any box
    size_counts: list[int]  # boxes per SIZE_EDGES bin (last bin open-ended)
    under_8px: int
    report: ReadReport
    sizes: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(0))  # float64 [N] px

    @property
    def errors(self) -> int:
        return sum(self.report.count(k) for k in ERROR_KINDS)

    @property
    def warnings(self) -> int:
        return self.report.warnings() - self.errors

    def to_json(self, names: list[str]) -> dict:
        bins = [f"{a}-{b}" for a, b in zip(SIZE_EDGES, SIZE_EDGES[1:], strict=False)]
        bins.append(f"{SIZE_EDGES[-1]}+")
        return {
            "images": self.images,
            "boxes": self.boxes,
            "background_images": self.background,
            "classes": {
                n: {"boxes": b, "images": i}
                for n, b, i in zip(names, self.class_boxes, self.class_images, strict=True)
            },
            "box_size_px": dict(zip(bins, self.size_counts, strict=True)),
            "boxes_under_8px": self.under_8px,
            "problems": {
                k: {
                    "level": "error" if k in ERROR_KINDS else REPORT_KINDS[k][0],
                    "count": len(v),
                    "entries": v,
                }
                for k, v in self.report.entries.items()
            },  # fmt: skip
            "errors": self.errors,
            "warnings": self.warnings,
        }


@dataclass
class CheckResult:
    data: str
    names: list[str]
    imgsz: int
    splits: list[SplitCheck]

    @property
    def errors(self) -> int:
        return sum(s.errors for s in self.splits)

    def to_json(self) -> dict:
        return {
            "data": self.data,
            "names": self.names,
            "imgsz": self.imgsz,
            "splits": {s.split: s.to_json(self.names) for s in self.splits},
            "errors": self.errors,
            "warnings": sum(s.warnings for s in self.splits),
        }


def default_splits(data: str | Path) -> list[str]:
    """The splits `detect check DATA` looks at without `--split`: a YAML's train / val / test,
    a VOC folder's train and val lists (else all its lists), a COCO file's one."""
    path = Path(data)
    if path.is_dir() and (path / "Annotations").is_dir():
        lists = path / "ImageSets" / "Main"
        have = sorted(p.stem for p in lists.glob("*.txt") if not _CLASS_LIST.match(p.stem))
        pick = [s for s in ("train", "val") if s in have]
        return pick or have
    if path.suffix.lower() == ".json":
        return [path.stem]
    if path.is_dir():
        yamls = sorted(path.glob("*.yaml")) + sorted(path.glob("*.yml"))
        if len(yamls) == 1:
            path = yamls[0]
    if path.suffix.lower() in (".yaml", ".yml"):
        try:
            doc = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeError, yaml.YAMLError) as e:
            raise DetectError(f"{path}: cannot read ({str(e).splitlines()[0]})") from None
        if isinstance(doc, dict):
            return [s for s in ("train", "val", "test") if doc.get(s)]
    return ["train", "val"]


def check_dataset(
    data: str | Path,
    splits: list[str] | None = None,
    imgsz: int = 640,
    decode: bool = True,
    images: str | Path | None = None,
    callback: Callable[[str, int, int], None] | None = None,
) -> CheckResult:
    """Check each split of DATA; see the module docstring.

    Args:
        splits: split names (None: `default_splits(data)`).
        imgsz: model input side for the box-size figures (boxes scale by imgsz / long side).
        decode: decode every image fully (finds truncated files; ~1-5 ms per image) instead of
            reading only its header.
        callback: `callback(split, done, total)` while images are opened.
    Raises:
        DetectError: DATA or a split cannot be read at all.
    """
    splits = splits or default_splits(data)
    checks, names = [], None
    for split in splits:
        report = ReadReport(collect_errors=True)
        rec = load_dataset(data, split, images=images, report=report)
        names = names or list(rec.names)
        checks.append(_check_split(rec, report, imgsz, decode, callback))
    return CheckResult(str(data), names or [], imgsz, checks)


def _check_split(rec: DatasetRecords, report: ReadReport, imgsz, decode, callback) -> SplitCheck:
    n = len(rec.images)
    for k, im in enumerate(rec.images):
        try:
            if im.path is None or not im.path.is_file():
                raise DetectError(f"{im.path or im.id}: image file missing")
            if decode:
                read_image(im.path)
            else:
                image_size(im.path)
        except DetectError as e:
            report.add("bad_image", str(e))
        if callback is not None:
            callback(rec.split, k + 1, n)
    if rec.format == "yaml":
        _orphan_labels(rec, report)
    nc = rec.num_classes
    class_boxes = np.zeros(nc, np.int64)
    class_images = np.zeros(nc, np.int64)
    sizes = []
    for im in rec.images:
        cls = im.classes[(im.classes >= 0) & (im.classes < nc)]
        class_boxes += np.bincount(cls, minlength=nc)
        class_images[np.unique(cls)] += 1
        b = im.boxes.astype(np.float64)
        wh = (b[:, 2:] - b[:, :2]).clip(0)
        sizes.append(np.sqrt(wh[:, 0] * wh[:, 1]) * imgsz / max(im.width, im.height))
    size = np.concatenate(sizes) if sizes else np.zeros(0)
    counts = np.histogram(size, bins=[*SIZE_EDGES, np.inf])[0]
    return SplitCheck(
        split=rec.split, images=n, boxes=int(class_boxes.sum()),
        class_boxes=class_boxes.tolist(), class_images=class_images.tolist(),
        background=sum(1 for im in rec.images if len(im.boxes) == 0),
        size_counts=counts.tolist(), under_8px=int((size < 8).sum()), report=report, sizes=size,
    )  # fmt: skip


def _orphan_labels(rec: DatasetRecords, report: ReadReport) -> None:
    """Label files in the split's label folders that no image file of that folder uses."""
    folders = {label_path(im.path).parent: im.path.parent for im in rec.images if im.path}
    for labels, imgs in folders.items():
        try:
            stems = {
                os.path.splitext(f)[0]
                for f in os.listdir(imgs)
                if os.path.splitext(f)[1].lower() in IMAGE_SUFFIXES
            }
            txts = sorted(f for f in os.listdir(labels) if f.endswith(".txt"))
        except OSError:
            continue
        for t in txts:
            if t[:-4] not in stems:
                report.add("orphan_label", f"{labels / t}: no image {t[:-4]}.* in {imgs}")
