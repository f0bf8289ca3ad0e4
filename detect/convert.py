"""`detect convert`: one data set into another layout (ultralytics YOLO, COCO, PASCAL VOC).

Reads each split with the project's readers (one in-memory form, `DatasetRecords`) and writes
the target layout into a new folder, built under a temporary name and renamed when complete:

- `yolo`: `images/{split}/...`, `labels/{split}/....txt` (`class cx cy w h`, normalised, 10
  significant digits) and `data.yaml`. YOLO labels have no `difficult` / `iscrowd` flag: those
  boxes are left out, as darknet's `voc_label.py` and ultralytics' VOC converter do (counted).
- `coco`: `annotations/instances_{split}.json` (image ids kept when they are integers, else
  1..N; category ids kept; `iscrowd` kept; VOC `difficult` kept as an extra `difficult` key
  that `detect` reads back), `images/{split}/...`, and a `data.yaml` naming the files.
- `voc`: `Annotations/{id}.xml` (1-based corners `x + 1`, `<size>`, `<difficult>`; COCO crowd
  regions become `difficult`, the VOC flag for "ignored in scoring"), `JPEGImages/{id}.<ext>`,
  `ImageSets/Main/{split}.txt` and `classes.txt` (class order kept).

Images are hard-linked (copied across file systems, or always with `images="copy"`), never
moved. Boxes survive a round trip within 1e-6 of the image size (float32 pixels inside).
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from xml.sax.saxutils import escape

import yaml

from detect.check import default_splits
from detect.data import load_dataset
from detect.data._common import relative_paths
from detect.data.types import DatasetRecords, ReadReport
from detect.errors import DetectError
from detect.files import check_writable, put_bytes, writing

FORMATS = ("yolo", "coco", "voc")


@dataclass
class ConvertResult:
    out: Path
    to: str
    splits: dict[str, int]  # split -> images written
    boxes: int  # boxes written
    dropped_flagged: int = 0  # difficult / crowd boxes YOLO cannot carry
    report: ReadReport = field(default_factory=ReadReport)  # readers' entries + missing images


def convert(
    data: str | Path,
    to: str,
    out: str | Path,
    splits: list[str] | None = None,
    copy: bool = False,
    images: str | Path | None = None,
    callback: Callable[[int, int], None] | None = None,
) -> ConvertResult:
    """Convert DATA's `splits` (default: those `detect check` looks at) into layout `to` at `out`.

    Raises:
        DetectError: an unknown format, `out` already exists (never overwritten), or a split
            cannot be read. WriteError (`cannot write OUT: reason`): before reading anything
            when OUT's folder is read-only, unwritable or full; while writing (disk full), after
            removing the partial folder: OUT then does not exist.
    """
    if to not in FORMATS:
        raise DetectError(f"unknown format {to!r} (use {', '.join(FORMATS)})")
    out = Path(out)
    if out.exists():
        raise DetectError(f"{out}: already exists (never overwritten; choose a new folder)")
    check_writable(out)
    report = ReadReport()
    recs = [
        load_dataset(data, s, images=images, report=report) for s in splits or default_splits(data)
    ]
    names = recs[0].names
    for r in recs[1:]:
        if r.names != names:
            raise DetectError(f"{data}: split '{r.split}' has other classes than '{recs[0].split}'")
    tmp = out.with_name(f".{out.name}.{uuid.uuid4().hex[:8]}.tmp")
    with writing(out):
        tmp.mkdir(parents=True)
    result = ConvertResult(out, to, {}, 0, report=report)
    total = sum(len(r.images) for r in recs)
    done = [0]

    def step() -> None:
        done[0] += 1
        if callback is not None:
            callback(done[0], total)

    try:
        with writing(out):  # (an image that cannot be read is reported and skipped before)
            writer = {"yolo": _Yolo, "coco": _Coco, "voc": _Voc}[to](tmp, names, recs[0], copy)
            for rec in recs:
                result.splits[rec.split] = writer.split(rec, result, step)
            writer.finish([r.split for r in recs])
            os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return result


def _place(src: Path | None, dst: Path, copy: bool, result: ConvertResult) -> bool:
    """Link (or copy) an image; False (reported) when the source is missing."""
    if src is None or not src.is_file():
        result.report.add("bad_image", f"{src}: image file missing, not converted")
        return False
    dst.parent.mkdir(parents=True, exist_ok=True)
    if dst.exists():
        return True  # the same image in two splits (VOC train and trainval)
    if not copy:
        try:
            os.link(src, dst)
            return True
        except OSError:
            pass  # another file system, or links not allowed: copy
    shutil.copy2(src, dst)
    return True


def _put(path: Path, text: str) -> None:
    """A file of the new folder (built under a temporary name: no atomic write needed)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    put_bytes(path, text.encode("utf-8"))


