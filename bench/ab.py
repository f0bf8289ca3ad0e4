"""A/B training rounds: several `detect train` variants side by side under one time budget.

Each variant trains the same data with the same seed in its own process, one torch thread and
one loader worker, all at once, so they share the machine equally; only the comparison within a
round means anything (each gets fewer epochs than a solo run). Prints the best val mAP of each
(`detect.metrics`, as in results.csv). The A/B tables of bench/README.md (Training) came from
rounds like:

    .venv/bin/python bench/ab.py --data /tmp/d/easy/data.yaml --minutes 15 \\
        yolov2:assigner=yolov2 tal:assigner=tal

A variant is NAME:key=value,key=value with fields of `detect.settings` RunConfig and
DetectorConfig (assigner, batch, lr, xy_scale, ...); values are parsed as JSON when they can be.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

CHILD = """
import json, sys, torch
torch.set_num_threads(1)
from detect.engine import TrainConfig, train
kw = json.loads(sys.argv[1])
r = train(TrainConfig.create(**kw))
print(json.dumps({"epochs": r.epochs, "best_epoch": r.best_epoch, "map50": r.map50, "map": r.map}))
"""


def parse_variant(text: str) -> tuple[str, dict]:
    name, _, rest = text.partition(":")
    kw = {}
    for item in filter(None, rest.split(",")):
        k, _, v = item.partition("=")
        try:
            kw[k] = json.loads(v)
        except ValueError:
            kw[k] = v
    return name, kw


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("variants", nargs="+", help="NAME:key=value,... (see the module docstring)")
    ap.add_argument("--data", required=True, help="data set YAML")
    ap.add_argument("--minutes", type=float, default=15.0, help="budget of every variant")
    ap.add_argument("--imgsz", type=int, default=320)
    ap.add_argument("--out", type=Path, default=Path("runs/ab"), help="parent of the run folders")
    a = ap.parse_args()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE"}
    procs = []
    for text in a.variants:
        name, kw = parse_variant(text)
        cfg = {"data": a.data, "time": a.minutes, "imgsz": a.imgsz, "workers": 1,
               "out": str(a.out / name), **kw}  # fmt: skip
        cmd = [sys.executable, "-c", CHILD, json.dumps(cfg)]
        procs.append((name, kw, subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, text=True)))
    print(f"{'run':<16} {'settings':<36} {'epochs':>6} {'mAP50':>7} {'mAP50-95':>9}")
    for name, kw, p in procs:
        out, _ = p.communicate()
        if p.returncode != 0:
            print(f"{name:<16} failed (exit {p.returncode})")
            continue
        r = json.loads(out.strip().splitlines()[-1])
        settings = ",".join(f"{k}={v}" for k, v in kw.items()) or "(defaults)"
        print(f"{name:<16} {settings:<36} {r['epochs']:>6} {r['map50']:>7.3f} {r['map']:>9.3f}")


if __name__ == "__main__":
    main()
