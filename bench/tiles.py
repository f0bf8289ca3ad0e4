"""Tiled inference on large images with small objects: mAP with tiling vs without.

1. A data set of large images (YAML layout): each image (1280-2560 px a side, in steps of 256)
   is a mosaic of `detect synth` images rendered at 640 px with objects of 30-100 px and shrunk
   2.5x (INTER_AREA) into 256 px cells, so objects are 12-40 px (a few boxes of rotated shapes
   reach 43): aerial / drone scale.
2. The shipped shapes model (trained at 320 on objects of 13-160 px), exported to OpenVINO and
   run through `detect.runtime` (no torch), on each image:
   - whole image letterboxed to 320 (what `detect predict` does today): objects become 2-8 px;
   - whole image letterboxed to a larger --imgsz (the other remedy: a bigger input);
   - tiles (`detect.tiling.tile_windows`, SAHI's slicing) at the model's size plus the whole
     image, boxes mapped back and merged: NMS or greedy NMM, matching by IoU or IOS.
3. COCO mAP50 / mAP50-95 (detect.metrics.evaluate, = pycocotools) for each, and seconds per image.
   On a few images, the NMM merge is also run through `sahi` (the package) and compared.

    .venv/bin/python bench/tiles.py [--images 30] [--data /tmp/detect-tiles] [--conf 0.01]

The library pieces are used directly: `detect predict --tile` is wired on top of them.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

CELL = 256  # mosaic cell in the large image
RENDER = 640  # each cell is a synth image rendered at this size, then shrunk to CELL
SIZES = list(range(1280, 2561, 256))


def make_dataset(out: Path, images: int, seed: int) -> Path:
    """Write the large-image data set (val split; train names the same images) to `out`."""
    from detect.synth import CLASS_NAMES, SynthConfig, render_image

    done = out / "data.yaml"
    stamp = f"# bench/tiles.py: cell {CELL}, render {RENDER}, scale 12-37 px, seed {seed}, {images}"
    if done.is_file() and done.read_text().startswith(stamp + "\n"):
        return done
    shutil.rmtree(out, ignore_errors=True)
    (out / "images" / "val").mkdir(parents=True)
    (out / "labels" / "val").mkdir(parents=True)
    shrink = CELL / RENDER
    # shape scale 12..37 px after shrinking (30..92 px in the 640 px render): box sides of
    # 12..40 px (the box of a rotated shape is up to ~1.1x its scale)
    cfg = SynthConfig(
        size=RENDER,
        min_scale=12 / shrink / RENDER,
        max_scale=37 / shrink / RENDER,
        min_objects=1,
        max_objects=4,
        seed=seed,
    )
    rng = np.random.default_rng(seed)
    for i in range(images):
        w, h = int(rng.choice(SIZES)), int(rng.choice(SIZES))
        img = np.empty((h, w, 3), np.uint8)
        lines = []
        for cy in range(0, h, CELL):
            for cx in range(0, w, CELL):
                cell_rng = np.random.default_rng([seed, i, cy, cx])
                tile, boxes, classes = render_image(cell_rng, cfg)
                img[cy : cy + CELL, cx : cx + CELL] = cv2.resize(
                    tile, (CELL, CELL), interpolation=cv2.INTER_AREA
                )
                for (x1, y1, x2, y2), c in zip(boxes * shrink, classes, strict=True):
                    x1, x2, y1, y2 = x1 + cx, x2 + cx, y1 + cy, y2 + cy
                    lines.append(
                        f"{c} {(x1 + x2) / 2 / w:.6f} {(y1 + y2) / 2 / h:.6f} "
                        f"{(x2 - x1) / w:.6f} {(y2 - y1) / h:.6f}"
                    )
        cv2.imwrite(
            str(out / "images" / "val" / f"{i:04d}.jpg"), img, [cv2.IMWRITE_JPEG_QUALITY, 92]
        )
        (out / "labels" / "val" / f"{i:04d}.txt").write_text("\n".join(lines) + "\n")
    names = "\n".join(f"  - {n}" for n in CLASS_NAMES)
    done.write_text(f"{stamp}\npath: {out}\ntrain: images/val\nval: images/val\nnames:\n{names}\n")
    return done


def export_default(tmp: Path, weights: Path) -> Path:
    from detect.models import load_weights
    from detect.models.export import export_model

    model, meta = load_weights(weights)
    return export_model(
        model, "openvino", tmp / "tiny_openvino", int(meta.get("imgsz") or 320), meta
    )


def run_model(model, images: list[np.ndarray], size: int, conf: float, batch: int = 8):
    """Letterbox (rectangular) each image to `size`, run in batches of one shape; detections in
    each image's pixels."""
    from detect.runtime import letterbox_batch, postprocess, unletterbox_boxes

    out = []
    for i in range(0, len(images), batch):
        chunk = images[i : i + batch]
        x, metas = letterbox_batch(chunk, size, auto=True, stride=model.stride)
        dets = postprocess(model(x), conf=conf, iou=0.45, max_det=300)
        for d, m in zip(dets, metas, strict=True):
            d[:, :4] = unletterbox_boxes(d[:, :4], m.scale, m.pad, m.orig_hw)
            out.append(d)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=30)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data", default=str(Path(tempfile.gettempdir()) / "detect-tiles"))
    ap.add_argument("--weights", help="default: the shipped shapes model")
    ap.add_argument(
        "--conf", type=float, nargs="+", default=[0.01, 0.25], help="score thresholds (tables)"
    )
    ap.add_argument("--tiles", type=int, nargs="+", default=[320, 640])
    ap.add_argument("--overlap", type=float, default=0.2)
    ap.add_argument("--big-imgsz", type=int, default=1280, help="the no-tiling large input")
    ap.add_argument("--max-det", type=int, default=3000, help="per large image, after merging")
    ap.add_argument("--sahi-images", type=int, default=3, help="images whose merge sahi redoes")
    args = ap.parse_args()

    from detect.data import load_dataset
    from detect.resources import shapes_weights
    from detect.runtime import load_exported
    from detect.tiling import crop, tile_windows

    t0 = time.perf_counter()
    data = make_dataset(Path(args.data), args.images, args.seed)
    records = load_dataset(data, split="val")
    nobj = sum(len(r.boxes) for r in records.images)
    sides = [b[2:] - b[:2] for r in records.images for b in r.boxes]
    longest = np.max(sides, 1) if sides else np.zeros(1)
    print(f"data: {data} ({len(records.images)} images, {nobj} objects, longest side "
          f"{longest.min():.1f}-{longest.max():.1f} px, median {np.median(longest):.1f}; "
          f"made/read in {time.perf_counter() - t0:.0f} s)")  # fmt: skip

    tmp = Path(tempfile.mkdtemp(prefix="bench-tiles-"))
    try:
        model = load_exported(export_default(tmp, Path(args.weights or shapes_weights())))
        size = model.imgsz
        print(f"model: {model.path.name} ({model.backend} {model.precision}), input {size}")
        results: dict[str, list[np.ndarray]] = {}
        seconds: dict[str, float] = {}
        tile_dets: dict[int, list] = {t: [] for t in args.tiles}
        tile_secs = dict.fromkeys(args.tiles, 0.0)
        full_secs = 0.0
        results[f"whole image, letterbox {size}"] = []
        results[f"whole image, letterbox {args.big_imgsz}"] = []
        seconds[f"whole image, letterbox {args.big_imgsz}"] = 0.0
        for rec in records.images:
            img = cv2.imread(str(rec.path))
            h, w = img.shape[:2]
            t = time.perf_counter()
            full = run_model(model, [img], size, min(args.conf))[0]
            full_secs += time.perf_counter() - t
            results[f"whole image, letterbox {size}"].append(full)
            t = time.perf_counter()
            big = run_model(model, [img], args.big_imgsz, min(args.conf))[0]
            seconds[f"whole image, letterbox {args.big_imgsz}"] += time.perf_counter() - t
            results[f"whole image, letterbox {args.big_imgsz}"].append(big)
            for tile in args.tiles:
                t = time.perf_counter()
                windows = tile_windows(w, h, tile, args.overlap)
                dets = run_model(model, [crop(img, win) for win in windows], size, min(args.conf))
                tile_secs[tile] += time.perf_counter() - t
                tile_dets[tile].append((windows, dets, full))
        seconds[f"whole image, letterbox {size}"] = full_secs

        for conf in sorted(args.conf):
            table(records, nobj, conf, args, results, seconds, tile_dets, tile_secs, full_secs)

        sahi_parity(tile_dets[args.tiles[0]][: args.sahi_images])
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def table(records, nobj, conf, args, results, seconds, tile_dets, tile_secs, full_secs) -> None:
    """Merge the tile detections scoring >= conf every way, score each, print a table.

    Filtering detections made at a lower threshold is exact: NMS keeps a box only if no
    higher-scored box (which passes any threshold it passes) suppressed it."""
    from detect.data.types import Detections
    from detect.metrics import evaluate
    from detect.tiling import merge_detections

    def keep(d: np.ndarray) -> np.ndarray:
        return d[d[:, 4] >= conf]

    rows = {k: [keep(d) for d in v] for k, v in results.items()}
    secs = dict(seconds)
    for tile in args.tiles:
        cases = [(w, [keep(d) for d in dets], keep(full)) for w, dets, full in tile_dets[tile]]
        for method, metric in [("nms", "iou"), ("nms", "ios"), ("nmm", "ios"), ("nmm", "iou")]:
            key = f"tiles {tile} + whole, {method.upper()} {metric.upper()} 0.5"
            t = time.perf_counter()
            rows[key] = [
                merge_detections(dets, w, full, method, 0.5, metric, max_det=args.max_det)
                for w, dets, full in cases
            ]
            secs[key] = tile_secs[tile] + full_secs + time.perf_counter() - t
        key = f"tiles {tile} only, NMM IOS 0.5"
        t = time.perf_counter()
        rows[key] = [
            merge_detections(dets, w, None, "nmm", 0.5, "ios", max_det=args.max_det)
            for w, dets, _ in cases
        ]
        secs[key] = tile_secs[tile] + time.perf_counter() - t
    n = len(records.images)
    print(f"\nmAP on {n} images ({nobj} objects of 12-40 px), conf {conf}, "
          f"overlap {args.overlap}:")  # fmt: skip
    print("| method | mAP50 | mAP50-95 | detections | s/image |\n|---|---:|---:|---:|---:|")
    for key, per_image in rows.items():
        dets = Detections(
            np.concatenate([np.full(len(d), i, np.int64) for i, d in enumerate(per_image)]),
            np.concatenate([d[:, :4] for d in per_image]).astype(np.float32),
            np.concatenate([d[:, 4] for d in per_image]).astype(np.float32),
            np.concatenate([d[:, 5] for d in per_image]).astype(np.int64),
        )
        r = evaluate(records, dets)
        print(f"| {key} | {r.map50:.3f} | {r.map:.3f} | {len(dets)} | {secs[key] / n:.2f} |")


