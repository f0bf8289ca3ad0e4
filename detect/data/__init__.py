"""Data sets: one in-memory form (`DatasetRecords`) for ultralytics YAML, COCO JSON and VOC folders.

Nothing here imports torch or OpenCV: evaluation and anchors read data sets without them. Each
reader is imported when its format is read (YAML and XML parsing are not free): `detect
evaluate` on a COCO JSON starts as fast as it can.
`DetectionDataset` (torch) lives in `detect.data.dataset`, `letterbox` in `detect.data.transforms`.
"""

from __future__ import annotations

from pathlib import Path

from detect.data.image import image_size, read_image
from detect.data.types import DatasetRecords, Detections, ImageRecord, ReadReport
from detect.errors import DetectError

__all__ = [
    "DatasetRecords",
    "Detections",
    "ImageRecord",
    "ReadReport",
    "image_size",
    "load_dataset",
    "read_image",
]


def load_dataset(
    path: str | Path,
    split: str = "train",
    images: str | Path | None = None,
    report: ReadReport | None = None,
) -> DatasetRecords:
    """Read one split of a data set, recognised by what `path` is.

    - a `.yaml`/`.yml` file: the ultralytics layout (`split` is a key: train, val, test);
    - a `.json` file: COCO instances (`split` is ignored; images in `images`, default next to
      the JSON);
    - a folder with `Annotations/`: PASCAL VOC (`split` names a list in `ImageSets/Main`);
    - a folder holding exactly one `.yaml`: that YAML.

    Sizes come from the annotations (image headers for YAML); no pixels are decoded. Skipped or
    mended data is counted in the returned `records.report` (`report` if given). Raises
    DetectError for anything that makes the split unusable (bad file, empty split, unknown class).
    """
    path = Path(path)
    report = ReadReport() if report is None else report
    if path.is_dir():
        from detect.data.voc import is_voc, read_voc

        if is_voc(path):
            return read_voc(path, split, report)
        yamls = sorted(path.glob("*.yaml")) + sorted(path.glob("*.yml"))
        if len(yamls) == 1:  # a folder holding one data set YAML means that YAML
            from detect.data.yolo import read_yolo

            return read_yolo(yamls[0], split, report)
        raise DetectError(
            f"{path}: not a data set (a VOC folder has Annotations/; or give a .yaml or .json file)"
        )
    if not path.exists():
        raise DetectError(f"{path}: no such file or folder")
    suffix = path.suffix.lower()
    if suffix in (".yaml", ".yml"):
        from detect.data.yolo import read_yolo

        return read_yolo(path, split, report)
    if suffix == ".json":
        from detect.data.coco import read_coco

        return read_coco(path, Path(images) if images is not None else None, report)
    raise DetectError(f"{path}: unknown data set format (expected .yaml, .json or a VOC folder)")