def _num(v: float) -> str:
    """A coordinate with 10 significant digits, integers without a decimal point."""
    return f"{v:.10g}"


def _rel(rec: DatasetRecords) -> list[str]:
    """Each image's path below the split's common folder (unique), or its id + .jpg."""
    paths = [im.path for im in rec.images]
    if any(p is None for p in paths):
        return [f"{im.id}.jpg" for im in rec.images]
    return relative_paths(paths)


class _Yolo:
    def __init__(self, root: Path, names: list[str], first: DatasetRecords, copy: bool) -> None:
        self.root, self.names, self.copy = root, names, copy

    def split(self, rec: DatasetRecords, result: ConvertResult, step) -> int:
        n = 0
        for im, rel in zip(rec.images, _rel(rec), strict=True):
            step()
            if not _place(im.path, self.root / "images" / rec.split / rel, self.copy, result):
                continue
            lines = []
            for b, c, crowd, diff in zip(im.boxes.astype(float), im.classes, im.iscrowd,
                                         im.difficult, strict=True):  # fmt: skip
                if crowd or diff:
                    result.dropped_flagged += 1
                    continue
                cx, cy = (b[0] + b[2]) / 2 / im.width, (b[1] + b[3]) / 2 / im.height
                w, h = (b[2] - b[0]) / im.width, (b[3] - b[1]) / im.height
                lines.append(f"{int(c)} {_num(cx)} {_num(cy)} {_num(w)} {_num(h)}")
            lab = self.root / "labels" / rec.split / Path(rel).with_suffix(".txt")
            _put(lab, "".join(f"{ln}\n" for ln in lines))
            result.boxes += len(lines)
            n += 1
        return n

    def finish(self, splits: list[str]) -> None:
        # No `path` key: ultralytics then resolves the splits from the YAML's folder, as detect
        # does; `path: .` would be its working folder (ultralytics/data/utils.py).
        doc = {**{s: f"images/{s}" for s in splits}, "names": self.names}
        _put(self.root / "data.yaml", yaml.safe_dump(doc, sort_keys=False))