def sahi_parity(cases) -> None:
    """Redo the NMM (IOS 0.5) and NMS (IOS 0.5) merges of real tile detections with sahi."""
    try:
        from sahi.postprocess.backends import set_postprocess_backend
        from sahi.postprocess.combine import GreedyNMMPostprocess, NMSPostprocess
        from sahi.prediction import ObjectPrediction
    except ImportError:
        print("\nsahi parity: sahi not installed (make install adds it)")
        return
    from detect.tiling import merge_detections, shift_boxes

    set_postprocess_backend("numpy")
    same, total, boxes = 0, 0, 0
    for windows, dets, full in cases:
        rows = [np.concatenate((shift_boxes(d[:, :4], w), d[:, 4:6]), 1) for d, w in
                zip(dets, windows, strict=True)] + [full]  # fmt: skip
        rows = np.concatenate(rows)
        rows[:, :4] = np.maximum(rows[:, :4], 0)  # sahi refuses negative corners
        for method, cls in (("nmm", GreedyNMMPostprocess), ("nms", NMSPostprocess)):
            ours = merge_detections(
                [rows], np.zeros((1, 4), np.int64), None, method, 0.5, "ios", max_det=10**9
            )
            preds = [ObjectPrediction(bbox=r[:4].tolist(), category_id=int(r[5]), score=float(r[4]))
                     for r in rows]  # fmt: skip
            ref = cls(match_threshold=0.5, match_metric="IOS", class_agnostic=False)(preds)
            a = sorted(map(tuple, ours.tolist()))
            b = sorted(
                tuple(np.float32([*o.bbox.to_xyxy(), o.score.value, o.category.id]).tolist())
                for o in ref
            )
            same += a == b
            total += 1
            boxes += len(rows)
    print(f"\nsahi parity (its GreedyNMMPostprocess / NMSPostprocess, IOS 0.5, on the real tile "
          f"detections of {len(cases)} images, {boxes // 2} boxes each pass): "
          f"{same}/{total} merges identical")  # fmt: skip


if __name__ == "__main__":
    main()
