"""Convolutional sliding window vs cropping every window, on one 320x320 image.

One scale (window 32 px = the classifier input, so no resize), stride 4 px (the classifier's
total stride): 73 x 73 = 5329 windows. Timed side by side in interleaved rounds, medians of
--repeat rounds:

- naive:        one crop at a time through the classifier (for the record; --naive-windows of them,
                extrapolated to the whole grid, since the full loop takes minutes)
- sliding:      every crop, classified in batches (detect.inference.sliding.sliding_scores); several
                batch sizes, the fastest is the baseline
- conv-sliding: the classifier rewritten as convolutions, one pass (conv_sliding_scores)

The model is the shipped weights/shapes-window.safetensors if present, else a fresh one of the
default configuration (same cost). Last line: `conv-sliding speedup: N.Nx, max abs score diff D`.

    .venv/bin/python bench/sliding.py [--repeat 7] [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

from detect.inference.sliding import conv_sliding_scores, sliding_scores
from detect.models.window import build_window_model, to_conv

ROOT = Path(__file__).resolve().parent.parent


def _median_time(fn, repeat: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--size", type=int, default=320)
    ap.add_argument("--stride", type=int, default=4)
    ap.add_argument("--batches", default="64,256,1024", help="sliding batch sizes to try")
    ap.add_argument("--naive-windows", type=int, default=300)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    weights = ROOT / "weights" / "shapes-window.safetensors"
    if weights.is_file():
        from detect.models.weights_file import load_weights

        model, _ = load_weights(weights)
        source = str(weights.relative_to(ROOT))
    else:
        model = build_window_model({"num_classes": 6}).eval()
        source = "fresh model (default config)"
    conv = to_conv(model).eval()
    w = model.cfg.imgsz
    img = torch.rand(3, args.size, args.size)
    n = (args.size - w) // args.stride + 1
    print(f"model: {source}; window {w} px, stride {args.stride} px, {n} x {n} = {n * n} windows")
    print(f"threads {args.threads}, medians of {args.repeat} interleaved rounds")

    batches = [int(b) for b in args.batches.split(",")]
    times: dict[str, list[float]] = {"conv": [], **{f"crop{b}": [] for b in batches}}

    def timed(key: str, fn):
        t0 = time.perf_counter()
        out = fn()
        times[key].append(time.perf_counter() - t0)
        return out

    with torch.inference_mode():
        conv_sliding_scores(conv, img, args.stride)  # warm-up (allocator, kernels)
        # Interleaved rounds: the box's load drifts, and each round sees it for every method.
        for _ in range(args.repeat):
            conv_out = timed("conv", lambda: conv_sliding_scores(conv, img, args.stride))
            for b in batches:
                crop_out = timed(f"crop{b}", lambda b=b: sliding_scores(model, img, args.stride, b))

        def naive() -> None:
            k = 0
            for i in range(n):
                for j in range(n):
                    if k == args.naive_windows:
                        return
                    y, x = i * args.stride, j * args.stride
                    model(img[None, :, y : y + w, x : x + w]).softmax(1)
                    k += 1

        t_naive_part, _ = _median_time(naive, max(1, args.repeat // 2))
        t_naive = t_naive_part / args.naive_windows * n * n

    med = {k: statistics.median(v) for k, v in times.items()}
    t_conv = med["conv"]
    best_b = min(batches, key=lambda b: med[f"crop{b}"])  # the fairest baseline: its best batch
    t_crop = med[f"crop{best_b}"]
    diff = (conv_out - crop_out).abs().max().item()
    rows = [
        ("naive (1 crop at a time, extrapolated)", t_naive),
        *[(f"sliding (batches of {b} crops)", med[f"crop{b}"]) for b in batches],
        ("conv-sliding (one conv pass)", t_conv),
    ]
    print(f"{'method':<40} {'ms':>10} {'x vs conv':>10}")
    for name, t in rows:
        print(f"{name:<40} {1000 * t:>10.1f} {t / t_conv:>10.1f}")
    print(f"sliding baseline: batches of {best_b} (fastest); naive/sliding {t_naive / t_crop:.1f}x")
    print(f"conv-sliding speedup: {t_crop / t_conv:.1f}x, max abs score diff {diff:.1e}")


if __name__ == "__main__":
    main()
