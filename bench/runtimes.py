"""Forward time per image of tiny and YOLOv8n in every CPU runtime, and how far each runtime's
output is from PyTorch's.

Models: tiny = the shipped `weights/shapes-tiny.safetensors` (BN fused, as predict runs it);
YOLOv8n = ultralytics' `yolov8n.yaml` (random init, 80 classes, saved once so every runtime
runs the same weights; fused), exported by ultralytics itself (`YOLO(...).export(format=onnx |
openvino, dynamic=True)`, YOLO_OFFLINE=1). Runtimes:
PyTorch fp32, ONNX Runtime (threads = CPUs, spinning off, as detect.runtime), OpenVINO f32
(LATENCY hint, as detect.runtime; dynamic shapes, and the model reshaped to the static input
shape) and OpenVINO bf16 where the CPU supports it (AMX / AVX512-BF16). Input: 8 `detect synth`
images letterboxed to 320 x 320 (and tiny at 256 x 320, the rectangular letterbox of 4:3 photos).
Every (model, runtime, batch) is timed in turn within each round (interleaved); the figures are
medians over rounds of the per-call median.

Agreement: max |runtime - PyTorch| over the raw outputs (tiny: decoded boxes in input pixels and
probabilities; YOLOv8n: its output tensor), and for tiny the final boxes after NMS (conf 0.25):
same count, max corner difference.

    .venv/bin/python bench/runtimes.py [--rounds 5] [--calls 5]
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

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # the policy detect predict runs torch with
ENV = {**os.environ, "YOLO_OFFLINE": "1", "YOLO_VERBOSE": "False"}


def synth_batch(n: int, hw: tuple[int, int]) -> np.ndarray:
    """n `detect synth` images (easy, 4:3 crops of 640 renders) letterboxed to hw, uint8 RGB."""
    from detect.runtime import letterbox
    from detect.synth import EASY, SynthConfig, render_image

    cfg = SynthConfig(size=640, **{**EASY, "min_objects": 3})
    out = np.empty((n, 3, *hw), np.uint8)
    for i in range(n):
        img, _, _ = render_image(np.random.default_rng([7, i]), cfg)
        lb, _, _ = letterbox(np.ascontiguousarray(img[:480]), max(hw), shape=hw)
        out[i] = lb[..., ::-1].transpose(2, 0, 1)
    return out


def export_v8(tmp: Path) -> dict[str, Path]:
    """YOLOv8n from its YAML (random init) saved once, then exported by ultralytics: all the
    runtimes run the same weights."""
    code = (
        "from ultralytics import YOLO\n"
        "YOLO('yolov8n.yaml').save('yolov8n-rand.pt')\n"
        "YOLO('yolov8n-rand.pt').export(format='onnx', imgsz=320, dynamic=True, simplify=False)\n"
        "YOLO('yolov8n-rand.pt').export(format='openvino', imgsz=320, dynamic=True)\n"
    )
    r = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp, env=ENV, capture_output=True, text=True
    )
    if r.returncode:
        sys.exit(f"ultralytics export failed:\n{r.stderr[-2000:]}")
    return {
        "pt": tmp / "yolov8n-rand.pt",
        "onnx": tmp / "yolov8n-rand.onnx",
        "openvino": tmp / "yolov8n-rand_openvino_model",
    }


def ort_session(path: Path, threads: int):
    import onnxruntime as ort

    o = ort.SessionOptions()
    o.intra_op_num_threads, o.inter_op_num_threads = threads, 1
    o.add_session_config_entry("session.intra_op.allow_spinning", "0")
    o.add_session_config_entry("session.inter_op.allow_spinning", "0")
    s = ort.InferenceSession(str(path), o, providers=["CPUExecutionProvider"])
    name = s.get_inputs()[0].name
    return lambda x: s.run(None, {name: x})[0]


def ov_model(xml: Path, precision: str, threads: int, static: tuple | None):
    import openvino as ov

    core = ov.Core()
    model = core.read_model(str(xml))
    if static is not None:
        model.reshape({model.input(0).get_any_name(): list(static)})
    cfg = {"INFERENCE_PRECISION_HINT": precision, "PERFORMANCE_HINT": "LATENCY",
           "INFERENCE_NUM_THREADS": threads}  # fmt: skip
    req = core.compile_model(model, "CPU", cfg).create_infer_request()

    def run(x):
        req.infer({0: x}, share_inputs=True)
        return req.get_output_tensor(0).data.copy()

    return run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--calls", type=int, default=5, help="calls per (case, round); median kept")
    args = ap.parse_args()

    import openvino as ov
    import torch
    from ultralytics import YOLO

    from detect.models import load_weights
    from detect.models.export import export_model
    from detect.resources import shapes_weights
    from detect.runtime import cpu_count, to_float_input

    threads = cpu_count()
    bf16 = "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    cpu = ov.Core().get_property("CPU", "FULL_DEVICE_NAME")
    print(f"CPU: {cpu}, {threads} threads; torch {torch.__version__} "
          f"({torch.get_num_threads()} threads), OpenVINO {ov.__version__}; "
          f"bf16: {'supported' if bf16 else 'not supported (no AMX / AVX512-BF16)'}")  # fmt: skip

    tmp = Path(tempfile.mkdtemp(prefix="bench-runtimes-"))
    try:
        net, meta = load_weights(shapes_weights())
        net.fuse().eval()
        tiny_files = {
            f: export_model(load_weights(shapes_weights())[0], f, tmp / n, 320, meta)
            for f, n in (("onnx", "tiny.onnx"), ("openvino", "tiny_openvino"))
        }
        v8_files = export_v8(tmp)
        v8 = YOLO(str(v8_files["pt"])).model.float().fuse().eval()

        sq, rect = synth_batch(8, (320, 320)), synth_batch(8, (256, 320))
        inputs = {"320x320": sq, "256x320 (rect)": rect}

        def torch_run(model):
            def run(x):
                with torch.inference_mode():
                    y = model(torch.from_numpy(x))
                return (y[0] if isinstance(y, (tuple, list)) else y).numpy()

            return run

        # (model, runtime) -> callable on float32 NCHW; the inputs each model is timed on
        cases: dict[tuple[str, str], object] = {
            ("tiny", "PyTorch fp32"): torch_run(net.predict),
            ("tiny", "ONNX Runtime"): ort_session(tiny_files["onnx"], threads),
            ("tiny", "OpenVINO f32"): ov_model(
                tiny_files["openvino"] / "model.xml", "f32", threads, None
            ),
            ("YOLOv8n", "PyTorch fp32"): torch_run(v8),
            ("YOLOv8n", "ONNX Runtime"): ort_session(v8_files["onnx"], threads),
            ("YOLOv8n", "OpenVINO f32"): ov_model(
                v8_files["openvino"] / "yolov8n-rand.xml", "f32", threads, None
            ),
        }
        static = {}  # OpenVINO reshaped to one static shape per (batch, input)
        for b in (1, 8):
            for key, x in inputs.items():
                shape = (b, 3, *x.shape[2:])
                static[("tiny", b, key)] = ov_model(
                    tiny_files["openvino"] / "model.xml", "f32", threads, shape
                )
                if key == "320x320":
                    static[("YOLOv8n", b, key)] = ov_model(
                        v8_files["openvino"] / "yolov8n-rand.xml", "f32", threads, shape
                    )
        if bf16:
            cases[("tiny", "OpenVINO bf16")] = ov_model(
                tiny_files["openvino"] / "model.xml", "bf16", threads, None
            )
            cases[("YOLOv8n", "OpenVINO bf16")] = ov_model(
                v8_files["openvino"] / "yolov8n-rand.xml", "bf16", threads, None
            )

        plan = []  # (label model, runtime, batch, input key, fn)
        for (model, runtime), fn in cases.items():
            for b in (1, 8):
                for key in inputs:
                    if model == "YOLOv8n" and key != "320x320":
                        continue
                    plan.append((model, runtime, b, key, fn))
        for (model, b, key), fn in static.items():
            plan.append((model, "OpenVINO f32 static", b, key, fn))

        floats = {k: to_float_input(v) for k, v in inputs.items()}
        for *_, b, key, fn in plan:  # warm up (first calls compile / allocate)
            fn(floats[key][:b])
            fn(floats[key][:b])
        times: dict[tuple, list[float]] = {p[:4]: [] for p in plan}
        for _ in range(args.rounds):
            for model, runtime, b, key, fn in plan:
                x = floats[key][:b]
                ts = []
                for _ in range(args.calls):
                    t = time.perf_counter()
                    fn(x)
                    ts.append(time.perf_counter() - t)
                times[(model, runtime, b, key)].append(statistics.median(ts) * 1000 / b)

        print(f"\nforward ms/image (median of {args.rounds} interleaved rounds x {args.calls} "
              "calls), and agreement with PyTorch:")  # fmt: skip
        print("| model | runtime | input | batch 1 | batch 8 | max abs diff vs PyTorch |")
        print("|---|---|---|---:|---:|---|")
        seen = set()
        for model, runtime, _, key, fn in plan:
            if (model, runtime, key) in seen:
                continue
            seen.add((model, runtime, key))
            t1 = statistics.median(times[(model, runtime, 1, key)])
            t8 = statistics.median(times[(model, runtime, 8, key)])
            agree = agreement(model, runtime, key, fn, floats, cases)
            print(f"| {model} | {runtime} | {key} | {t1:.1f} | {t8:.1f} | {agree} |")
        if not bf16:
            print("| tiny, YOLOv8n | OpenVINO bf16 | | n/a | n/a | this CPU has no bf16 "
                  "(OpenVINO runs f32: the fallback) |")  # fmt: skip
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


_REF: dict = {}


def agreement(model, runtime, key, fn, floats, cases) -> str:
    """Max |output - PyTorch output|; for tiny also the boxes after NMS (conf 0.25)."""
    from detect.runtime import postprocess

    x = floats[key]
    if (model, key) not in _REF:
        _REF[(model, key)] = cases[(model, "PyTorch fp32")](x)
    ref = _REF[(model, key)]
    if runtime == "PyTorch fp32":
        return "(reference)"
    if x.shape[0] > 1 and runtime.endswith("static"):
        return "(as dynamic)"
    got = fn(x)
    out = f"raw {np.abs(got - ref).max():.2g}"
    if model == "tiny":
        a, b = postprocess(ref, conf=0.25), postprocess(got, conf=0.25)
        n_ref, n_got = sum(map(len, a)), sum(map(len, b))
        diffs = [np.abs(p[:, :4] - q[:, :4]).max() for p, q in zip(a, b, strict=True)
                 if len(p) == len(q) and len(p)]  # fmt: skip
        out += f"; {n_got}/{n_ref} boxes, corners within {max(diffs, default=0):.2g} px"
    return out


if __name__ == "__main__":
    main()
