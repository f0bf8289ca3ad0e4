"""Forward latency of `tiny` (the shipped VOC model) and YOLOv8n in every CPU runtime, side by
side: PyTorch fp32 (BatchNorm fused, as each tool's predictor runs it), ONNX Runtime and
OpenVINO f32, at 320 x 320, batch 1 and 8, ms per image (forward and decode, no NMS; no
letterbox, no image decoding).

Both models go through the same runtime settings: ONNX Runtime with 2 intra-op threads and
thread spinning off (what `detect predict` sets), OpenVINO f32 with the LATENCY hint. Ours is
exported by `detect export` (ONNX, and OpenVINO from it), YOLOv8n by `yolo export` (ultralytics'
own ONNX and OpenVINO exports of `yolov8n.yaml`, untrained: the cost of a model does not depend
on its weights). Every (model, runtime, batch) runs once per round, rounds interleaved; medians.

    .venv/bin/python bench/forward.py [--rounds 15]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as detect predict runs torch
REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
SIDE = 320
BATCHES = (1, 8)


def ort_run(path: Path):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = os.cpu_count() or 1
    opts.inter_op_num_threads = 1
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.add_session_config_entry("session.inter_op.allow_spinning", "0")
    opts.log_severity_level = 3
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    return lambda x: sess.run(None, {name: x})[0]


def ov_run(xml: Path):
    import openvino as ov

    cfg = {"INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY"}
    compiled = ov.Core().compile_model(str(xml), "CPU", cfg)
    return lambda x: compiled(x)[0]


def torch_run(model):
    import torch

    def run(x: np.ndarray):
        with torch.inference_mode():
            return model(torch.from_numpy(x))

    return run


def yolo_exports(tmp: Path) -> dict[tuple[str, int], Path]:
    """YOLOv8n exported by ultralytics, one file per batch (its exports are static)."""
    out = {}
    env = {**os.environ, "YOLO_OFFLINE": "1", "YOLO_VERBOSE": "False"}
    for b in BATCHES:
        d = tmp / f"v8-b{b}"
        d.mkdir()
        for fmt in ("onnx", "openvino"):
            subprocess.run([str(BIN / "yolo"), "export", "model=yolov8n.yaml", f"format={fmt}",
                            f"imgsz={SIDE}", f"batch={b}"], cwd=d, env=env, check=True,
                           capture_output=True)  # fmt: skip
        out["onnx", b] = d / "yolov8n.onnx"
        out["openvino", b] = d / "yolov8n_openvino_model" / "yolov8n.xml"
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--weights", type=Path, default=REPO / "weights" / "voc-tiny.safetensors")
    a = ap.parse_args()
    import torch
    from ultralytics import YOLO

    from detect.models import load_weights
    from detect.models.export import export_model

    tmp = Path(tempfile.mkdtemp(prefix="bench-forward-"))
    try:
        ours, meta = load_weights(a.weights)
        onnx = export_model(ours, "onnx", tmp / "tiny.onnx", SIDE, meta)
        ov_dir = export_model(load_weights(a.weights)[0], "openvino", tmp / "tiny_ov", SIDE, meta)
        ours.fuse().eval()
        v8 = YOLO("yolov8n.yaml").model.fuse().eval()
        v8x = yolo_exports(tmp)
        runs = {}
        for b in BATCHES:
            runs["tiny", "PyTorch", b] = torch_run(ours.predict)
            runs["tiny", "ONNX Runtime", b] = ort_run(onnx)
            runs["tiny", "OpenVINO f32", b] = ov_run(ov_dir / "model.xml")
            runs["YOLOv8n", "PyTorch", b] = torch_run(v8)
            runs["YOLOv8n", "ONNX Runtime", b] = ort_run(v8x["onnx", b])
            runs["YOLOv8n", "OpenVINO f32", b] = ov_run(v8x["openvino", b])
        inputs = {b: np.random.default_rng(0).random((b, 3, SIDE, SIDE), np.float32)
                  for b in BATCHES}  # fmt: skip
        for k, run in runs.items():  # warm up (first-call allocations, OpenVINO's JIT)
            run(inputs[k[2]])
            run(inputs[k[2]])
        times: dict[tuple, list[float]] = {k: [] for k in runs}
        for _ in range(a.rounds):
            for k, run in runs.items():
                t = time.perf_counter()
                run(inputs[k[2]])
                times[k].append((time.perf_counter() - t) / k[2] * 1e3)
        print(f"forward + decode at {SIDE} x {SIDE}, ms per image, median of {a.rounds} "
              f"interleaved rounds (torch threads {torch.get_num_threads()}):")  # fmt: skip
        print("| runtime | tiny b1 | YOLOv8n b1 | ratio | tiny b8 | YOLOv8n b8 | ratio |")
        print("|---|---:|---:|---:|---:|---:|---:|")
        for rt in ("PyTorch", "ONNX Runtime", "OpenVINO f32"):
            cells = []
            for b in BATCHES:
                t, y = (statistics.median(times[m, rt, b]) for m in ("tiny", "YOLOv8n"))
                cells += [f"{t:.1f}", f"{y:.1f}", f"{y / t:.2f}x"]
            print(f"| {rt} | " + " | ".join(cells) + " |")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
