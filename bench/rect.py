"""Rectangular vs square letterbox on the VOC val split: mAP of each (pycocotools, VOC07), then
the paired bootstrap of their difference by `detect evaluate --pred square --pred rect`.

Both predict the val photos with the same weights at conf 0.001, NMS IoU 0.7; the results lists
are written as COCO JSON (image ids = VOC file stems) for `detect evaluate`.

    .venv/bin/python bench/rect.py --data ../shared/voc2007-416 [--weights weights/voc-tiny.onnx]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from voc import score  # noqa: E402  (a sibling bench script)

REPO = Path(__file__).resolve().parent.parent


def predict(records, weights: str, rect: bool):
    from detect.inference.dataset import predict_images
    from detect.inference.predictor import Predictor
    from detect.settings import PredictConfig

    p = Predictor(weights, PredictConfig(conf=0.001, iou=0.7, batch=16, rect=rect))
    loaded = ((i, *_read(im.path)) for i, im in enumerate(records.images))
    return predict_images(p, loaded, 16, None).detections


def _read(path):
    from detect.data.image import read_image

    return read_image(path), None


def to_json(records, d, path: Path) -> None:
    rows = [{"image_id": str(records.images[i].id), "category_id": int(c), "score": s,
             "bbox": [b[0], b[1], b[2] - b[0], b[3] - b[1]]}
            for i, b, s, c in zip(d.image.tolist(), d.boxes.tolist(), d.scores.tolist(),
                                  d.classes.tolist(), strict=True)]  # fmt: skip
    path.write_text(json.dumps(rows))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, required=True, help="VOC folder with a val list")
    ap.add_argument("--weights", default=str(REPO / "weights" / "voc-tiny.onnx"))
    ap.add_argument("--bootstrap", type=int, default=1000)
    a = ap.parse_args()
    from detect.data import load_dataset

    val = load_dataset(a.data, "val")
    tmp = Path(tempfile.mkdtemp(prefix="bench-rect-"))
    files = []
    for name, rect in (("square", False), ("rect", True)):
        d = predict(val, a.weights, rect)
        r = score(val, d)
        print(f"{name}: mAP50-95 {r['map']:.4f}  mAP50 {r['map50']:.4f}  VOC07 {r['voc07']:.4f}")
        files.append(tmp / f"{name}.json")
        to_json(val, d, files[-1])
    cmd = [sys.executable, "-m", "detect", "evaluate", str(a.data), "--split", "val",
           "--pred", str(files[0]), "--pred", str(files[1]),
           "--bootstrap", str(a.bootstrap)]  # fmt: skip
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, check=True).stdout
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print("\n".join(line for line in out.splitlines() if "bootstrap" in line or " - " in line))


if __name__ == "__main__":
    main()
