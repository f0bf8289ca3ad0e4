"""Reading what `detect evaluate` scores: COCO instances JSON ground truth, COCO results JSON and
YOLO txt (with confidence) predictions, straight into the float64 arrays of detect.metrics.arrays.

The COCO paths keep the JSON's float64 numbers (no xyxy float32 round trip) so the scores equal
pycocotools', and avoid per-object Python beyond one pass of list comprehensions.
"""

from __future__ import annotations

import gc
import math
from contextlib import contextmanager
from itertools import chain
from operator import attrgetter, itemgetter
from pathlib import Path

import numpy as np

from detect.errors import DetectError
from detect.metrics.arrays import GroundTruth, Predictions, check_predictions


@contextmanager
def _no_gc():
    """Parsing 500k objects triggers the cyclic GC over and over (~2/3 of the parse time);
    nothing parsed here has cycles."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def _loads(data: bytes, path: Path):
    try:
        import orjson  # optional: ~3x faster than json on 500k-detection files

        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError as e:
            raise DetectError(f"{path}: malformed JSON: {str(e).splitlines()[0]}") from None
    except ImportError:
        import json

        try:
            return json.loads(data)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise DetectError(f"{path}: malformed JSON: {e}") from None


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as e:
        raise DetectError(f"{path}: cannot read: {e.strerror}") from None


def load_json(path: str | Path):
    path = Path(path)
    data = _read_bytes(path)
    with _no_gc():
        return _loads(data, path)


def is_coco_gt(path: str | Path) -> bool:
    """A `.json` file (COCO instances); the other data set formats go through load_dataset."""
    path = Path(path)
    return path.is_file() and path.suffix.lower() == ".json"


def coco_ground_truth(obj: dict, source: str | Path = "ground truth") -> GroundTruth:
    """A COCO instances dict -> GroundTruth. Classes follow the `categories` list order."""
    try:
        cats = obj["categories"]
        images = obj["images"]
        anns = obj.get("annotations", [])
        cat_ids = [int(c["id"]) for c in cats]
        names = [str(c.get("name", c["id"])) for c in cats]
        img_ids = [im["id"] for im in images]
        img_names = [str(im.get("file_name", im["id"])) for im in images]
        wh = np.array([[im.get("width", 0), im.get("height", 0)] for im in images], np.int64)
        a_img = [a["image_id"] for a in anns]
        a_cat = [a["category_id"] for a in anns]
        bbox = np.array([a["bbox"] for a in anns], np.float64).reshape(-1, 4)
        area = np.array(
            [a["area"] if "area" in a else a["bbox"][2] * a["bbox"][3] for a in anns], np.float64
        )
        crowd = np.array([bool(a.get("iscrowd", 0)) for a in anns], bool)
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise DetectError(
            f"{source}: not a COCO instances JSON ({type(e).__name__}: {e})"
        ) from None
    return _ground_truth(cat_ids, names, img_ids, img_names, wh, a_img, a_cat, bbox, area, crowd,
                         source)  # fmt: skip


def _ground_truth(cat_ids, names, img_ids, img_names, wh, a_img, a_cat, bbox, area, crowd, source):
    img_index = {i: n for n, i in enumerate(img_ids)}
    cat_index = {c: n for n, c in enumerate(cat_ids)}
    try:
        image = np.array([img_index[i] for i in a_img], np.int64)
    except KeyError as e:
        raise DetectError(f"{source}: annotation on unknown image_id {e.args[0]!r}") from None
    try:
        classes = np.array([cat_index[c] for c in a_cat], np.int64)
    except KeyError as e:
        raise DetectError(f"{source}: annotation with unknown category_id {e.args[0]!r}") from None
    return GroundTruth(
        names=names,
        category_ids=cat_ids,
        image_ids=img_ids,
        image_names=img_names,
        image_wh=wh.reshape(-1, 2),
        image=image,
        classes=classes,
        xywh=bbox,
        area=area,
        iscrowd=crowd,
        difficult=np.zeros(len(a_img), bool),
    )


def _fast_gt(data: bytes):
    """A COCO instances file as msgspec structs of just the fields scoring reads (masks and
    other fields are skipped unparsed), or None where it does not fit (the generic path then
    reads it or says what is wrong)."""
    try:
        import msgspec
    except ImportError:
        return None

    # defstruct: class bodies here would see their nested types as strings (PEP 563)
    image = msgspec.defstruct(
        "Image",
        [("id", int | str), ("file_name", str | None, None), ("width", int, 0), ("height", int, 0)],
        gc=False,
    )
    ann = msgspec.defstruct(
        "Ann",
        [
            ("image_id", int | str),
            ("category_id", int),
            ("bbox", tuple[float, float, float, float]),
            ("area", float | None, None),
            ("iscrowd", int, 0),
        ],
        gc=False,
    )
    cat = msgspec.defstruct("Cat", [("id", int), ("name", str | None, None)], gc=False)
    Doc = msgspec.defstruct("Doc", [("images", list[image]), ("categories", list[cat]),
                                    ("annotations", list[ann], [])], gc=False)  # fmt: skip

    try:
        return msgspec.json.decode(data, type=Doc)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None


def read_coco_ground_truth(path: str | Path) -> GroundTruth:
    path = Path(path)
    data = _read_bytes(path)
    with _no_gc():
        doc = _fast_gt(data)
        if doc is None:
            return coco_ground_truth(_loads(data, path), path)
        images, anns = doc.images, doc.annotations
        n = len(anns)
        bbox = np.fromiter(chain.from_iterable(a.bbox for a in anns), np.float64, 4 * n)
        bbox = bbox.reshape(n, 4)
        area = np.array([a.area for a in anns], np.float64)  # None -> NaN: the box area
        area = np.where(np.isnan(area), bbox[:, 2] * bbox[:, 3], area)
        return _ground_truth(
            cat_ids=[c.id for c in doc.categories],
            names=[str(c.id if c.name is None else c.name) for c in doc.categories],
            img_ids=[im.id for im in images],
            img_names=[str(im.id if im.file_name is None else im.file_name) for im in images],
            wh=np.array([(im.width, im.height) for im in images], np.int64),
            a_img=[a.image_id for a in anns],
            a_cat=[a.category_id for a in anns],
            bbox=bbox,
            area=area,
            crowd=np.array([a.iscrowd for a in anns], bool),
            source=path,
        )


def coco_results(obj, gt: GroundTruth, source: str | Path = "predictions") -> Predictions:
    """A COCO results list (`[{"image_id", "category_id", "bbox": [x, y, w, h], "score"}]`) ->
    Predictions. `image_id` must be an image of `gt` (as pycocotools asserts) and `category_id`
    one of its categories (for YAML / VOC data the class index); NaN, negative sizes: errors."""
    if not isinstance(obj, list):
        raise DetectError(f"{source}: expected a JSON list of detections (COCO results format)")
    if not obj:
        return Predictions.empty()
    n = len(obj)
    try:
        img = list(map(itemgetter("image_id"), obj))
        cat = list(map(itemgetter("category_id"), obj))
        score = np.fromiter(map(itemgetter("score"), obj), np.float64, n)
        boxes = list(map(itemgetter("bbox"), obj))
        if set(map(len, boxes)) != {4}:
            raise ValueError("every `bbox` must be [x, y, w, h]")
        bbox = np.fromiter(chain.from_iterable(boxes), np.float64, 4 * n).reshape(n, 4)
    except (KeyError, TypeError, ValueError) as e:
        raise DetectError(f"{source}: not a COCO results list ({type(e).__name__}: {e})") from None
    return _predictions(img, cat, score, bbox, gt, source)


def _predictions(img: list, cat: list, score, bbox, gt: GroundTruth, source) -> Predictions:
    image = _index(img, gt.image_ids, source, "image_id", "an image absent from the ground truth")
    classes = _index(cat, gt.category_ids, source, "category_id", "a category absent from GT")
    p = Predictions(image, classes, bbox, score)
    check_predictions(p, gt, str(source))
    return p


def _index(values: list | np.ndarray, known: list, source, what: str, why: str) -> np.ndarray:
    """Map ids to their position in `known`; the first unknown one is a DetectError."""
    ints = isinstance(values, np.ndarray) or set(map(type, values)) <= {int}
    if ints and set(map(type, known)) <= {int}:
        # the common case, vectorised: binary search among the known ids
        v = np.asarray(values, np.int64)
        k = np.asarray(known, np.int64)
        small = len(k) and k.min() >= 0 and k.max() < 4 * len(v) + 1_000_000
        if small and len(np.unique(k)) == len(k):
            # small unique non-negative ids (COCO's): a table lookup, not a binary search
            table = np.full(int(k.max()) + 2, -1, np.int64)  # last slot: any id out of range
            table[k] = np.arange(len(k))
            pos = table[np.where((v >= 0) & (v <= k.max()), v, len(table) - 1)]
            if (pos < 0).any():
                raise DetectError(f"{source}: {what} {int(v[np.argmax(pos < 0)])} is {why}")
            return pos
        o = np.argsort(k, kind="stable")
        pos = np.minimum(np.searchsorted(k[o], v), len(k) - 1)
        bad = k[o][pos] != v
        if bad.any():
            raise DetectError(f"{source}: {what} {int(v[np.argmax(bad)])} is {why}")
        return o[pos]
    if isinstance(values, np.ndarray):
        values = values.tolist()
    lookup = {k: n for n, k in enumerate(known)}
    # ids written as strings of digits for int ids (and back) still match
    for k, n in list(lookup.items()):
        lookup.setdefault(str(k), n)
        if isinstance(k, str) and k.isdigit():
            lookup.setdefault(int(k), n)
    pos = np.empty(len(values), np.int64)
    for j, u in enumerate(values):
        n = lookup.get(u) if isinstance(u, int | str) and not isinstance(u, bool) else None
        if n is None:
            raise DetectError(f"{source}: {what} {u!r} is {why}")
        pos[j] = n
    return pos


def _fast_columns(data: bytes) -> tuple | None:
    """(image_id, category_id, score [N], bbox [N,4]) by msgspec's typed decoder (no dicts
    built: ~4x faster than a generic parse), or None (not installed, or the file does not fit
    the schema: the generic path then reads it or says what is wrong). Integer ids come back
    as int64 arrays, other ids as lists."""
    try:
        import msgspec
    except ImportError:
        return None

    class Det(msgspec.Struct, gc=False):
        image_id: int  # COCO ids: int-only decodes ~2x faster than int | str
        category_id: int
        bbox: tuple[float, float, float, float]
        score: float

    class DetStr(Det):
        image_id: int | str  # file stems (YAML / VOC data)

    items = None
    for schema in (Det, DetStr):
        try:
            items = msgspec.json.decode(data, type=list[schema])
            break
        except (msgspec.DecodeError, msgspec.ValidationError):
            continue
    if items is None:
        return None
    n = len(items)
    if schema is Det:
        img = np.fromiter(map(attrgetter("image_id"), items), np.int64, n)
    else:
        img = list(map(attrgetter("image_id"), items))
    cat = np.fromiter(map(attrgetter("category_id"), items), np.int64, n)
    score = np.fromiter(map(attrgetter("score"), items), np.float64, n)
    bbox = np.fromiter(chain.from_iterable(map(attrgetter("bbox"), items)), np.float64, 4 * n)
    return img, cat, score, bbox.reshape(n, 4)


def read_coco_results(path: str | Path, gt: GroundTruth) -> Predictions:
    path = Path(path)
    data = _read_bytes(path)
    with _no_gc():
        cols = _fast_columns(data)
        if cols is None:
            return coco_results(_loads(data, path), gt, path)
    return _predictions(*cols, gt, path)


def read_yolo_folder(folder: str | Path, gt: GroundTruth) -> Predictions:
    """A folder of YOLO label files with confidence (`class cx cy w h conf`, normalised 0..1, one
    file per image named by the image's stem) -> Predictions in pixels."""
    folder = Path(folder)
    stems = {Path(n).stem: i for i, n in enumerate(gt.image_names)}
    for i, im_id in enumerate(gt.image_ids):
        stems.setdefault(str(im_id), i)
    rows, imgs = [], []
    for f in sorted(folder.glob("*.txt")):
        i = stems.get(f.stem)
        if i is None:
            raise DetectError(f"{f}: no image named {f.stem!r} in the ground truth")
        for ln, line in enumerate(f.read_text().splitlines(), 1):
            parts = line.split()
            if not parts:
                continue
            try:
                if len(parts) != 6:
                    raise ValueError
                vals = [float(v) for v in parts]
                if not vals[0].is_integer() or not all(math.isfinite(v) for v in vals):
                    raise ValueError
            except ValueError:
                raise DetectError(
                    f"{f}:{ln}: expected `class cx cy w h conf` with finite numbers"
                ) from None
            if vals[3] < 0 or vals[4] < 0:
                raise DetectError(f"{f}:{ln}: negative width or height")
            if not 0 <= vals[0] < gt.num_classes:
                raise DetectError(f"{f}:{ln}: class {int(vals[0])} outside 0..{gt.num_classes - 1}")
            rows.append(vals)
            imgs.append(i)
    if not rows:
        return Predictions.empty()
    a = np.array(rows, np.float64)  # [D,6]
    image = np.array(imgs, np.int64)
    wh = gt.image_wh[image].astype(np.float64)  # [D,2]
    w, h = a[:, 3] * wh[:, 0], a[:, 4] * wh[:, 1]
    xywh = np.stack([a[:, 1] * wh[:, 0] - w / 2, a[:, 2] * wh[:, 1] - h / 2, w, h], axis=1)
    p = Predictions(image, a[:, 0].astype(np.int64), xywh, a[:, 5])
    check_predictions(p, gt, str(folder))
    return p


def read_predictions(path: str | Path, gt: GroundTruth) -> Predictions:
    """PRED: a COCO results JSON file or a folder of YOLO txt files with confidence."""
    path = Path(path)
    if path.is_dir():
        return read_yolo_folder(path, gt)
    if not path.exists():
        raise DetectError(f"{path}: no such file or folder")
    return read_coco_results(path, gt)


def load_ground_truth(
    path: str | Path, split: str = "val", images: str | None = None
) -> GroundTruth:
    """GT for scoring: a COCO instances JSON is read here straight into float64 arrays (exact
    and fast at COCO scale); YAML / VOC data sets go through detect.data.load_dataset."""
    if is_coco_gt(path):
        return read_coco_ground_truth(path)
    from detect.data import load_dataset
    from detect.metrics.arrays import ground_truth

    return ground_truth(load_dataset(path, split=split, images=images))
