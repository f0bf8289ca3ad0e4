"""Reading what `detect evaluate` scores: COCO instances JSON ground truth, COCO results JSON and
YOLO txt (with confidence) predictions, straight into the float64 arrays of detect.metrics.arrays.

The COCO paths keep the JSON's float64 numbers (no xyxy float32 round trip) so the scores equal
pycocotools', and avoid per-object Python beyond one pass of list comprehensions.
"""

from __future__ import annotations

import gc
import json
import math
from contextlib import contextmanager
from itertools import chain
from operator import attrgetter, itemgetter
from pathlib import Path

import numpy as np

from detect.data.types import ReadReport
from detect.errors import DetectError
from detect.metrics.arrays import GroundTruth, Predictions, check_predictions, ground_truth


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
        image_paths=img_names,
        image_wh=wh.reshape(-1, 2),
        image=image,
        classes=classes,
        xywh=bbox,
        area=area,
        iscrowd=crowd,
        difficult=np.zeros(len(a_img), bool),
        exact_ids=True,
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


def coco_results(
    obj, gt: GroundTruth, source: str | Path = "predictions", report: ReadReport | None = None
) -> Predictions:
    """A COCO results list (`[{"image_id", "category_id", "bbox": [x, y, w, h], "score"}]`) ->
    Predictions. `category_id` must be one of gt's categories (for YAML / VOC data the class
    index); NaN, negative sizes: errors. `image_id` must be an image of COCO ground truth (as
    pycocotools asserts); for YAML / VOC data an id that is not one is looked for by its
    `file_name` and path (`ImagePaths`), and predictions on no image of the split go to
    `report` ("unmatched"; an error without a report, or when none is on any image)."""
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

    def names() -> list:
        return [d.get("file_name") if isinstance(d, dict) else None for d in obj]

    return _predictions(img, cat, score, bbox, gt, source, names, report)


def _predictions(
    img: list, cat: list, score, bbox, gt: GroundTruth, source, names=None, report=None
) -> Predictions:
    """Predictions from parsed columns. `names` (the `file_name`s, or a callable giving them
    on demand) lets images be found by path where their id is not one of `gt`'s."""
    image = _image_index(img, gt, source, names, report)
    classes = _index(cat, gt.category_ids, source, "category_id", "a category absent from GT")
    keep = image >= 0
    p = Predictions(image, classes, bbox, score)
    if not keep.all():
        p = Predictions(image[keep], classes[keep], bbox[keep], score[keep])
    check_predictions(p, gt, str(source))
    return p


def _image_index(img: list | np.ndarray, gt: GroundTruth, source, names, report) -> np.ndarray:
    """int64 [D]: the gt image of each prediction, -1 for one outside the ground truth.

    The `image_id` first (pycocotools' rule, the only one for COCO ground truth); then, for
    YAML / VOC data, the `file_name` and the id as a path (`ImagePaths`). Unknown images are
    an error for COCO ground truth (pycocotools asserts); otherwise each is reported as
    "unmatched" in `report`, and an error when no prediction fits any image.
    """
    if gt.exact_ids or len(img) == 0:
        why = "an image absent from the ground truth"
        return _index(img, gt.image_ids, source, "image_id", why)
    if isinstance(img, np.ndarray):
        img = img.tolist()
    exact = _id_lookup(gt.image_ids)
    out = np.empty(len(img), np.int64)
    misses: dict[int, list[int]] = {}
    for j, u in enumerate(img):
        n = exact.get(u) if isinstance(u, int | str) and not isinstance(u, bool) else None
        if n is None:
            misses.setdefault(u if isinstance(u, int | str) else str(u), []).append(j)
        else:
            out[j] = n
    if not misses:
        return out
    names = names() if callable(names) else names
    paths = ImagePaths(gt.image_paths)
    unmatched = []
    for u, rows in misses.items():
        fname = names[rows[0]] if names is not None else None
        n = paths.find(u, fname, source)
        out[rows] = -1 if n is None else n
        if n is None:
            unmatched.append((u, fname, len(rows)))
    if unmatched:
        u, fname, _ = unmatched[0]
        first = f"image_id {u!r}" + (f" ({fname})" if fname else "")
        if not (out >= 0).any():
            raise DetectError(f"{source}: no prediction is on an image of the ground truth "
                              f"(first: {first})")  # fmt: skip
        if report is None:
            raise DetectError(f"{source}: {first} is an image absent from the ground truth")
        for u, fname, k in unmatched:
            what = f"image_id {u!r}" + (f" ({fname})" if fname else "")
            report.add("unmatched", f"{source}: {what}: {k} detections, no such image in GT")
    return out


def _id_lookup(ids: list) -> dict:
    """id -> image index, where ids written as digit strings (`"12"`) also find int ids."""
    lookup = {k: n for n, k in enumerate(ids)}
    for k, n in list(lookup.items()):
        if isinstance(k, int | np.integer):
            lookup.setdefault(str(int(k)), n)
    return lookup


