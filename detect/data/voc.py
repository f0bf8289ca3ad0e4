"""PASCAL VOC folder reader: `Annotations/*.xml`, `JPEGImages/`, `ImageSets/Main/{split}.txt`.

Corners become 0-based pixel xyxy `(xmin - 1, ymin - 1, xmax - 1, ymax - 1)` (width = xmax - xmin,
as darknet's and ultralytics' converters do). Class ids follow the sorted object names of the
whole folder unless `classes.txt` beside `Annotations/` lists them; names are kept as written
(spaces, upper case). The image of id X is `JPEGImages/X.<ext>` for the usual extensions, as
darknet, ultralytics, mmdetection and torchvision open it: `<filename>` is only a fallback, since
annotation tools write it without the extension or with another name (labelImg, Label Studio).
Sizes come from `<size>`, or from the image header when it is zero or missing. The XML may be
in any encoding its declaration names (GBK, Shift-JIS, cp1252 ... not only expat's four).
"""

from __future__ import annotations

import math
import os
import re
import xml.etree.ElementTree as ET
from pathlib import Path

from detect.data._common import clip_box, make_record, unique_ids
from detect.data.image import image_size
from detect.data.types import DatasetRecords, ImageRecord, ReadReport
from detect.errors import DetectError

# One parsed annotation file: (file name, width, height, objects, problems), where an object is
# (name, xmin, ymin, xmax, ymax, difficult, index in the file) as written and problems are
# messages about objects that were skipped (reported only when the file is in the split).
_Parsed = tuple[
    str | None, int, int, list[tuple[str, float, float, float, float, bool, int]], list[str]
]

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
    files = _image_files(jpeg_dir)
    stems = list(dict.fromkeys(ids))  # a list naming an id twice means it once
    image_ids = dict(zip(stems, unique_ids([f"{s}.xml" for s in stems]), strict=True))
    for stem in stems:
        xml = os.path.join(ann_dir, f"{stem}.xml")
        p = parsed.get(stem)
        if p is None:
            if not os.path.isfile(xml):
                report.add("missing_annotation", f"{xml}: missing annotation file, image skipped")
                continue
            p = _parse(xml)
        path = _image_path(jpeg_dir, files, stem, p[0])
        rec = _record(root, path, image_ids[stem], xml, p, index, report)
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


# Looked for in this order beside `JPEGImages/{id}`: darknet's and VOC's own first.
_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


def _image_files(folder: Path) -> dict[str, list[str]]:
    """Files of `folder` by lower-case stem (one listing instead of a stat per id and extension)."""
    out: dict[str, list[str]] = {}
    try:
        with os.scandir(folder) as it:
            for e in it:
                stem, ext = os.path.splitext(e.name)
                if ext.lower() in _EXTS:
                    out.setdefault(stem, []).append(e.name)
    except OSError:
        pass  # no JPEGImages/: annotations alone still evaluate against predictions files
    return out


def _image_path(jpeg_dir: Path, files: dict[str, list[str]], stem: str, filename: str | None):
    """`JPEGImages/{stem}.<ext>` if such a file exists, else `<filename>` if that exists, else
    a guess that is not there (fine for scoring a predictions file): `<filename>` when it
    names an image file, else `JPEGImages/{stem}.jpg`."""
    names = files.get(stem)
    if names:
        return jpeg_dir / min(names, key=lambda n: _EXTS.index(os.path.splitext(n)[1].lower()))
    # <filename> may carry another name; never let it point outside JPEGImages/.
    name = os.path.basename(filename.replace("\\", "/")) if filename else ""
    if name not in ("", ".", "..") and (
        (jpeg_dir / name).is_file() or os.path.splitext(name)[1].lower() in _EXTS
    ):
        return jpeg_dir / name
    return jpeg_dir / f"{stem}.jpg"


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
        text = f.read_text(encoding="utf-8-sig", errors="replace")
    except OSError as e:
        raise DetectError(f"{f}: cannot read ({e.strerror or e})") from None
    # A line is "id" (or "id  1" in per-class lists): the first token is the id.
    return [line.split()[0] for line in text.splitlines() if line.split()]


def _read_names(path: Path) -> list[str]:
    try:
        text = path.read_text(encoding="utf-8-sig", errors="replace")
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


_DECLARED = re.compile(
    rb"""^(?:\xef\xbb\xbf)?<\?xml[^>]*?encoding\s*=\s*["']([A-Za-z0-9._-]+)["']"""
)
_EXPAT = {"utf-8", "utf8", "us-ascii", "ascii", "iso-8859-1", "latin-1", "latin1", "utf-16"}


def _decoded(data: bytes) -> bytes | str:
    """The XML as expat can take it: bytes when expat knows the declared encoding, else text
    decoded with Python's codec and the declaration removed (expat rejects multi-byte
    encodings such as GBK or Shift-JIS, which Chinese and Japanese tools write).
    Raises LookupError for an encoding Python does not know either."""
    m = _DECLARED.match(data[:256])
    if m is None or m.group(1).decode("ascii").lower() in _EXPAT:
        return data
    text = data.decode(m.group(1).decode("ascii"))
    return text[text.index("?>") + 2 :]


def _parse(xml: str) -> _Parsed:
    try:
        with open(xml, "rb") as f:
            data = f.read()
    except OSError as e:
        raise DetectError(f"{xml}: cannot read ({e.strerror or e})") from None
    try:
        root = ET.fromstring(_decoded(data))
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
                objects.append((name, c[0], c[1], c[2], c[3], bool(diff), k))
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
    path: Path,
    image_id: int | str,
    xml: str,
    p: _Parsed,
    index: dict[str, int],
    report: ReadReport,
) -> ImageRecord | None:
    _, width, height, objects, problems = p
    for msg in problems:
        report.add("bad_line", msg)
    if width <= 0 or height <= 0:
        try:  # no usable <size>: the image header still gives it
            width, height = image_size(path)
        except DetectError:
            report.add("bad_image", f"{xml}: no valid <size> and no readable image, skipped")
            return None
    rows, classes, difficult = [], [], []
    seen: set[tuple] = set()
    for name_, x1, y1, x2, y2, diff, k in objects:
        cls = index.get(name_)
        if cls is None:
            report.error("bad_class", f"{xml}: class '{name_}' is not in {root / 'classes.txt'}")
            continue
        box, moved = clip_box(x1 - 1, y1 - 1, x2 - 1, y2 - 1, width, height)
        if moved:
            report.add("clipped_box", f"{xml}: object {k}: outside the {width}x{height} image")
        if box[2] <= box[0] or box[3] <= box[1]:
            report.add("zero_size_box", f"{xml}: object {k}: zero-size box")
        if (cls, *box) in seen:
            report.add("duplicate_box", f"{xml}: object {k}: same class and box as an earlier one")
        seen.add((cls, *box))
        rows.append(box)
        classes.append(cls)
        difficult.append(diff)
    return make_record(path, image_id, width, height, rows, classes, difficult=difficult)
