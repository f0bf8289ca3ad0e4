"""Ultralytics YAML data set reader.

The YAML names a root (`path`, relative to the YAML's folder; default that folder), the splits
(`train`, `val`, optional `test`: each a folder of images, a `.txt` list of image paths, or a
list of those) and `names` (a list, or a `{id: name}` mapping). Each image `.../images/x.jpg`
has its labels in `.../labels/x.txt`, one `class cx cy w h` line per box, normalised 0..1
(ultralytics polygon lines `class x1 y1 x2 y2 ...` are read as their bounding box; a sixth
column, the confidence `detect predict --save-txt --save-conf` writes, is ignored).
Image sizes come from the image headers; no pixels are decoded. Image ids are unique in the
split (`detect.data._common.unique_ids` over the paths below the split's common folder).
"""

from __future__ import annotations

import math
import os
from dataclasses import replace
from pathlib import Path
from typing import Any

import yaml

from detect.data._common import make_record, relative_paths, unique_ids
from detect.data.coco import read_coco
from detect.data.image import IMAGE_SUFFIXES, image_size
from detect.data.types import DatasetRecords, ImageRecord, ReadReport
from detect.data.voc import read_voc
from detect.errors import DetectError

SPLITS = ("train", "val", "test")
NOT_SPLITS = ("path", "names", "nc", "download", "yaml_file")


def read_yolo(path: Path, split: str, report: ReadReport) -> DatasetRecords:
    """Read split `split` (a key of the YAML) of an ultralytics data set."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeError) as e:
        raise DetectError(f"{path}: cannot read ({getattr(e, 'strerror', None) or e})") from None
    try:
        doc = yaml.safe_load(text)
    except (yaml.YAMLError, ValueError, RecursionError) as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise DetectError(f"{path}: malformed YAML ({first})") from None
    if not isinstance(doc, dict):
        raise DetectError(f"{path}: not an ultralytics data set YAML (expected a mapping)")
    root = _root(path, doc)
    entry = doc.get(split)
    if entry is None or entry == "" or entry == []:
        avail = [k for k in doc if isinstance(k, str) and k in SPLITS and doc[k]]
        extra = [
            k
            for k in doc
            if isinstance(k, str) and k not in SPLITS + NOT_SPLITS and _is_split(doc[k])
        ]
        shown = ", ".join(avail + extra) or "none"
        raise DetectError(f"{path}: no split '{split}' (available: {shown})")
    if isinstance(entry, dict) or (isinstance(entry, str) and entry.lower().endswith(".json")):
        return _linked_split(path, root, doc, entry, split, report)
    names = _names(path, doc)
    files = _image_files(path, root, entry)
    ids = unique_ids(relative_paths(files))
    images: list[ImageRecord] = []
    for img, image_id in zip(files, ids, strict=True):
        try:
            width, height = image_size(img)
        except DetectError as e:
            report.add("bad_image", f"{e}, skipped")
            continue
        images.append(_read_labels(img, image_id, width, height, len(names), report))
    if not images:
        raise DetectError(f"{path}: split '{split}' has no images")
    return DatasetRecords(
        names=names,
        images=images,
        category_ids=list(range(len(names))),
        format="yaml",
        source=path,
        split=split,
        report=report,
    )


def _linked_split(
    path: Path, root: Path, doc: dict, entry: Any, split: str, report: ReadReport
) -> DatasetRecords:
    """A split that is another data set: a COCO instances JSON (`val: instances_val.json`, or
    `{coco: instances_val.json, images: val2017}`) or a list of a VOC folder (`{voc: VOC2007,
    split: test}`), so a YAML can name separate train and val sets of those formats. Paths are
    relative to the YAML's `path`. The YAML's `names`, if given, must be the set's."""
    spec = {"coco": entry} if isinstance(entry, str) else entry
    known = {"coco", "images", "voc", "split"}
    if set(spec) - known or ("coco" in spec) == ("voc" in spec):
        raise DetectError(
            f"{path}: split '{split}' must be a folder, a .txt list, a COCO .json file, "
            "{coco: FILE.json, images: FOLDER} or {voc: FOLDER, split: LIST}"
        )

    def at(v: Any) -> Path:
        p = Path(str(v)).expanduser()
        return p if p.is_absolute() else root / p

    if "coco" in spec:
        images = at(spec["images"]) if spec.get("images") is not None else None
        rec = replace(read_coco(at(spec["coco"]), images, report), split=split)
    else:
        rec = read_voc(at(spec["voc"]), str(spec.get("split", split)), report)
    if doc.get("names") is not None:
        names = _names(path, doc)
        if names != rec.names:
            raise DetectError(
                f"{path}: 'names' ({', '.join(names[:5])}...) are not those of split '{split}' "
                f"({', '.join(rec.names[:5])}...)"
            )
    return rec


