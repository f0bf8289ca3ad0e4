"""Fine-tuning benchmark: a small custom data set, 10 minutes from scratch, from ImageNet and
from the shipped model, side by side (one run after the other, both cores each).

Two data sets, built here (nothing downloaded):
- `voc3`: the VOC 2007 photos of `--data` (../shared/voc2007-416) holding a bottle, a potted
  plant or a TV monitor, labelled with those three classes only (other objects unlabelled, as a
  custom set would be): a few hundred web photos with small objects;
- `shapes`: `detect synth` shapes (300 train / 100 val), far from ImageNet's and VOC's photos.

Each is trained `--minutes` (default 10) three ways, every other setting at its default:
`--model tiny` (scratch), `--model efficientnet-lite0` (its ImageNet backbone) and `--weights`
the shipped default (detect.resources.default_weights: its tensors, a new class head). Prints
the best val mAP50-95 / mAP50 of each (the training table's, conf 0.001, NMS IoU 0.7) and the
ratio to scratch:

    .venv/bin/python bench/finetune.py --data ../shared/voc2007-416 --out runs/finetune

`--sets voc3` or `--ways scratch,shipped` run a part; a finished run folder is reused.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

CLASSES = ("bottle", "pottedplant", "tvmonitor")


def make_voc3(src: Path, out: Path) -> Path:
    """A VOC folder of the `src` photos holding one of CLASSES, with only those objects."""
    if (out / "ImageSets" / "Main" / "val.txt").is_file():
        return out
    (out / "Annotations").mkdir(parents=True, exist_ok=True)
    (out / "JPEGImages").mkdir(exist_ok=True)
    (out / "ImageSets" / "Main").mkdir(parents=True, exist_ok=True)
    (out / "classes.txt").write_text("\n".join(CLASSES) + "\n")
    for split in ("train", "val"):
        kept = []
        for i in (src / "ImageSets" / "Main" / f"{split}.txt").read_text().split():
            tree = ET.parse(src / "Annotations" / f"{i}.xml")
            root = tree.getroot()
            for obj in list(root.iter("object")):
                if obj.findtext("name") not in CLASSES:
                    root.remove(obj)
            if root.find("object") is None:
                continue
            tree.write(out / "Annotations" / f"{i}.xml")
            link = out / "JPEGImages" / f"{i}.jpg"
            if not link.exists():
                link.symlink_to((src / "JPEGImages" / f"{i}.jpg").resolve())
            kept.append(i)
        (out / "ImageSets" / "Main" / f"{split}.txt").write_text("\n".join(kept) + "\n")
    return out


def make_shapes(out: Path, detect: str) -> Path:
    if not (out / "data.yaml").is_file():
        cmd = [detect, "synth", str(out), "--train", "300", "--val", "100", "--seed", "3"]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return out / "data.yaml"


def train(detect: str, data: Path, run: Path, minutes: float, way: str) -> dict:
    """Best val figures of one run (reused when its folder holds a finished run)."""
    result = run / "result.json"
    if result.is_file():
        return json.loads(result.read_text())
    from detect.resources import default_weights

    extra = {
        "scratch": ["--model", "tiny"],
        "imagenet": ["--model", "efficientnet-lite0"],
        "shipped": ["--weights", str(default_weights())],
    }[way]
    cmd = [detect, "train", str(data), "--time", str(minutes), "--out", str(run / "train"), *extra]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    args = json.loads((run / "train" / "args.json").read_text())
    rows = (run / "train" / "results.csv").read_text().splitlines()
    head = rows[0].split(",")
    table = [dict(zip(head, r.split(","), strict=True)) for r in rows[1:]]
    best = max(table, key=lambda r: float(r["val_map"]))
    out = {
        "epochs": len(table), "map50": float(best["val_map50"]), "map": float(best["val_map"]),
        "train_images": args["train_images"], "val_images": args["val_images"],
        "command": " ".join(cmd),
    }  # fmt: skip
    result.write_text(json.dumps(out))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path("../shared/voc2007-416"))
    ap.add_argument("--out", type=Path, default=Path("runs/finetune"))
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--sets", default="voc3,shapes")
    ap.add_argument("--ways", default="scratch,imagenet,shipped")
    a = ap.parse_args()
    detect = str(Path(sys.executable).with_name("detect"))
    os.makedirs(a.out, exist_ok=True)
    sets = {
        "voc3": lambda: make_voc3(a.data, a.out / "data" / "voc3"),
        "shapes": lambda: make_shapes(a.out / "data" / "shapes", detect),
    }
    print(f"{'set':<7} {'start':<9} {'train/val':>9} {'epochs':>6} {'mAP50-95':>8} {'mAP50':>6} "
          f"{'vs scratch':>14}")  # fmt: skip
    for name in a.sets.split(","):
        data = sets[name]()
        base = None
        for way in a.ways.split(","):
            r = train(detect, data, a.out / name / way, a.minutes, way)
            if way == "scratch":
                base = r
            ratio = ""
            if base and base["map"] > 0 and base["map50"] > 0:
                ratio = f"{r['map'] / base['map']:.2f}x / {r['map50'] / base['map50']:.2f}x"
            print(
                f"{name:<7} {way:<9} {r['train_images']:>4}/{r['val_images']:<4} "
                f"{r['epochs']:>6} {r['map']:8.4f} {r['map50']:6.4f} {ratio:>14}",
                flush=True,
            )


if __name__ == "__main__":
    main()
