"""`detect train --cache` on this CPU: training images/s without a cache, with `--cache ram` and
with `--cache disk` (its files written by an earlier run), side by side.

Each measurement runs in a fresh process, per mode:
- loader: one epoch of the training DataLoader alone (2 workers, batch 8, mosaic and the other
  augmentations, no model): the most images/s the data side can feed;
- train: one epoch of `detect train DATA --max-images N --epochs 1` (the default model and
  settings: tiny, 320, batch 8, 2 loader workers), images/s from the first to the last step
  (the one-time cache build, start-up and validation left out; the build is timed apart).
Modes run interleaved, one each per round, after a round that writes the disk cache; medians.

    .venv/bin/python bench/cache.py --data ../shared/voc2007-416 [--images 800] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MODES = ("none", "ram", "disk")


def one(data: str, mode: str, images: int, out: Path) -> dict:
    """One epoch in this process; the step timestamps give images/s."""
    from detect.engine import TrainConfig, train
    from detect.engine import events as E
    from detect.settings import DetectorConfig, RunConfig

    stamps: list[tuple[float, int]] = []  # (time, steps done)
    t_cache: dict[str, float] = {}  # when the first image was cached, when all were

    def cb(e) -> None:
        if isinstance(e, E.CacheProgress):
            t_cache.setdefault("first", time.perf_counter())
        elif isinstance(e, E.Cached):
            t_cache["done"] = time.perf_counter()
        elif isinstance(e, E.StepEnd):
            stamps.append((time.perf_counter(), e.batch))

    cfg = TrainConfig(
        RunConfig(data=data, epochs=1, max_images=images, out=str(out)),
        DetectorConfig(cache=None if mode == "none" else mode),
    )
    train(cfg, cb)
    (ta, sa), (tb, sb) = stamps[0], stamps[-1]
    batch = cfg.task.batch
    cache_s = t_cache["done"] - t_cache["first"] if "first" in t_cache else 0.0
    return {"images_per_s": (sb - sa) * batch / (tb - ta), "cache_s": cache_s,
            "loader_per_s": loader(data, mode, images, batch)}  # fmt: skip


def loader(data: str, mode: str, images: int, batch: int) -> float:
    """Images/s of one epoch of the training DataLoader alone (2 workers, no model)."""
    from torch.utils.data import DataLoader

    from detect.data import load_dataset
    from detect.data.augment import AugmentedDataset, disk_cache_dir
    from detect.data.dataset import collate_fn

    recs = load_dataset(data, "train")
    recs.images = recs.images[:images]
    ds = AugmentedDataset(recs, 320, seed=0)
    if mode != "none":
        ds.cache_images(disk=disk_cache_dir() if mode == "disk" else None)
    dl = DataLoader(ds, batch_size=batch, num_workers=2, collate_fn=collate_fn, shuffle=True)
    t = time.perf_counter()
    n = sum(len(b[2]) for b in dl)
    return n / (time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True, help="training data (VOC folder, YAML, COCO JSON)")
    ap.add_argument("--images", type=int, default=800, help="first N training images")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--one", choices=MODES, help=argparse.SUPPRESS)
    ap.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.one:
        print(json.dumps(one(a.data, a.one, a.images, a.out)))
        return
    tmp = Path(tempfile.mkdtemp(prefix="bench-cache-"))
    env = {**os.environ, "DETECT_CACHE_DIR": str(tmp / "cache")}
    try:
        res: dict[str, list[dict]] = {m: [] for m in MODES}
        for r in range(a.rounds + 1):  # round 0 writes the disk cache: not counted
            for m in MODES:
                cmd = [sys.executable, __file__, "--data", a.data, "--images", str(a.images),
                       "--one", m, "--out", str(tmp / f"run-{m}-{r}")]  # fmt: skip
                p = subprocess.run(cmd, env=env, capture_output=True, text=True)
                if p.returncode:
                    sys.exit(p.stderr[-2000:])
                row = json.loads(p.stdout.strip().splitlines()[-1])
                if r:
                    res[m].append(row)
                print(f"round {r}{' (warm-up)' if not r else ''} {m}: train "
                      f"{row['images_per_s']:.1f} images/s, loader {row['loader_per_s']:.1f}, "
                      f"cache {row['cache_s']:.1f} s", flush=True)  # fmt: skip

        def med(m: str, k: str) -> float:
            return statistics.median(x[k] for x in res[m])

        print(f"\n{a.images} training images, 1 epoch each, median of {a.rounds} interleaved "
              "rounds:")  # fmt: skip
        print("| --cache | train images/s | vs none | loader images/s | vs none | cache build s |")
        print("|---|---:|---:|---:|---:|---:|")
        for m in MODES:
            t, ld = med(m, "images_per_s"), med(m, "loader_per_s")
            print(
                f"| {m} | {t:.1f} | {t / med('none', 'images_per_s'):.2f}x | {ld:.1f} | "
                f"{ld / med('none', 'loader_per_s'):.2f}x | {med(m, 'cache_s'):.1f} |"
            )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