def _is_split(v: Any) -> bool:
    """A value that looks like an image source (used only to list the available splits)."""
    return (isinstance(v, str) and not v.startswith("http")) or (
        isinstance(v, list) and bool(v) and all(isinstance(x, str) for x in v)
    )


def _names(path: Path, doc: dict) -> list[str]:
    names = doc.get("names")
    if isinstance(names, list):
        return [str(n) for n in names]
    if isinstance(names, dict):
        ids = {}
        for k, v in names.items():
            try:
                i = int(k)
            except (TypeError, ValueError):
                raise DetectError(f"{path}: 'names' keys must be class ids, got {k!r}") from None
            if i < 0 or i > 100_000:
                raise DetectError(f"{path}: 'names' class id {i} out of range")
            ids[i] = str(v)
        # Gaps in the ids keep their place, so label class ids keep their meaning.
        return [ids.get(i, str(i)) for i in range(max(ids) + 1)] if ids else []
    nc = doc.get("nc")
    if names is None and isinstance(nc, int) and not isinstance(nc, bool) and 0 < nc <= 100_000:
        return [str(i) for i in range(nc)]
    raise DetectError(f"{path}: 'names' must be a list or a {{id: name}} mapping")


def _root(path: Path, doc: dict) -> Path:
    p = doc.get("path")
    if p is None or p == "":
        return path.parent
    if not isinstance(p, str):
        raise DetectError(f"{path}: 'path' must be a folder name")
    root = Path(p).expanduser()
    if root.is_absolute():
        return root
    # Relative to the YAML's folder (so a data set folder can move); else to the working folder.
    rel = path.parent / root
    return rel if rel.exists() or not root.exists() else root


def _image_files(path: Path, root: Path, entry: Any) -> list[Path]:
    entries = entry if isinstance(entry, list) else [entry]
    files: list[Path] = []
    for e in entries:
        if not isinstance(e, (str, int, float)) or isinstance(e, bool):
            raise DetectError(f"{path}: a split must be a folder, a .txt list or a list of those")
        p = Path(str(e)).expanduser()
        p = p if p.is_absolute() else root / p
        if p.is_dir():
            files += _scan(p)
        elif p.is_file() and p.suffix.lower() == ".txt":
            files += _list_file(p)
        elif p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES:
            files.append(p)
        else:
            raise DetectError(f"{path}: split source {p} does not exist")
    return files


def _scan(folder: Path) -> list[Path]:
    """All images under `folder`, recursively, in sorted path order (deterministic)."""
    out = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames.sort()
        for f in filenames:
            if os.path.splitext(f)[1].lower() in IMAGE_SUFFIXES:
                out.append(Path(dirpath) / f)
    return sorted(out)


def _list_file(txt: Path) -> list[Path]:
    try:
        text = txt.read_text(encoding="utf-8-sig", errors="replace")
    except OSError as e:
        raise DetectError(f"{txt}: cannot read ({e.strerror or e})") from None
    out = []
    for line in text.splitlines():
        s = line.strip()
        if not s:
            continue
        p = Path(s).expanduser()
        out.append(p if p.is_absolute() else txt.parent / p)  # "./images/x.jpg" style
    return out