class ImagePaths:
    """Finds the image a prediction means by the trailing parts of its path.

    Every trailing run of parts of every ground-truth path is a key, with and without the
    file extension (`cam1/000001.jpg`, `cam1/000001`, `000001.jpg`, `000001`), and an
    all-digit stem is a key as an int too (`000001` as 1). A prediction's file name (or id)
    picks the longest of its own trailing runs that is a key: one image is a match, several
    are a clash (a DetectError naming them), none is no match.
    """

    def __init__(self, paths: list[str]) -> None:
        self.paths = paths
        self.keys: dict[tuple, list[int]] = {}
        for n, p in enumerate(paths):
            parts = _parts(p)
            if not parts:
                continue
            stem = parts[-1].rsplit(".", 1)[0] if "." in parts[-1][1:] else parts[-1]
            bare = (*parts[:-1], stem)
            for seq in {parts, bare}:
                for k in range(1, len(seq) + 1):
                    self.keys.setdefault(seq[-k:], []).append(n)
            if stem.isascii() and stem.isdigit():
                self.keys.setdefault((int(stem),), []).append(n)

    def find(self, image_id, file_name: str | None, source) -> int | None:
        """The image index, None if nothing fits; DetectError if several do."""
        for key in (_parts(file_name) if file_name else (), _id_parts(image_id)):
            for k in range(len(key), 0, -1):
                hits = self.keys.get(key[-k:])
                if hits is None:
                    continue
                hits = sorted(set(hits))
                if len(hits) == 1:
                    return hits[0]
                shown = ", ".join(self.paths[h] for h in hits[:3])
                raise DetectError(
                    f"{source}: image_id {image_id!r}"
                    + (f" (file_name {file_name!r})" if file_name else "")
                    + f" fits {len(hits)} images of the ground truth ({shown}); give each "
                    "image a unique id (as `detect predict --save-json` now writes)"
                )
        return None


def _parts(path: str) -> tuple[str, ...]:
    parts = path.replace("\\", "/").split("/")
    return tuple(p for p in parts if p not in ("", ".", ".."))


def _id_parts(image_id) -> tuple:
    if isinstance(image_id, int | np.integer) and not isinstance(image_id, bool):
        return (int(image_id),)
    return _parts(str(image_id))


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
    lookup = _id_lookup(known)
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


def _file_names(data: bytes, path: Path) -> list:
    """The `file_name` of every detection (None where absent): a second, rarer parse, only for
    predictions whose image_id is not an image's."""
    obj = _loads(data, path)
    return [d.get("file_name") if isinstance(d, dict) else None for d in obj]


def read_coco_results(
    path: str | Path, gt: GroundTruth, report: ReadReport | None = None
) -> Predictions:
    """A COCO results JSON file -> Predictions (see `coco_results`)."""
    path = Path(path)
    data = _read_bytes(path)
    with _no_gc():
        cols = _fast_columns(data)
        if cols is None:
            return coco_results(_loads(data, path), gt, path, report)
    return _predictions(*cols, gt, path, lambda: _file_names(data, path), report)


def read_yolo_folder(
    folder: str | Path, gt: GroundTruth, report: ReadReport | None = None
) -> Predictions:
    """A folder of YOLO label files with confidence (`class cx cy w h conf`, normalised 0..1)
    -> Predictions in pixels. Files are found recursively and matched to images by their path
    below `folder` (`cam1/000001.txt` is the image `.../cam1/000001.<ext>`; `ImagePaths`), so
    the sub-folders `detect predict --save-txt` keeps tell same-named images apart. A file on
    no image of `gt` goes to `report` ("unmatched"; an error without a report, or when no
    file fits any image)."""
    folder = Path(folder)
    paths = ImagePaths(gt.image_paths)
    exact = _id_lookup(gt.image_ids)
    files = sorted(folder.rglob("*.txt"))
    if not files:
        raise DetectError(f"{folder}: no .txt prediction files in this folder")
    rows, imgs, unmatched = [], [], []
    for f in files:
        rel = f.relative_to(folder).with_suffix("").as_posix()
        i = exact.get(rel)
        if i is None:
            i = paths.find(rel, None, folder)
        lines = f.read_text(encoding="utf-8-sig", errors="replace").splitlines()
        if i is None:
            unmatched.append((f, sum(1 for ln in lines if ln.split())))
            continue
        for ln, line in enumerate(lines, 1):
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
    if unmatched:
        if len(unmatched) == len(files):
            raise DetectError(
                f"{folder}: none of the {len(files)} prediction files is named after an image of "
                f"the ground truth (first: {unmatched[0][0].relative_to(folder)})"
            )
        if report is None:
            raise DetectError(f"{unmatched[0][0]}: no image of the ground truth has this name")
        for f, k in unmatched:
            report.add("unmatched", f"{f}: {k} detections, no image of this name in the split")
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


def read_predictions(
    path: str | Path, gt: GroundTruth, report: ReadReport | None = None
) -> Predictions:
    """PRED: a COCO results JSON file or a folder of YOLO txt files with confidence."""
    path = Path(path)
    if path.is_dir():
        return read_yolo_folder(path, gt, report)
    if not path.exists():
        raise DetectError(f"{path}: no such file or folder")
    return read_coco_results(path, gt, report)


def load_ground_truth(
    path: str | Path,
    split: str = "val",
    images: str | None = None,
    report: ReadReport | None = None,
) -> GroundTruth:
    """GT for scoring: a COCO instances JSON is read here straight into float64 arrays (exact
    and fast at COCO scale); YAML / VOC data sets go through detect.data.load_dataset, whose
    skipped and mended data goes to `report`."""
    if is_coco_gt(path):
        return read_coco_ground_truth(path)
    # deferred: a COCO JSON needs none of the data set readers (start-up of `detect evaluate`)
    from detect.data import load_dataset

    return ground_truth(load_dataset(path, split=split, images=images, report=report))