class _Coco:
    def __init__(self, root: Path, names: list[str], first: DatasetRecords, copy: bool) -> None:
        self.root, self.names, self.copy = root, names, copy
        self.cat_ids = list(first.category_ids)

    def split(self, rec: DatasetRecords, result: ConvertResult, step) -> int:
        int_ids = all(isinstance(im.id, int) for im in rec.images)
        images, anns = [], []
        for k, (im, rel) in enumerate(zip(rec.images, _rel(rec), strict=True)):
            step()
            iid = im.id if int_ids else k + 1
            _place(im.path, self.root / "images" / rec.split / rel, self.copy, result)
            images.append({"id": iid, "file_name": rel, "width": im.width, "height": im.height})
            for b, c, area, crowd, diff in zip(im.boxes.astype(float), im.classes, im.area,
                                               im.iscrowd, im.difficult, strict=True):  # fmt: skip
                ann = {
                    "id": len(anns) + 1, "image_id": iid, "category_id": self.cat_ids[int(c)],
                    "bbox": [b[0], b[1], b[2] - b[0], b[3] - b[1]], "area": float(area),
                    "iscrowd": int(crowd),
                }  # fmt: skip
                if diff:
                    ann["difficult"] = 1
                anns.append(ann)
        doc = {
            "images": images,
            "annotations": anns,
            "categories": [
                {"id": i, "name": n} for i, n in zip(self.cat_ids, self.names, strict=True)
            ],  # fmt: skip
        }
        path = self.root / "annotations" / f"instances_{rec.split}.json"
        _put(path, json.dumps(doc))
        result.boxes += len(anns)
        return len(images)

    def finish(self, splits: list[str]) -> None:
        doc = {}  # no `path`: relative to this file, as above
        for s in splits:
            doc[s] = {"coco": f"annotations/instances_{s}.json", "images": f"images/{s}"}
        doc["names"] = self.names
        _put(self.root / "data.yaml", yaml.safe_dump(doc, sort_keys=False))


class _Voc:
    def __init__(self, root: Path, names: list[str], first: DatasetRecords, copy: bool) -> None:
        self.root, self.names, self.copy = root, names, copy
        self.ids: dict[str, str] = {}  # source path -> VOC id (images shared by splits)
        self.lists: dict[str, list[str]] = {}
        for d in ("Annotations", "JPEGImages", "ImageSets/Main"):
            (root / d).mkdir(parents=True, exist_ok=True)

    def _id(self, im, rel: str) -> str:
        key = str(im.path) if im.path is not None else f"id:{im.id}"
        if key not in self.ids:
            base = str(Path(rel).with_suffix("")).replace("/", "_").replace(" ", "_")
            vid, n = base, 1
            taken = set(self.ids.values())
            while vid in taken:
                n += 1
                vid = f"{base}-{n}"
            self.ids[key] = vid
        return self.ids[key]

    def split(self, rec: DatasetRecords, result: ConvertResult, step) -> int:
        ids = []
        for im, rel in zip(rec.images, _rel(rec), strict=True):
            step()
            vid = self._id(im, rel)
            ext = im.path.suffix if im.path is not None and im.path.suffix else ".jpg"
            _place(im.path, self.root / "JPEGImages" / f"{vid}{ext}", self.copy, result)
            objs = []
            for b, c, crowd, diff in zip(im.boxes.astype(float), im.classes, im.iscrowd,
                                         im.difficult, strict=True):  # fmt: skip
                x1, y1, x2, y2 = (_num(v + 1) for v in b)
                objs.append(
                    f"  <object>\n    <name>{escape(self.names[int(c)])}</name>\n"
                    f"    <pose>Unspecified</pose>\n    <truncated>0</truncated>\n"
                    f"    <difficult>{int(bool(diff or crowd))}</difficult>\n"
                    f"    <bndbox><xmin>{x1}</xmin><ymin>{y1}</ymin><xmax>{x2}</xmax>"
                    f"<ymax>{y2}</ymax></bndbox>\n  </object>\n"
                )
            xml = (
                f'<?xml version="1.0" encoding="utf-8"?>\n<annotation>\n'
                f"  <filename>{escape(vid + ext)}</filename>\n"
                f"  <size><width>{im.width}</width><height>{im.height}</height>"
                f"<depth>3</depth></size>\n{''.join(objs)}</annotation>\n"
            )
            _put(self.root / "Annotations" / f"{vid}.xml", xml)
            result.boxes += len(objs)
            ids.append(vid)
        self.lists[rec.split] = ids
        return len(ids)

    def finish(self, splits: list[str]) -> None:
        for s, ids in self.lists.items():
            _put(self.root / "ImageSets" / "Main" / f"{s}.txt", "".join(f"{i}\n" for i in ids))
        _put(self.root / "classes.txt", "".join(f"{n}\n" for n in self.names))