def label_path(img: Path) -> Path:
    """`.../images/a/x.jpg` -> `.../labels/a/x.txt` (the last `images` folder is swapped)."""
    parts = list(img.parts)
    for i in range(len(parts) - 2, -1, -1):
        if parts[i] == "images":
            parts[i] = "labels"
            return Path(*parts).with_suffix(".txt")
    return img.with_suffix(".txt")  # no images/ folder: labels beside the image


def _read_labels(
    img: Path, image_id: int | str, width: int, height: int, nc: int, report: ReadReport
) -> ImageRecord:
    lab = label_path(img)
    rows: list[tuple[float, float, float, float]] = []
    classes: list[int] = []
    try:
        text = lab.read_text(encoding="utf-8-sig", errors="replace")
    except FileNotFoundError:
        report.add("missing_label", f"{lab}: no label file, image has no objects")
        text = ""
    except OSError as e:
        report.add("bad_line", f"{lab}: cannot read ({e.strerror or e}), image has no objects")
        text = ""
    seen: set[tuple] = set()
    for n, line in enumerate(text.splitlines(), 1):
        fields = line.split()
        if not fields:
            continue
        parsed = _parse_line(fields)
        if isinstance(parsed, str):
            report.add("bad_line", f"{lab}:{n}: {parsed}, skipped")
            continue
        cls, x1, y1, x2, y2 = parsed
        if not 0 <= cls < nc:
            report.error("bad_class", f"{lab}:{n}: class {cls} not in names (0..{nc - 1})")
            continue
        c = (min(max(x1, 0.0), 1.0), min(max(y1, 0.0), 1.0))
        c += (min(max(x2, 0.0), 1.0), min(max(y2, 0.0), 1.0))
        # Six-decimal labels overshoot 1 by ~1e-6 through rounding alone: clipped, not reported.
        if max(abs(a - b) for a, b in zip(c, (x1, y1, x2, y2), strict=True)) > 1e-5:
            report.add("clipped_box", f"{lab}:{n}: box outside 0..1, clipped")
        if c[2] <= c[0] or c[3] <= c[1]:
            report.add("zero_size_box", f"{lab}:{n}: zero-size box")
        if (cls, *c) in seen:
            report.add("duplicate_box", f"{lab}:{n}: same class and box as an earlier line")
        seen.add((cls, *c))
        rows.append((c[0] * width, c[1] * height, c[2] * width, c[3] * height))
        classes.append(cls)
    return make_record(img, image_id, width, height, rows, classes)


def _parse_line(fields: list[str]) -> tuple[int, float, float, float, float] | str:
    """`class cx cy w h [conf]` (or a polygon) -> (class, x1, y1, x2, y2) normalised; else why."""
    if len(fields) < 5 and any("," in f or ";" in f for f in fields):
        return "fields separated by commas or semicolons (expected spaces: class cx cy w h)"
    if len(fields) not in (5, 6) and (len(fields) < 7 or len(fields) % 2 == 0):
        return f"expected 5 fields (class cx cy w h), got {len(fields)}"
    try:
        v = [float(f) for f in fields]
    except ValueError:
        return "non-numeric field"
    if not all(math.isfinite(x) for x in v):
        return "non-finite number"
    if not v[0].is_integer():
        return f"class {fields[0]} is not an integer"
    cls = int(v[0])
    if len(v) in (5, 6):  # a sixth column is a prediction's confidence: the box is a label
        cx, cy, w, h = v[1:5]
        if w < 0 or h < 0:
            return "negative width or height"
        return cls, cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2
    xs, ys = v[1::2], v[2::2]
    return cls, min(xs), min(ys), max(xs), max(ys)
