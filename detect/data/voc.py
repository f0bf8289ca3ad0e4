"""PASCAL VOC folder reader: `Annotations/*.xml`, `JPEGImages/`, `ImageSets/Main/{split}.txt`.

Corners become 0-based pixel xyxy `(xmin - 1, ymin - 1, xmax - 1, ymax - 1)` (width = xmax - xmin,
as darknet's and ultralytics' converters do). Class ids follow the sorted object names of the
whole folder unless `classes.txt` beside `Annotations/` lists them. Sizes come from `<size>`.
"""

from __future__ import annotations

import math
import os
import re
import xml.etree.ElementTree as ET
from pathlib import Path

from detect.data._common import clip_box, make_record, stem_id
from detect.data.image import image_size
from detect.data.types import DatasetRecords, ImageRecord, ReadReport
from detect.errors import DetectError

# One parsed annotation file: (file name, width, height, objects, problems), where an object is
# (name, xmin, ymin, xmax, ymax, difficult) as written and problems are messages about objects
# that were skipped (reported only when the file is in the requested split).
_Parsed = tuple[str | None, int, int, list[tuple[str, float, float, float, float, bool]], list[str]]

# Per-class lists in ImageSets/Main ("aeroplane_train.txt") are not splits of their own.
_CLASS_LIST = re.compile(r"^.+_(train|val|trainval|test)$")


def is_voc(path: Path) -> bool:
    return path.is_dir() and (path / "Annotations").is_dir()


def read_voc(root: Path, split: str, report: ReadReport) -> DatasetRecords:
    """Read the split `ImageSets/Main/{split}.txt` of the VOC folder `root`."""
    ann_dir = os.path.join(root, "Annotations")
    ids = _read_split(root, split)
    classes_txt = root / "classes.txt"
    if classes_txt.is_file():
        names = _read_names(classes_txt)
        parsed = {}
    else:
        # The class list needs every file of the folder; parse them all once and reuse the parse.
        parsed = {}
        with os.scandir(ann_dir) as it:
            for entry in it:
                if entry.name.endswith(".xml"):
                    parsed[entry.name[:-4]] = _parse(entry.path)
        names = sorted({o[0] for p in parsed.values() for o in p[3]})
    index = {n: i for i, n in enumerate(names)}

    images: list[ImageRecord] = []
    jpeg_dir = root / "JPEGImages"
    seen: set[str] = set()
    for stem in ids:
        if stem in seen:
            continue
        seen.add(stem)
        xml = os.path.join(ann_dir, f"{stem}.xml")
        p = parsed.get(stem)
        if p is None:
            if not os.path.isfile(xml):
                report.missing_labels += 1
                report.warn(f"{xml}: missing annotation file, image skipped")
                continue
            p = _parse(xml)
        rec = _record(root, jpeg_dir, stem, xml, p, index, report)
        if rec is not None:
            images.append(rec)
    if not images:
        raise DetectError(f"{root}: split '{split}' has no images")
    return DatasetRecords(
        names=names,
        images=images,
        category_ids=list(range(len(names))),
        format="voc",
        source=root,
        split=split,
        report=report,
    )


def _read_split(root: Path, split: str) -> list[str]:
    lists = root / "ImageSets" / "Main"
    f = lists / f"{split}.txt"
    if not f.is_file():
        avail = (
            sorted(p.stem for p in lists.glob("*.txt") if not _CLASS_LIST.match(p.stem))
            if lists.is_dir()
            else []
        )
        shown = ", ".join(avail) if avail else "none"
        raise DetectError(f"{f}: no such split list (available in {lists}: {shown})")
    try:
        text = f.read_text(encoding="utf-8", errors="replace")
    except OSError as e:
        raise DetectError(f"{f}: cannot read ({e.strerror or e})") from None
    # A line is "id" (or "id  1" in per-class lists): the first token is the id.
    return [line.split()[0] for line in text.splitlines() if line.split()]


