"""Model speed: `tiny` vs ultralytics YOLOv8n (random init, same class count), side by side.

Forward + decode (no NMS) at batch 1 and 16, CPU, BatchNorm fused in both, medians of several
runs; also parameters and GFLOPs (torch.utils.flop_counter for both, 2 x MACs).

    .venv/bin/python bench/models.py [--imgsz 320] [--classes 6] [--threads 2] [--runs 15] [--train]

Needs the `[bench]` extra (ultralytics) for the peer; builds YOLOv8n from its YAML (no download).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch

os.environ.setdefault("YOLO_OFFLINE", "1")


def _median_ms(fns: dict, x: torch.Tensor, runs: int, grad: bool = False) -> dict[str, float]:
    """Median ms per call of each fn; runs interleave the models so load drift hits all alike."""
    times: dict[str, list[float]] = {k: [] for k in fns}
    with torch.inference_mode(not grad):
        for fn in fns.values():
            fn(x)
            fn(x)
        for _ in range(runs):
            for name, fn in fns.items():
                t = time.perf_counter()
                fn(x)
                times[name].append(time.perf_counter() - t)
    return {k: statistics.median(v) * 1e3 for k, v in times.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--imgsz", type=int, default=320)
    ap.add_argument("--classes", type=int, default=6)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--width", type=float, default=1.0)
    ap.add_argument("--train", action="store_true", help="also time a training step")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from detect.models import ModelConfig, build_model
    from detect.models.common import gflops

    tiny = build_model(ModelConfig(num_classes=args.classes, width=args.width, imgsz=args.imgsz))
    tiny = tiny.eval().fuse()
    models = {"tiny": (tiny, tiny.predict)}
    try:
        from ultralytics.nn.tasks import DetectionModel

        v8 = DetectionModel("yolov8n.yaml", nc=args.classes, verbose=False).eval().fuse()
        models["yolov8n"] = (v8, v8)
    except ImportError:
        print("ultralytics not installed: pip install -e '.[bench]' for the peer")

    s = args.imgsz
    fns = {name: fn for name, (_, fn) in models.items()}
    b1 = _median_ms(fns, torch.rand(1, 3, s, s), args.runs)
    b16 = _median_ms(fns, torch.rand(16, 3, s, s), max(3, args.runs // 3))
    rows = {}
    for name, (model, _) in models.items():
        params = sum(p.numel() for p in model.parameters())  # after BN fusion
        gf = gflops(model, s) if name == "tiny" else _gflops_plain(model, s)
        rows[name] = (params, gf, b1[name], b16[name] / 16)
        params, gf, ms1, ms16 = rows[name]
        print(f"{name:8s} params {params:>10,}  GFLOPs@{s} {gf:5.2f}  "
              f"batch1 {ms1:6.1f} ms  batch16 {ms16:6.1f} ms/img")  # fmt: skip
    if args.train:
        # forward + backward of a dummy loss at batch 16, fresh (unfused) train-mode models
        trainable = {"tiny": build_model(tiny.cfg).train()}
        if "yolov8n" in models:
            trainable["yolov8n"] = DetectionModel("yolov8n.yaml", nc=args.classes, verbose=False)
            trainable["yolov8n"].train()

        def step(model):
            return lambda x: sum(o.float().mean() for o in _tensors(model(x))).backward()

        steps = {k: step(m) for k, m in trainable.items()}
        tr = _median_ms(steps, torch.rand(16, 3, s, s), 3, grad=True)
        for name, ms in tr.items():
            print(f"{name:8s} train step (fwd+bwd, batch 16): {16e3 / ms:6.1f} images/s")
    if len(rows) == 2:
        t, v = rows["tiny"], rows["yolov8n"]
        print(f"speed-up vs yolov8n: batch1 x{v[2] / t[2]:.2f}, batch16 x{v[3] / t[3]:.2f}; "
              f"GFLOPs x{v[1] / t[1]:.2f} fewer")  # fmt: skip


def _tensors(out) -> list[torch.Tensor]:
    """Every tensor in a model output (ultralytics returns dicts/lists in train mode)."""
    if isinstance(out, torch.Tensor):
        return [out]
    items = out.values() if isinstance(out, dict) else out
    return [t for item in items for t in _tensors(item)]


def _gflops_plain(model: torch.nn.Module, s: int) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as c, torch.no_grad():
        model(torch.rand(1, 3, s, s))
    return c.get_total_flops() / 1e9


if __name__ == "__main__":
    main()
