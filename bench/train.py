"""Training benchmark: `detect train` on `detect synth` data under a wall-clock budget.

Reproduces the figure of weights/README.md: draws the synthetic set (seed recorded), trains the
tiny model with `detect train DATA --time T --imgsz 320`, then scores the best weights on the
val split with pycocotools (conf 0.001, NMS IoU 0.7, the reference protocol).

With --peer it also trains ultralytics YOLOv8n from scratch on the same data under the same
budget (batch 32, as the reference measurement) and prints both mAPs and their ratio.

    .venv/bin/python bench/train.py --time 20                     # ours only
    .venv/bin/python bench/train.py --time 20 --peer              # side by side (2 x the time)
    .venv/bin/python bench/train.py --data DATA.yaml --time 20    # a data set you already have
    .venv/bin/python bench/train.py --easy --time 20 --peer       # on `detect synth --easy` data
    .venv/bin/python bench/train.py --peer-only --data D.yaml     # only YOLOv8n
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DETECT = [sys.executable, "-m", "detect"]


def coco_map(data: Path, results: list[dict]) -> tuple[float, float]:
    """(mAP50, mAP50-95) of a COCO results list on DATA's val split, by pycocotools."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    from detect.data import load_dataset

    rec = load_dataset(data, "val")
    ids = {im.id: k for k, im in enumerate(rec.images)}
    gt = {
        "images": [
            {"id": k, "width": im.width, "height": im.height} for k, im in enumerate(rec.images)
        ],
        "categories": [{"id": c} for c in range(rec.num_classes)],
        "annotations": [
            {"id": n, "image_id": k, "category_id": int(c), "iscrowd": 0,
             "bbox": [float(b[0]), float(b[1]), float(b[2] - b[0]), float(b[3] - b[1])],
             "area": float((b[2] - b[0]) * (b[3] - b[1]))}
            for k, im in enumerate(rec.images) for n, (b, c) in enumerate(
                zip(im.boxes, im.classes, strict=True), start=k * 1000)
        ],
    }  # fmt: skip
    coco = COCO()
    coco.dataset = gt
    coco.createIndex()
    dets = [{**r, "image_id": ids[r["image_id"]]} for r in results if r["image_id"] in ids]
    if not dets:
        return 0.0, 0.0
    ev = COCOeval(coco, coco.loadRes(dets), "bbox")
    ev.evaluate()
    ev.accumulate()
    ev.summarize()
    return float(ev.stats[1]), float(ev.stats[0])


def run_ours(data: Path, minutes: float, imgsz: int, work: Path, extra: list[str]) -> dict:
    out = work / "ours"
    cmd = [*DETECT, "train", str(data), "--time", str(minutes), "--imgsz", str(imgsz),
           "--out", str(out), *extra]  # fmt: skip
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, cwd=REPO)
    seconds = time.perf_counter() - t0
    best = out / "weights" / "best.safetensors"
    pred = work / "ours-pred.json"
    images = Path(json.loads((out / "args.json").read_text())["config"]["data"])
    from detect.data import load_dataset

    val = load_dataset(images, "val")
    folder = val.images[0].path.parent
    t1 = time.perf_counter()
    subprocess.run(
        [*DETECT, "predict", str(folder), "--weights", str(best), "--conf", "0.001", "--iou",
         "0.7", "--imgsz", str(imgsz), "--no-images", "--save-json", str(pred),
         "--out", str(work / "ours-predict")],
        check=True, cwd=REPO, capture_output=True,
    )  # fmt: skip
    predict_s = time.perf_counter() - t1
    m50, m = coco_map(data, json.loads(pred.read_text()))
    rows = (out / "results.csv").read_text().splitlines()
    return {"map50": m50, "map": m, "train_s": seconds, "epochs": len(rows) - 1,
            "predict_s": predict_s, "run": str(out)}  # fmt: skip