def _read_names(path: Path) -> list[str]:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as e:
        raise DetectError(f"{path}: cannot read ({e.strerror or e})") from None
    names = [line.strip() for line in text.splitlines() if line.strip()]
    if len(set(names)) != len(names):
        raise DetectError(f"{path}: duplicate class names")
    return names


def _number(text: str | None) -> float | None:
    if text is None:
        return None
    try:
        v = float(text)
    except ValueError:
        return None
    return v if math.isfinite(v) else None


def _parse(xml: str) -> _Parsed:
    try:
        with open(xml, "rb") as f:
            data = f.read()
    except OSError as e:
        raise DetectError(f"{xml}: cannot read ({e.strerror or e})") from None
    try:
        root = ET.fromstring(data)
    except (ET.ParseError, ValueError, LookupError, UnicodeError) as e:
        raise DetectError(f"{xml}: malformed XML ({e})") from None
    # One pass over the direct children (findtext per field costs twice as much on 5k files).
    filename = None
    w = h = None
    objects = []
    problems = []
    k = -1
    for child in root:
        tag = child.tag
        if tag == "object":
            k += 1
            name = diff = None
            c = [None] * 4
            for el in child:
                if el.tag == "name":
                    name = (el.text or "").strip()
                elif el.tag == "difficult":
                    diff = _number(el.text)
                elif el.tag == "bndbox":
                    for v in el:
                        i = _CORNERS.get(v.tag)
                        if i is not None:
                            c[i] = _number(v.text)
            if not name:
                problems.append(f"{xml}: object {k}: no <name>, skipped")
            elif None in c:
                problems.append(f"{xml}: object {k}: missing or non-numeric <bndbox>, skipped")
            elif c[2] < c[0] or c[3] < c[1]:
                problems.append(f"{xml}: object {k}: xmax < xmin or ymax < ymin, skipped")
            else:
                objects.append((name, c[0], c[1], c[2], c[3], bool(diff)))
        elif tag == "size":
            for el in child:
                if el.tag == "width":
                    w = _number(el.text)
                elif el.tag == "height":
                    h = _number(el.text)
        elif tag == "filename":
            filename = (child.text or "").strip()
    width = int(w) if w is not None and 1 <= w < 2**31 else 0
    height = int(h) if h is not None and 1 <= h < 2**31 else 0
    return filename, width, height, objects, problems


_CORNERS = {"xmin": 0, "ymin": 1, "xmax": 2, "ymax": 3}


def _record(
    root: Path,
    jpeg_dir: Path,
    stem: str,
    xml: str,
    p: _Parsed,
    index: dict[str, int],
    report: ReadReport,
) -> ImageRecord | None:
    filename, width, height, objects, problems = p
    for msg in problems:
        report.bad_lines += 1
        report.warn(msg)
    # <filename> may carry another extension; never let it point outside JPEGImages/.
    name = os.path.basename(filename.replace("\\", "/")) if filename else ""
    path = jpeg_dir / (name if name and name not in (".", "..") else f"{stem}.jpg")
    if width <= 0 or height <= 0:
        try:  # no usable <size>: the image header still gives it
            width, height = image_size(path)
        except DetectError:
            report.bad_images += 1
            report.warn(f"{xml}: no valid <size> and no readable image, skipped")
            return None
    rows, classes, difficult = [], [], []
    for name_, x1, y1, x2, y2, diff in objects:
        cls = index.get(name_)
        if cls is None:
            raise DetectError(f"{xml}: class '{name_}' is not in {root / 'classes.txt'}")
        box, moved = clip_box(x1 - 1, y1 - 1, x2 - 1, y2 - 1, width, height)
        if moved:
            report.clipped_boxes += 1
        if box[2] <= box[0] or box[3] <= box[1]:
            report.zero_size_boxes += 1
        rows.append(box)
        classes.append(cls)
        difficult.append(diff)
    return make_record(path, stem_id(stem), width, height, rows, classes, difficult=difficult)
