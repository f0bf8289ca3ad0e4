"""COCO-scale evaluation benchmark: `detect evaluate` vs pycocotools vs faster-coco-eval
(and hotcoco / ultrafast-pycocotools when installed), each a whole process from the JSON files to
the 12 stats, run side by side (round robin: one run of each tool per round); checks they agree
and prints times, ratios and peak memory.

    .venv/bin/python bench/coco_eval.py [--images 5000] [--repeat 3] [--skip pycocotools]
        [--case DIR]   # keep the generated JSON files in DIR and reuse them
        [--tide]       # also time `detect evaluate --tide` and TIDE alone (CPU, in process)
        [--tidecv]     # and compare TIDE with the tidecv package on the case (minutes)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent

# each peer: a script reading GT_JSON, DT_JSON and printing the 12 stats as JSON on the last line
PEER = """
import io, contextlib, json, sys
from {mod} import COCO
from {evmod} import {ev}
with contextlib.redirect_stdout(io.StringIO()):
    gt = COCO(sys.argv[1]); dt = gt.loadRes(sys.argv[2])
    e = {ev}(gt, dt, "bbox"); e.evaluate(); e.accumulate(); e.summarize()
print(json.dumps([float(x) for x in e.stats]))
"""
PEERS = {
    "pycocotools": ("pycocotools.coco", "pycocotools.cocoeval", "COCOeval"),
    "faster-coco-eval": ("faster_coco_eval", "faster_coco_eval", "COCOeval_faster"),
    "hotcoco": ("hotcoco", "hotcoco", "COCOeval"),
    "ultrafast-pycocotools": (
        "ultrafast_pycocotools.coco",
        "ultrafast_pycocotools.cocoeval",
        "COCOeval",
    ),
}


def make_case(
    out: Path, n_images: int, n_classes: int = 80, dets_per_image: int = 100, seed: int = 0
) -> None:
    """COCO-like GT (~7 boxes per image, ~1% crowd, COCO-style sparse category ids) and 100
    detections per image: jittered copies of GT (sometimes the wrong class) and random boxes."""
    rng = np.random.default_rng(seed)
    cat_ids = sorted(rng.choice(np.arange(1, 91), n_classes, replace=False).tolist())
    images, anns, dets = [], [], []
    for i in range(n_images):
        img_id = int(100000 + i * 7)
        W, H = int(rng.integers(320, 641)), int(rng.integers(320, 641))
        images.append({"id": img_id, "file_name": f"{img_id:012d}.jpg", "width": W, "height": H})
        ng = int(rng.poisson(7))
        wh = np.exp(rng.uniform(np.log(4), np.log(min(W, H) * 0.9), (ng, 2)))
        xy = rng.uniform(0, 1, (ng, 2)) * ([W, H] - wh)
        cls = rng.choice(cat_ids, ng)
        crowd = rng.random(ng) < 0.01
        for j in range(ng):
            bb = [round(float(v), 2) for v in (*xy[j], *wh[j])]
            anns.append(
                {
                    "id": len(anns) + 1,
                    "image_id": img_id,
                    "category_id": int(cls[j]),
                    "bbox": bb,
                    "area": round(bb[2] * bb[3] * float(rng.uniform(0.6, 1.0)), 2),
                    "iscrowd": int(crowd[j]),
                }
            )
        n_near = min(dets_per_image, ng * 6)
        src = rng.integers(0, max(ng, 1), n_near)
        for j in range(dets_per_image):
            if j < n_near and ng:
                g = src[j]
                s = wh[g] * rng.normal(1, 0.15, 2).clip(0.3)
                c = xy[g] + wh[g] / 2 + rng.normal(0, 0.1, 2) * wh[g]
                box = (*(c - s / 2), *s)
                c_id = int(cls[g]) if rng.random() < 0.9 else int(rng.choice(cat_ids))
            else:
                s = np.exp(rng.uniform(np.log(4), np.log(min(W, H) * 0.9), 2))
                box = (*(rng.uniform(0, 1, 2) * ([W, H] - s)), *s)
                c_id = int(rng.choice(cat_ids))
            dets.append(
                {
                    "image_id": img_id,
                    "category_id": c_id,
                    "bbox": [round(float(v), 2) for v in box],
                    "score": round(float(rng.random()), 5),
                }
            )
    cats = [{"id": c, "name": f"class{c}", "supercategory": "x"} for c in cat_ids]
    gt = {"images": images, "annotations": anns, "categories": cats}
    (out / "gt.json").write_text(json.dumps(gt))
    (out / "dets.json").write_text(json.dumps(dets))


def run(cmd: list[str]) -> tuple[float, float, str, float]:
    """Wall seconds, peak RSS (MB), stdout and CPU seconds (user + sys) of one whole process."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out = proc.stdout.read()
    err = proc.stderr.read()
    _, status, ru = os.wait4(proc.pid, 0)
    dt = time.perf_counter() - t0
    if status != 0:
        raise RuntimeError(f"{cmd[:3]} failed: {err[-2000:]}")
    return dt, ru.ru_maxrss / 1024, out, ru.ru_utime + ru.ru_stime


