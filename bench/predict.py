"""`detect predict` vs `yolo predict` (ultralytics), side by side in one run.

1. End to end: wall time and peak RSS of whole processes on the same 200 `detect synth` images at
   320 with annotated images saved, run interleaved (each command once per round), medians:
   - `detect predict DIR` with no option (the default weights; on this CPU the shipped ONNX
     export), `detect predict DIR --weights W` (PyTorch), and on W exported by `detect export`
     to OpenVINO (f32) and ONNX (`--weights W_openvino/`, `--weights W.onnx`: torch is never
     imported);
   - `yolo predict model=yolov8n_openvino_model` (`yolo export model=yolov8n.yaml
     format=openvino imgsz=320`, one command: ultralytics' fastest CPU path) and
     `yolo predict model=yolov8n.yaml` (PyTorch), both `imgsz=320 device=cpu save=True`;
   then the same commands on one image (start-up).
2. Forward latency at batch 1 and 16 at 320: our detector (BN fused, as predict runs it) next to
   YOLOv8n (fused, as ultralytics' predictor runs it), interleaved, medians.
3. Streaming: peak RSS of `detect predict` on a 3000-frame video vs a 300-frame one (annotated
   video written; --imgsz 128 to keep it short).

Needs the bench extra (`.venv/bin/pip install -e ".[bench]"`: ultralytics-opencv-headless).
YOLO_OFFLINE=1 keeps ultralytics from probing the network (its font download for PIL labels is
never needed: predict draws ASCII labels with OpenCV).

    .venv/bin/python bench/predict.py [--runs 3] [--weights W] [--skip-memory] [--skip-forward]
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


def timed(cmd: list[str]) -> tuple[float, float]:
    """Wall seconds and peak RSS (MiB) of one process (its own rusage, via wait4)."""
    t = time.perf_counter()
    p = subprocess.Popen(cmd, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(p.pid, 0)
    dt = time.perf_counter() - t
    err = p.stderr.read().decode(errors="replace") if p.stderr else ""
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{err[-2000:]}")
    return dt, usage.ru_maxrss / 1024


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
    ap.add_argument("--skip-forward", action="store_true")
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
        one = tmp / "one"
        one.mkdir()
        shutil.copy(sorted(images.iterdir())[0], one)
        for fmt, name in (("onnx", "tiny.onnx"), ("openvino", "tiny_openvino")):
            sh([str(BIN / "detect"), "export", str(weights), "--format", fmt, "--out",
                str(tmp / name)])  # fmt: skip
        v8_export = [str(BIN / "yolo"), "export", "model=yolov8n.yaml", "format=openvino"]
        subprocess.run([*v8_export, "imgsz=320"], cwd=tmp, env=ENV, check=True, capture_output=True)
        v8_ov = tmp / "yolov8n_openvino_model"
        detect = [str(BIN / "detect"), "predict"]

        def commands(src: Path, r: str) -> dict[str, list[str]]:
            o = tmp / "out" / r
            return {
                # what a user runs: no option at all (the shipped ONNX model on this CPU)
                "detect predict, defaults": [*detect, str(src), "--out", str(o / "def")],
                "detect predict, tiny PyTorch": [*detect, str(src), "--weights", str(weights),
                                                 "--device", "cpu", "--out", str(o / "pt")],
                "detect predict, tiny OpenVINO f32": [
                    *detect, str(src), "--weights", str(tmp / "tiny_openvino"), "--out",
                    str(o / "ov")],
                "detect predict, tiny ONNX Runtime": [
                    *detect, str(src), "--weights", str(tmp / "tiny.onnx"), "--out",
                    str(o / "ort")],
                "yolo predict, YOLOv8n OpenVINO": [
                    str(BIN / "yolo"), "predict", f"model={v8_ov}", f"source={src}", "imgsz=320",
                    "device=cpu", "save=True", f"project={o}", "name=yolo-ov"],
                "yolo predict, YOLOv8n PyTorch": [
                    str(BIN / "yolo"), "predict", "model=yolov8n.yaml", f"source={src}",
                    "imgsz=320", "device=cpu", "save=True", f"project={o}", "name=yolo-pt"],
            }  # fmt: skip

        for title, src, rounds in ((f"{args.images} images", images, args.runs),
                                   ("one image (start-up)", one, args.runs)):  # fmt: skip
            res: dict[str, list[tuple[float, float]]] = {}
            for r in range(rounds):
                for name, cmd in commands(src, f"{title[:3]}{r}").items():
                    res.setdefault(name, []).append(timed(cmd))
                line = "  ".join(f"{v[-1][0]:.2f}" for v in res.values())
                print(f"  {title}, round {r + 1}: {line}", flush=True)
            out0 = tmp / "out" / f"{title[:3]}0"
            saved = {k: len(list((out0 / k).glob("*.jpg"))) for k in ("def", "pt", "ov", "ort")}
            print(f"\n{title}, whole processes, median of {rounds} interleaved runs "
                  f"(annotated images saved by detect: {saved}):")  # fmt: skip
            print("| command | wall s | peak RSS MiB | vs yolo OpenVINO | vs yolo PyTorch |")
            print("|---|---:|---:|---:|---:|")
            med = {k: statistics.median(t for t, _ in v) for k, v in res.items()}
            for k, v in res.items():
                print(f"| {k} | {med[k]:.2f} | {max(m for _, m in v):.0f} | "
                      f"{med['yolo predict, YOLOv8n OpenVINO'] / med[k]:.2f}x | "
                      f"{med['yolo predict, YOLOv8n PyTorch'] / med[k]:.2f}x |")  # fmt: skip

        if not args.skip_forward:
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
