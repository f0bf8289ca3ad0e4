"""COCO instances JSON reader.

Class index = position of the category id in sorted id order (`category_ids` maps back); boxes go
from COCO `[x, y, w, h]` to xyxy pixels unclipped (so that evaluation matches pycocotools on the
same file); `area` and `iscrowd` are kept; the image id is the COCO id.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from detect.data._common import make_record
from detect.data.types import DatasetRecords, ReadReport
from detect.errors import DetectError


class _Malformed(Exception):
    """A structural problem in the JSON; becomes a DetectError naming the file."""


def read_coco(path: Path, images_dir: Path | None, report: ReadReport) -> DatasetRecords:
    """Read a COCO instances JSON; image files are looked up in `images_dir`."""
    try:
        with open(path, "rb") as f:
            doc = json.load(f)
    except OSError as e:
        raise DetectError(f"{path}: cannot read ({e.strerror or e})") from None
    except (ValueError, RecursionError) as e:  # JSONDecodeError, bad UTF-8
        raise DetectError(f"{path}: malformed JSON ({str(e).splitlines()[0][:200]})") from None
    try:
        return _build(path, doc, images_dir, report)
    except _Malformed as e:
        raise DetectError(f"{path}: not a COCO instances file: {e}") from None


def _list(doc: dict, key: str, required: bool = True) -> list:
    v = doc.get(key)
    if v is None and not required:
        return []
    if not isinstance(v, list):
        raise _Malformed(f"'{key}' must be a list")
    return v


def _int(obj: dict, key: str, what: str) -> int:
    v = obj.get(key) if isinstance(obj, dict) else None
    if isinstance(v, float) and v.is_integer():
        v = int(v)
    if isinstance(v, bool) or not isinstance(v, int):
        raise _Malformed(f"{what}: '{key}' must be an integer")
    return v


def _num(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    try:
        v = float(v)
    except OverflowError:  # an int beyond float range
        return None
    return v if abs(v) < 1e30 else None  # also rejects inf/nan; float32 boxes must hold it


def _images_dir(path: Path, images: list[dict]) -> Path:
    """Default image folder: next to the JSON, or the usual COCO neighbours if the files are there.

    `annotations/instances_val2017.json` has its images in `../val2017/` (or `../images/val2017/`).
    """
    parent = path.parent
    if not images:
        return parent
    first = str(images[0].get("file_name", ""))
    split = path.stem.split("_", 1)[-1]  # instances_val2017 -> val2017
    for cand in (
        parent,
        parent / "images",
        parent / split,
        parent.parent / split,
        parent.parent / "images" / split,
        parent.parent / "images",
    ):
        if first and (cand / first).is_file():
            return cand
    return parent


def _build(path: Path, doc: Any, images_dir: Path | None, report: ReadReport) -> DatasetRecords:
    if not isinstance(doc, dict):
        raise _Malformed("the top level must be an object")
    cats = _list(doc, "categories")
    imgs = _list(doc, "images")
    anns = _list(doc, "annotations", required=False)

    cat_names: dict[int, str] = {}
    for c in cats:
        cid = _int(c, "id", "category")
        if cid in cat_names:
            raise _Malformed(f"duplicate category id {cid}")
        name = c.get("name")
        cat_names[cid] = str(name) if name is not None else str(cid)
    category_ids = sorted(cat_names)
    cls_of = {cid: i for i, cid in enumerate(category_ids)}

    for im in imgs:
        if not isinstance(im, dict):
            raise _Malformed("each image must be an object")
    root = images_dir if images_dir is not None else _images_dir(path, imgs)

    # Per image: rows, classes, area, iscrowd, difficult (filled from the annotations below).
    per_image: dict[int, tuple[list, list, list, list]] = {}
    order: list[tuple[int, str, int, int]] = []
    for im in imgs:
        iid = _int(im, "id", "image")
        w, h = _int(im, "width", f"image {iid}"), _int(im, "height", f"image {iid}")
        if w <= 0 or h <= 0:
            raise _Malformed(f"image {iid}: width and height must be positive")
        if iid in per_image:
            raise _Malformed(f"duplicate image id {iid}")
        fname = im.get("file_name")
        per_image[iid] = ([], [], [], [], [])
        order.append((iid, str(fname) if fname is not None else "", w, h))
    if not order:
        raise DetectError(f"{path}: no images")

    seen: set[tuple] = set()
    for k, a in enumerate(anns):
        if not isinstance(a, dict):
            raise _Malformed(f"annotation {k} must be an object")
        aid = a.get("id", k)
        iid = _int(a, "image_id", f"annotation {aid}")
        cid = _int(a, "category_id", f"annotation {aid}")
        if cid not in cls_of:
            msg = f"{path}: annotation {aid}: category_id {cid} not in 'categories'"
            report.error("bad_class", msg)
            continue
        lists = per_image.get(iid)
        bbox = a.get("bbox")
        xywh = [_num(v) for v in bbox] if isinstance(bbox, list) and len(bbox) == 4 else None
        if lists is None or xywh is None or None in xywh or xywh[2] < 0 or xywh[3] < 0:
            why = "unknown image_id" if lists is None else "bad bbox"
            report.add("bad_line", f"{path}: annotation {aid}: {why}, skipped")
            continue
        x, y, bw, bh = xywh
        if bw == 0 or bh == 0:
            report.add("zero_size_box", f"{path}: annotation {aid}: zero-size box")
        area = _num(a.get("area"))
        key = (iid, cid, x, y, bw, bh)
        if key in seen:
            report.add("duplicate_box", f"{path}: annotation {aid}: same image, class and box")
        seen.add(key)
        lists[0].append((x, y, x + bw, y + bh))
        lists[1].append(cls_of[cid])
        lists[2].append(area if area is not None else bw * bh)
        lists[3].append(bool(a.get("iscrowd", 0)))
        lists[4].append(bool(a.get("difficult", 0)))  # VOC's flag, as `detect convert` keeps it

    records = []
    for iid, fname, w, h in order:
        rows, classes, area, crowd, difficult = per_image[iid]
        img_path = root / fname if fname else None
        records.append(make_record(img_path, iid, w, h, rows, classes, area, crowd, difficult))
    return DatasetRecords(
        names=[cat_names[c] for c in category_ids],
        images=records,
        category_ids=category_ids,
        format="coco",
        source=path,
        split=path.stem,
        report=report,
    )
