"""Real objects: `detect train` and ultralytics YOLOv8n on PASCAL VOC, same data, same budget.

Trains `detect` (its defaults plus any extra `detect train` options after `--`) on the train
list of a VOC folder for `--time` minutes, then YOLOv8n from `yolov8n.yaml` (random init, both
cores, ultralytics' defaults otherwise) on the same images, converted with `detect convert --to
yolo`, for the same minutes, one after the other. Both are scored the same way on the val list:
predictions at conf 0.001, NMS IoU 0.7, then pycocotools (mAP50-95, mAP50; VOC `difficult`
objects passed as crowd regions, so matching one neither counts nor costs) and VOC07 11-point
mAP50 by `detect.metrics` (the devkit's rule, difficult ignored).

    .venv/bin/python bench/voc.py --data ../shared/voc2007-416 --time 60 --work /tmp/vocbench
    .venv/bin/python bench/voc.py --data ../shared/voc2007-416 --time 60 --skip-peer -- --imgsz 416
    .venv/bin/python bench/voc.py --score RUN/weights/best.safetensors --data ../shared/voc2007-416

Needs the `[bench]` extra (ultralytics, pycocotools).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
DETECT = [sys.executable, "-m", "detect"]


def pycocotools_map(records, image: np.ndarray, boxes, scores, classes) -> tuple[float, float]:
    """(mAP50-95, mAP50) by pycocotools; `image` indexes records.images, boxes xyxy pixels."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    anns = []
    for k, im in enumerate(records.images):
        for b, c, d, crowd in zip(im.boxes.astype(float), im.classes, im.difficult, im.iscrowd,
                                  strict=True):  # fmt: skip
            anns.append({"id": len(anns) + 1, "image_id": k, "category_id": int(c),
                         "bbox": [b[0], b[1], b[2] - b[0], b[3] - b[1]],
                         "area": float((b[2] - b[0]) * (b[3] - b[1])),
                         "iscrowd": int(bool(d or crowd))})  # fmt: skip
    gt = {
        "images": [{"id": k, "width": im.width, "height": im.height}
                   for k, im in enumerate(records.images)],
        "categories": [{"id": c} for c in range(records.num_classes)],
        "annotations": anns,
    }  # fmt: skip
    dets = [{"image_id": int(i), "category_id": int(c), "score": float(s),
             "bbox": [float(b[0]), float(b[1]), float(b[2] - b[0]), float(b[3] - b[1])]}
            for i, b, s, c in zip(image, boxes, scores, classes, strict=True)]  # fmt: skip
    if not dets:
        return 0.0, 0.0
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = gt
        coco.createIndex()
        ev = COCOeval(coco, coco.loadRes(dets), "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return float(ev.stats[0]), float(ev.stats[1])


def score(records, dets) -> dict:
    """pycocotools mAP50-95 / mAP50 and detect's VOC07 11-point mAP50 of Detections."""
    from detect.metrics import evaluate

    m, m50 = pycocotools_map(records, dets.image, dets.boxes, dets.scores, dets.classes)
    res = evaluate(records, dets)
    return {"map": m, "map50": m50, "voc07": res.voc.map07, "detect_map": res.map}


def score_weights(weights: Path, records, imgsz: int | None, augment: bool = False) -> dict:
    from detect.inference.dataset import predict_records

    t0 = time.perf_counter()
    dets = predict_records(records, str(weights), imgsz=imgsz, conf=0.001, iou=0.7, batch=16,
                           augment=augment)  # fmt: skip
    out = score(records, dets)
    out["predict_s"] = time.perf_counter() - t0
    return out


def run_ours(data: Path, minutes: float, work: Path, extra: list[str]) -> dict:
    out = work / "ours"
    # Both tools decode each photo once (RAM cache), so neither pays JPEG decoding every epoch.
    cmd = [*DETECT, "train", str(data), "--time", str(minutes), "--out", str(out), "--cache", "ram",
           *extra]  # fmt: skip
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, cwd=REPO)
    seconds = time.perf_counter() - t0
    from detect.data import load_dataset

    res = score_weights(out / "weights" / "best.safetensors", load_dataset(data, "val"), None)
    rows = (out / "results.csv").read_text().splitlines()
    return {**res, "train_s": seconds, "epochs": len(rows) - 1, "run": str(out)}


