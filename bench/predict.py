"""`detect predict` vs `yolo predict` (ultralytics), side by side in one run.

1. End to end: wall time of the whole `detect predict DIR --imgsz 320` process (imports, decoding,
   inference, drawing, saving 200 annotated images) next to the whole
   `yolo predict model=yolov8n.yaml source=DIR imgsz=320 device=cpu save=True` process, run
   alternately, medians.
2. Forward latency at batch 1 and 16 at 320: our detector (BN fused, as predict runs it) next to
   YOLOv8n (fused, as ultralytics' predictor runs it), interleaved, medians.
3. Streaming: peak RSS of `detect predict` on a 3000-frame video vs a 300-frame one (annotated
   video written; --imgsz 128 to keep it short).

Needs the bench extra (`.venv/bin/pip install -e ".[bench]"`: ultralytics-opencv-headless).
YOLO_OFFLINE=1 keeps ultralytics from probing the network (its font download for PIL labels is
never needed: predict draws ASCII labels with OpenCV).

    .venv/bin/python bench/predict.py [--runs 3] [--weights W] [--skip-memory]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
ENV = {**os.environ, "YOLO_OFFLINE": "1", "YOLO_VERBOSE": "False"}
# The in-process forward latency runs both models under the policy `detect predict` uses.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


CPU: dict[str, list[float]] = {}  # label -> CPU seconds (user + sys) per run


def sh(cmd: list[str], env: dict | None = None, label: str | None = None) -> float:
    """Run a command to completion; its wall time in seconds (CPU time kept under `label`)."""
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    r = subprocess.run(cmd, env=env or ENV, capture_output=True, text=True)
    dt = time.perf_counter() - t
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    if r.returncode != 0:
        sys.exit(f"failed ({r.returncode}): {' '.join(cmd)}\n{r.stderr[-2000:]}")
    if label:
        cpu = r1.ru_utime - r0.ru_utime + r1.ru_stime - r0.ru_stime
        CPU.setdefault(label, []).append(cpu)
    return dt


def peak_rss_mb(cmd: list[str]) -> float:
    """Peak resident memory of a command (its own process), in MB."""
    wrapper = (
        "import resource, subprocess, sys; r = subprocess.run(sys.argv[1:]); "
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(r.returncode)"
    )
    r = subprocess.run(
        [sys.executable, "-c", wrapper, *cmd], env=ENV, capture_output=True, text=True
    )
    if r.returncode != 0:
        sys.exit(f"failed ({r.returncode}): {' '.join(cmd)}\n{r.stderr[-2000:]}")
    return int(r.stdout.strip().splitlines()[-1]) / 1024  # Linux: KB


def make_weights(path: Path) -> Path:
    """An untrained tiny model (6 classes, 320): same architecture and cost as the shipped one."""
    from detect.models import ModelConfig, build_model
    from detect.models.weights_file import save_weights

    save_weights(path, build_model(ModelConfig(arch="tiny", num_classes=6, imgsz=320)), {})
    return path


def make_video(path: Path, frames: int, size=(192, 128), fps: float = 25.0) -> None:
    import cv2
    import numpy as np

    w, h = size
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
    for i in range(frames):
        f = np.full((h, w, 3), 60 + (i % 50), np.uint8)
        x = 10 + (i * 3) % (w - 60)
        cv2.rectangle(f, (x, 30), (x + 40, 90), (40, 40, 220), -1)
        vw.write(f)
    vw.release()


def forward_latency(weights: Path, runs: int) -> None:
    import torch
    from ultralytics import YOLO

    from detect.models.weights_file import load_weights

    ours, _ = load_weights(weights)
    ours.fuse().eval()
    v8n = YOLO("yolov8n.yaml").model.fuse().eval()  # as ultralytics' predictor runs it

    def once(model, x) -> float:
        t = time.perf_counter()
        model(x)
        return time.perf_counter() - t

    print(f"\nforward latency at 320 (torch threads {torch.get_num_threads()}), median ms:")
    with torch.inference_mode():
        for b in (1, 16):
            x = torch.rand(b, 3, 320, 320)
            ours.predict(x), v8n(x)  # warm up
            t_ours, t_v8 = [], []
            for _ in range(max(runs, 5 if b == 16 else 20)):
                t_ours.append(once(ours.predict, x))
                t_v8.append(once(v8n, x))
            a, y = statistics.median(t_ours) * 1e3, statistics.median(t_v8) * 1e3
            print(f"  batch {b:2d}: detect {a:8.1f} ms   yolov8n {y:8.1f} ms   ratio {y / a:.2f}x")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3, help="end-to-end runs of each tool")
    ap.add_argument("--images", type=int, default=200)
    ap.add_argument("--weights", help="default: shipped weights if present, else untrained tiny")
    ap.add_argument("--skip-memory", action="store_true")
    args = ap.parse_args()
    if shutil.which("yolo", path=str(BIN)) is None:
        sys.exit("ultralytics is missing: .venv/bin/pip install -e '.[bench]'")

    from detect.resources import default_weights

    tmp = Path(tempfile.mkdtemp(prefix="bench-predict-"))
    try:
        weights = Path(args.weights) if args.weights else default_weights()
        if not weights.is_file():
            weights = make_weights(tmp / "tiny-untrained.safetensors")
        print(f"weights: {weights}")
        sh([str(BIN / "detect"), "synth", str(tmp / "data"), "--train", str(args.images),
            "--val", "1", "--seed", "7"])  # fmt: skip
        images = tmp / "data" / "images" / "train"
        ours_cmd = [str(BIN / "detect"), "predict", str(images), "--imgsz", "320",
                    "--weights", str(weights), "--device", "cpu"]  # fmt: skip
        yolo_cmd = [str(BIN / "yolo"), "predict", "model=yolov8n.yaml", f"source={images}",
                    "imgsz=320", "device=cpu", "save=True", f"project={tmp / 'yolo'}"]  # fmt: skip

        # `yolo` as users run it, and with the OpenMP policy `detect predict` sets for itself
        # (OMP_WAIT_POLICY=PASSIVE), so the comparison does not hinge on that one setting.
        passive = {**ENV, "OMP_WAIT_POLICY": "PASSIVE"}
        t_ours, t_yolo, t_yolo_p = [], [], []
        for r in range(args.runs):
            t_ours.append(sh([*ours_cmd, "--out", str(tmp / "ours" / f"r{r}")], label="detect"))
            t_yolo.append(sh([*yolo_cmd, f"name=r{r}"], label="yolo"))
            t_yolo_p.append(sh([*yolo_cmd, f"name=p{r}"], env=passive, label="yolo-passive"))
            print(f"  run {r + 1}: detect {t_ours[-1]:.2f} s   yolo {t_yolo[-1]:.2f} s   "
                  f"yolo (passive OpenMP) {t_yolo_p[-1]:.2f} s")  # fmt: skip
        n_saved = len(list((tmp / "ours" / "r0").glob("*.jpg")))
        n_saved_y = len(list((tmp / "yolo" / "r0").glob("*.jpg")))
        a, y, yp = (statistics.median(t) for t in (t_ours, t_yolo, t_yolo_p))
        print(f"end to end, {args.images} images at 320 (saved: detect {n_saved}, "
              f"yolo {n_saved_y}), median of {args.runs}:")  # fmt: skip
        print(f"  detect predict {a:.2f} s   yolo predict {y:.2f} s   speedup {y / a:.2f}x")
        print(f"  yolo predict with OMP_WAIT_POLICY=PASSIVE {yp:.2f} s   speedup {yp / a:.2f}x")
        c = {k: statistics.median(v) for k, v in CPU.items()}
        print(f"  CPU s (user+sys): detect {c['detect']:.2f}   yolo {c['yolo']:.2f} "
              f"({c['yolo'] / c['detect']:.2f}x)   yolo passive {c['yolo-passive']:.2f} "
              f"({c['yolo-passive'] / c['detect']:.2f}x)")  # fmt: skip

        forward_latency(weights, args.runs)

        if not args.skip_memory:
            rss = {}
            for frames in (300, 3000):
                video = tmp / f"v{frames}.mp4"
                make_video(video, frames)
                rss[frames] = peak_rss_mb([str(BIN / "detect"), "predict", str(video),
                                           "--weights", str(weights), "--imgsz", "128",
                                           "--device", "cpu",
                                           "--out", str(tmp / "mem" / str(frames))])  # fmt: skip
            print(f"\npeak RSS, video predict (annotated video written, --imgsz 128): "
                  f"300 frames {rss[300]:.0f} MB   3000 frames {rss[3000]:.0f} MB   "
                  f"growth {100 * (rss[3000] / rss[300] - 1):+.1f}%")  # fmt: skip
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