def installed(module: str) -> bool:
    code = f"import importlib.util,sys; sys.exit(importlib.util.find_spec('{module}') is None)"
    return subprocess.run([sys.executable, "-c", code]).returncode == 0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=5000)
    ap.add_argument("--repeat", type=int, default=3, help="runs per tool (median reported)")
    ap.add_argument("--skip", nargs="*", default=[], help="tools not to run")
    ap.add_argument("--case", help="folder to keep the case in and reuse (default: a temp dir)")
    ap.add_argument("--tide", action="store_true", help="also time detect's TIDE")
    ap.add_argument("--tidecv", action="store_true", help="with --tide: parity with tidecv")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(args.case or tmp)
        tmp.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        if not (tmp / "dets.json").exists():
            make_case(tmp, args.images)
        # counted without parsing: the peak RSS a child reports (ru_maxrss) starts from the
        # parent's at fork, so this process stays small
        g = (tmp / "gt.json").read_bytes()
        n_images = g.count(b'"file_name"')
        n_gt, n_crowd = g.count(b'"iscrowd"'), g.count(b'"iscrowd": 1')
        n_dt = (tmp / "dets.json").read_bytes().count(b'"score"')
        del g
        print(
            f"case: {n_images} images, {n_gt} GT ({n_crowd} crowd), "
            f"{n_dt} detections, ready in {time.perf_counter() - t0:.1f}s"
        )
        gt, dt = str(tmp / "gt.json"), str(tmp / "dets.json")
        py = sys.executable
        tools = {"detect": [py, "-m", "detect", "evaluate", gt, "--pred", dt, "--json", "-"]}
        if args.tide:
            tools["detect --tide"] = tools["detect"] + ["--tide"]
        for name, (mod, evmod, ev) in PEERS.items():
            if name in args.skip or not installed(mod.split(".")[0]):
                continue
            script = PEER.format(mod=mod, evmod=evmod, ev=ev)
            tools[name] = [py, "-c", script, gt, dt]
        # byte-compile detect as `pip install` does for the peers (with PYTHONDONTWRITEBYTECODE
        # set, an editable checkout would otherwise compile its modules again in every run)
        subprocess.run([py, "-m", "compileall", "-q", str(REPO / "detect")], check=True)
        runs: dict[str, list] = {name: [] for name in tools}
        for r in range(args.repeat):  # round robin, so load drifts hit every tool alike
            for name, cmd in tools.items():
                if name == "pycocotools" and r > 0:
                    continue  # minutes per run
                runs[name].append(run(cmd))
        results = {}
        for name, rs in runs.items():
            out = rs[-1][2].strip().splitlines()[-1]
            stats = json.loads(out)
            if isinstance(stats, dict):
                stats = list(stats["coco"].values())
            results[name] = (
                statistics.median(r[0] for r in rs),
                max(r[1] for r in rs),
                np.array(stats),
                statistics.median(r[3] for r in rs),
            )
            t, mb, _, cpu = results[name]
            print(f"{name:>22}: {t:7.2f} s wall  {cpu:7.2f} s cpu  peak {mb:6.0f} MB")
        ref_name = "pycocotools" if "pycocotools" in results else next(iter(results))
        ref = results[ref_name][2]
        print(f"\nmax |stats - {ref_name}|:")
        for name, (_, _, s, _) in results.items():
            print(f"{name:>22}: {np.abs(s - ref).max():.3g}")
        t_detect, c_detect = results["detect"][0], results["detect"][3]
        print("\ntime ratio (tool / detect): wall, cpu")
        for name, (t, _, _, c) in results.items():
            print(f"{name:>22}: {t / t_detect:6.2f}x  {c / c_detect:6.2f}x")
        print("\nstats (detect):", np.round(results["detect"][2], 4).tolist())
        if args.tide:
            tide_in_process(gt, dt, args.repeat, args.tidecv)


def tide_in_process(gt: str, dt: str, repeat: int, tidecv: bool) -> None:
    """TIDE's CPU time alone (median of `repeat`) and, with `tidecv`, its parity with tidecv."""
    sys.path.insert(0, str(REPO))
    from detect.metrics.predictions import read_coco_ground_truth, read_predictions
    from detect.metrics.tide import evaluate_tide

    g = read_coco_ground_truth(gt)
    p = read_predictions(dt, g)
    p.score_rank()  # shared with COCO and VOC in `detect evaluate`
    cpu = []
    for _ in range(repeat):
        t0 = time.process_time()
        r = evaluate_tide(g, p)
        cpu.append(time.process_time() - t0)
    print(f"\nTIDE alone: {statistics.median(cpu):.2f} s cpu (median of {repeat}); AP50 "
          f"{r.ap:.4f}, dAP {({k: round(v, 4) for k, v in r.dap.items()})}")  # fmt: skip
    if not tidecv:
        return
    sys.path.insert(0, str(REPO / "tests"))
    from test_metrics_tide import reference

    t0 = time.process_time()
    ap, dap, counts = reference(json.loads(Path(gt).read_text()), json.loads(Path(dt).read_text()))
    t = time.process_time() - t0
    diff = max(abs(ap - r.ap), *(abs(dap[k] - r.dap[k]) for k in dap))
    same = all(counts[k] == r.counts[k] for k in counts)
    print(
        f"tidecv: {t:.1f} s cpu; max |dAP - tidecv| = {diff:.3g} (fractions; x100 for "
        f"tidecv's points); counts equal: {same}"
    )


if __name__ == "__main__":
    main()