def run_peer(data: Path, minutes: float, imgsz: int, work: Path, threads: int) -> dict:
    """YOLOv8n from scratch (no pretrained weights), same budget, ultralytics defaults.

    Ultralytics trains on the CPU with `cpu_count - 1` torch threads (one on a 2-core box, half
    the machine); `threads` overrides that so both tools get the same cores.
    """
    import ultralytics.utils.torch_utils as tu
    from ultralytics import YOLO

    tu.NUM_THREADS = threads

    model = YOLO("yolov8n.yaml")
    t0 = time.perf_counter()
    model.train(
        data=str(data), time=minutes / 60, epochs=1000, imgsz=imgsz, batch=32, device="cpu",
        pretrained=False, amp=False, project=str(work), name="peer", plots=False, verbose=False,
    )  # fmt: skip
    seconds = time.perf_counter() - t0
    run = Path(model.trainer.save_dir)  # peer, peer2, ... (ultralytics never overwrites)
    best = YOLO(str(run / "weights" / "best.pt"))
    from detect.data import load_dataset

    val = load_dataset(data, "val")
    results = []
    t1 = time.perf_counter()
    for im in val.images:
        r = best.predict(str(im.path), conf=0.001, iou=0.7, imgsz=imgsz, verbose=False)[0]
        for b, s, c in zip(r.boxes.xyxy.tolist(), r.boxes.conf.tolist(), r.boxes.cls.tolist(),
                           strict=True):  # fmt: skip
            results.append({"image_id": im.id, "category_id": int(c), "score": float(s),
                            "bbox": [b[0], b[1], b[2] - b[0], b[3] - b[1]]})  # fmt: skip
    predict_s = time.perf_counter() - t1
    m50, m = coco_map(data, results)
    epochs = len((run / "results.csv").read_text().splitlines()) - 1
    return {"map50": m50, "map": m, "train_s": seconds, "predict_s": predict_s, "epochs": epochs}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, help="data set YAML (default: draw one with detect synth)")
    ap.add_argument("--seed", type=int, default=0, help="detect synth seed")
    ap.add_argument("--easy", action="store_true", help="draw the set with detect synth --easy")
    ap.add_argument("--time", type=float, default=20.0, help="training budget, minutes")
    ap.add_argument("--imgsz", type=int, default=320)
    ap.add_argument("--peer", action="store_true", help="also train ultralytics YOLOv8n")
    ap.add_argument("--peer-only", action="store_true", help="only train YOLOv8n")
    ap.add_argument("--peer-threads", type=int, default=os.cpu_count(),
                    help="torch threads for YOLOv8n (default: all cores, as ours)")  # fmt: skip
    ap.add_argument("--work", type=Path, help="work folder (default: a temporary one)")
    ap.add_argument("extra", nargs="*", help="extra `detect train` options (after --)")
    a = ap.parse_args()
    work = a.work or Path(tempfile.mkdtemp(prefix="bench-train-"))
    work.mkdir(parents=True, exist_ok=True)
    data = a.data
    if data is None:
        easy = ["--easy"] if a.easy else []
        subprocess.run([*DETECT, "synth", str(work / "shapes"), "--seed", str(a.seed), *easy],
                       check=True, cwd=REPO, capture_output=True)  # fmt: skip
        data = work / "shapes" / "data.yaml"
    kind = "-" if a.data else f"{a.seed}{' --easy' if a.easy else ''}"
    print(f"data {data} (synth seed {kind}), budget {a.time} min", flush=True)
    ours = None
    if not a.peer_only:
        ours = run_ours(data.resolve(), a.time, a.imgsz, work, a.extra)
        print(f"ours: mAP50 {ours['map50']:.4f}  mAP50-95 {ours['map']:.4f}  "
              f"({ours['epochs']} epochs, {ours['train_s'] / 60:.1f} min; "
              f"predict val {ours['predict_s']:.1f} s)", flush=True)  # fmt: skip
    if a.peer or a.peer_only:
        peer = run_peer(data.resolve(), a.time, a.imgsz, work, a.peer_threads)
        print(
            f"YOLOv8n: mAP50 {peer['map50']:.4f}  mAP50-95 {peer['map']:.4f}  "
            f"({peer['epochs']} epochs, {peer['train_s'] / 60:.1f} min, {a.peer_threads} threads; "
            f"predict val {peer['predict_s']:.1f} s)"
        )
        if ours:
            print(f"ratio ours/YOLOv8n: mAP50-95 {ours['map'] / max(peer['map'], 1e-9):.3f}, "
                  f"mAP50 {ours['map50'] / max(peer['map50'], 1e-9):.3f}")  # fmt: skip
    elif ours:
        print(
            "reference YOLOv8n (20 min, held-out set): mAP50-95 0.672, mAP50 0.863; "
            f"ratio mAP50-95 {ours['map'] / 0.672:.3f}, mAP50 {ours['map50'] / 0.863:.3f}"
        )


if __name__ == "__main__":
    main()
