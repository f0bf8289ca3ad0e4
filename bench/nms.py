"""Time detect.boxes.batched_nms against torchvision.ops.batched_nms side by side.

Usage: .venv/bin/python bench/nms.py [--runs 7]
Random boxes over 80 classes, 1k / 10k / 100k boxes; median ms per call; ratio = ours / torchvision.
"""

from __future__ import annotations

import argparse
import functools
import statistics
import time

import torch
import torchvision

from detect.boxes import batched_nms


def make_case(n: int, num_classes: int = 80, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    xy = torch.rand(n, 2, generator=gen) * 600
    wh = torch.rand(n, 2, generator=gen) * 100 + 4
    boxes = torch.cat((xy, xy + wh), 1)
    scores = torch.rand(n, generator=gen)
    classes = torch.randint(0, num_classes, (n,), generator=gen)
    return boxes, scores, classes


def time_ms(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return (time.perf_counter() - t0) * 1e3


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--iou", type=float, default=0.45)
    args = ap.parse_args()
    torch.set_num_threads(1)
    print(f"torch {torch.__version__}, torchvision {torchvision.__version__}, 1 thread, 80 classes")
    print(f"{'boxes':>8} {'ours ms':>10} {'torchvision ms':>15} {'ratio':>7} {'kept':>7}")
    for n in (1_000, 10_000, 100_000):
        boxes, scores, classes = make_case(n)
        ours = batched_nms(boxes, scores, classes, args.iou)
        ref = torchvision.ops.batched_nms(boxes, scores, classes, args.iou)
        assert torch.equal(ours, ref), "keep indices differ"
        runs = args.runs if n < 100_000 else max(3, args.runs // 2)
        # interleaved, so machine load (shared cores) hits both alike; one warm-up call each
        case = (boxes, scores, classes, args.iou)
        ours_fn = functools.partial(batched_nms, *case)
        tv_fn = functools.partial(torchvision.ops.batched_nms, *case)
        ours_fn(), tv_fn()
        a, b = [], []
        for _ in range(runs):
            a.append(time_ms(ours_fn))
            b.append(time_ms(tv_fn))
        ma, mb = statistics.median(a), statistics.median(b)
        print(f"{n:>8} {ma:>10.3f} {mb:>15.3f} {ma / mb:>7.3f} {len(ours):>7}")


if __name__ == "__main__":
    main()