def run_peer(data: Path, minutes: float, work: Path, imgsz: int, batch: int, threads: int):
    """YOLOv8n from its YAML (no pretrained weights) on `detect convert --to yolo` of DATA."""
    os.environ.setdefault("YOLO_OFFLINE", "1")
    yolo_data = work / "yolo"
    if not (yolo_data / "data.yaml").is_file():
        subprocess.run([*DETECT, "convert", str(data), "--to", "yolo", str(yolo_data),
                        "--split", "train", "--split", "val"], check=True, cwd=REPO)  # fmt: skip
    import ultralytics.utils.torch_utils as tu
    from ultralytics import YOLO

    tu.NUM_THREADS = threads  # ultralytics takes cpu_count - 1 (one core here) by default
    model = YOLO("yolov8n.yaml")
    t0 = time.perf_counter()
    model.train(data=str(yolo_data / "data.yaml"), time=minutes / 60, epochs=1000, imgsz=imgsz,
                batch=batch, device="cpu", pretrained=False, amp=False, project=str(work),
                cache="ram", name="peer", plots=False, verbose=False)  # fmt: skip
    seconds = time.perf_counter() - t0
    run = Path(model.trainer.save_dir)
    best = YOLO(str(run / "weights" / "best.pt"))
    from detect.data import load_dataset
    from detect.data.types import Detections

    records = load_dataset(data, "val")
    parts = {"image": [], "boxes": [], "scores": [], "classes": []}
    t1 = time.perf_counter()
    for k, im in enumerate(records.images):
        r = best.predict(str(im.path), conf=0.001, iou=0.7, imgsz=imgsz, verbose=False)[0]
        n = len(r.boxes)
        parts["image"].append(np.full(n, k, np.int64))
        parts["boxes"].append(r.boxes.xyxy.numpy().astype(np.float32).reshape(-1, 4))
        parts["scores"].append(r.boxes.conf.numpy().astype(np.float32))
        parts["classes"].append(r.boxes.cls.numpy().astype(np.int64))
    dets = Detections(**{k: np.concatenate(v) for k, v in parts.items()})
    out = score(records, dets)
    epochs = len((run / "results.csv").read_text().splitlines()) - 1
    return {**out, "train_s": seconds, "predict_s": time.perf_counter() - t1, "epochs": epochs,
            "run": str(run)}  # fmt: skip


def line(name: str, r: dict) -> str:
    epochs = f"{r['epochs']} epochs, {r['train_s'] / 60:.1f} min; " if "epochs" in r else ""
    return (f"{name}: mAP50-95 {r['map']:.4f}  mAP50 {r['map50']:.4f}  VOC07 {r['voc07']:.4f}  "
            f"({epochs}predict val {r['predict_s']:.0f} s)")  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, required=True, help="VOC folder (train and val lists)")
    ap.add_argument("--time", type=float, default=60.0, help="training budget of each, minutes")
    ap.add_argument("--imgsz", type=int, default=320, help="YOLOv8n's input (ours: its option)")
    ap.add_argument("--peer-batch", type=int, default=16, help="YOLOv8n batch (its default)")
    ap.add_argument("--peer-threads", type=int, default=os.cpu_count())
    ap.add_argument("--work", type=Path, default=Path("/tmp/bench-voc"))
    ap.add_argument("--skip-ours", action="store_true")
    ap.add_argument("--skip-peer", action="store_true")
    ap.add_argument("--score", type=Path, help="only score these detect weights on val")
    ap.add_argument("--score-imgsz", type=int, help="--score at this input size")
    ap.add_argument("--augment", action="store_true", help="--score with test-time augmentation")
    ap.add_argument(
        "--tta",
        help="--augment passes instead of the default, e.g. '1,1f,0.83' "
        "(side factors; f: mirrored)",
    )
    ap.add_argument("extra", nargs="*", help="extra `detect train` options (after --)")
    a = ap.parse_args()
    data = a.data.resolve()
    if a.score:
        from detect.data import load_dataset

        val = load_dataset(data, "val")
        if a.tta:
            from detect.inference.torchfree import AugmentedBackend

            passes = tuple((float(p.rstrip("f")), p.endswith("f")) for p in a.tta.split(","))
            AugmentedBackend.__init__.__defaults__ = (passes,)
        print(line(str(a.score), score_weights(a.score, val, a.score_imgsz, a.augment)))
        return
    a.work.mkdir(parents=True, exist_ok=True)
    results = {}
    if not a.skip_ours:
        results["detect"] = run_ours(data, a.time, a.work, a.extra)
        print(line("detect", results["detect"]), flush=True)
    if not a.skip_peer:
        results["yolov8n"] = run_peer(data, a.time, a.work, a.imgsz, a.peer_batch,
                                      a.peer_threads)  # fmt: skip
        print(line("YOLOv8n", results["yolov8n"]), flush=True)
    if len(results) == 2:
        o, p = results["detect"], results["yolov8n"]
        print(f"ratio detect / YOLOv8n: mAP50-95 {o['map'] / max(p['map'], 1e-9):.2f}x, "
              f"mAP50 {o['map50'] / max(p['map50'], 1e-9):.2f}x, "
              f"VOC07 {o['voc07'] / max(p['voc07'], 1e-9):.2f}x")  # fmt: skip
    (a.work / "results.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
