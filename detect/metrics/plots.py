"""PR curves (per class and all classes) and a confusion matrix, as PNGs (matplotlib, Agg,
imported only when plotting)."""

from __future__ import annotations

import io
import re
from pathlib import Path

import matplotlib
import numpy as np

matplotlib.use("Agg")  # no display here; before pyplot is imported
import matplotlib.pyplot as plt  # noqa: E402

from detect.files import all_or_nothing, atomic_write_bytes
from detect.metrics.arrays import GroundTruth, Predictions, ground_truth, predictions
from detect.metrics.coco import box_iou_xywh
from detect.metrics.tide import ERROR_NAMES, MAIN_ERRORS, SPECIAL_ERRORS


def confusion_matrix(
    gt: GroundTruth, pr: Predictions, conf: float = 0.25, iou_thr: float = 0.45
) -> np.ndarray:
    """int64 [K+1, K+1] counts, rows = predicted class, columns = true class, last = background.

    Per image, detections with score >= conf and GT of any class are paired one to one by
    decreasing IoU above iou_thr; unpaired detections count as background GT, unpaired GT as
    missed (background prediction). Crowd and difficult GT are left out.
    """
    K = gt.num_classes
    cm = np.zeros((K + 1, K + 1), np.int64)
    keep_g = ~(gt.iscrowd | gt.difficult)
    gi, gc, gb = gt.image[keep_g], gt.classes[keep_g], gt.xywh[keep_g]
    keep_d = pr.scores >= conf
    di, dc, db = pr.image[keep_d], pr.classes[keep_d], pr.xywh[keep_d]
    g_order, d_order = np.argsort(gi, kind="stable"), np.argsort(di, kind="stable")
    g_b = np.searchsorted(gi[g_order], np.arange(gt.num_images + 1))
    d_b = np.searchsorted(di[d_order], np.arange(gt.num_images + 1))
    for i in range(gt.num_images):
        g = g_order[g_b[i] : g_b[i + 1]]
        d = d_order[d_b[i] : d_b[i + 1]]
        if len(g) == 0 and len(d) == 0:
            continue
        iou = box_iou_xywh(  # [nd*ng]
            np.repeat(db[d], len(g), 0),
            np.tile(gb[g], (len(d), 1)),
            np.zeros(len(d) * len(g), bool),
        ).reshape(len(d), len(g))
        dd, gg = np.nonzero(iou > iou_thr)
        o = np.argsort(-iou[dd, gg], kind="stable")
        used_d, used_g = set(), set()
        for a, b in zip(dd[o].tolist(), gg[o].tolist(), strict=True):
            if a not in used_d and b not in used_g:
                used_d.add(a)
                used_g.add(b)
                cm[dc[d[a]], gc[g[b]]] += 1
        for a in set(range(len(d))) - used_d:
            cm[dc[d[a]], K] += 1
        for b in set(range(len(g))) - used_g:
            cm[K, gc[g[b]]] += 1
    return cm


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name) or "class"


def save_plots(result, folder: str | Path, gt, dets, per_class: bool = True) -> list[Path]:
    """PR curve PNG per class (`pr_<name>.png`; not with `per_class` False), one for all
    classes (`pr_all.png`) and `confusion_matrix.png` into `folder`; returns the paths
    written."""
    folder = Path(folder)
    g = ground_truth(gt)
    p = predictions(dets, g)
    rec = result.coco.params.rec_thrs
    iou = result.coco.params.iou_thrs
    prec50 = result.coco.precision[np.where(iou == 0.5)[0][0], :, :, 0, -1]  # [R,K]
    ap50 = result.coco.per_class_ap()[1]
    written = []

    def save(fig, name):
        written.append(_save_png(fig, folder / name))

    for k, name in enumerate(result.names if per_class else []):
        fig, ax = plt.subplots(figsize=(5, 4), tight_layout=True)
        if ap50[k] >= 0:
            ax.plot(rec, prec50[:, k], label=f"{name} AP50 {ap50[k]:.3f}")
            ax.legend(loc="lower left")
        else:
            ax.set_title(f"{name}: no ground truth")
        ax.set(xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.02))
        save(fig, f"pr_{_safe(name)}.png")

    fig, ax = plt.subplots(figsize=(7, 5), tight_layout=True)
    valid = ap50 >= 0
    for k in np.flatnonzero(valid):
        ax.plot(rec, prec50[:, k], lw=0.8, alpha=0.5)
    if valid.any():
        ax.plot(rec, prec50[:, valid].mean(1), "k", lw=2.5,
                label=f"all classes mAP50 {result.map50:.3f}")  # fmt: skip
        ax.legend(loc="lower left")
    ax.set(xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.02))
    save(fig, "pr_all.png")

    cm = confusion_matrix(g, p)
    labels = [*result.names, "background"]
    n = len(labels)
    fig, ax = plt.subplots(figsize=(min(4 + 0.35 * n, 30), min(3.5 + 0.35 * n, 30)),
                           tight_layout=True)  # fmt: skip
    col = cm / np.maximum(cm.sum(0, keepdims=True), 1)  # fraction of each true class
    im = ax.imshow(col, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(im, ax=ax)
    if n <= 30:
        ax.set_xticks(range(n), labels, rotation=90)
        ax.set_yticks(range(n), labels)
        for (r, c), v in np.ndenumerate(cm):
            if v:
                ax.text(c, r, str(v), ha="center", va="center", fontsize=7,
                        color="white" if col[r, c] > 0.5 else "black")  # fmt: skip
    ax.set(xlabel="true", ylabel="predicted", title="confusion matrix (conf 0.25, IoU 0.45)")
    save(fig, "confusion_matrix.png")
    return written


def save_tide_plot(tides: list, names: list[str], path: str | Path) -> Path:
    """Bar chart of TIDE's dAP50 per error (main errors, then the special ones), one bar per
    prediction set in each group; the counts of the first set above its bars."""
    errors = [*MAIN_ERRORS, *SPECIAL_ERRORS]
    x = np.arange(len(errors))
    w = 0.8 / len(tides)
    fig, ax = plt.subplots(figsize=(8, 4), tight_layout=True)
    for i, (t, name) in enumerate(zip(tides, names, strict=True)):
        vals = [100 * t.dap[e] for e in errors]
        bars = ax.bar(x + (i - (len(tides) - 1) / 2) * w, vals, w,
                      label=f"{name} (AP50 {100 * t.ap:.1f})")  # fmt: skip
        if i == 0:
            for b, e in zip(bars, errors, strict=True):
                ax.annotate(str(t.counts[e]), (b.get_x() + b.get_width() / 2, b.get_height()),
                            ha="center", va="bottom", fontsize=7)  # fmt: skip
    ax.axvline(len(MAIN_ERRORS) - 0.5, color="grey", lw=0.8, ls="--")
    ax.set_xticks(x, [ERROR_NAMES[e] for e in errors])
    ax.set(ylabel="dAP50 (points)", title="TIDE: AP50 gained by fixing each error type")
    ax.legend(fontsize=8)
    return _save_png(fig, Path(path))


def _save_png(fig, path: Path) -> Path:
    """The figure as a PNG at `path`, written atomically (WriteError when it cannot be)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return atomic_write_bytes(path, buf.getvalue(), fsync=False)


def save_comparison_plots(cmp, folder: str | Path) -> list[Path]:
    """One prediction set: its PR curves and confusion matrix in `folder` (save_plots); several:
    each in `folder/<name>/`. With TIDE computed, `folder/tide.png` (all sets side by side).
    All the plots appear or none: WriteError (`cannot write PATH: reason`) when one cannot be
    written, and no file is left."""
    folder = Path(folder)
    written = []
    with all_or_nothing(None if folder.exists() else folder):  # (a folder made here goes too)
        for name, r in zip(cmp.names, cmp.results, strict=True):
            sub = folder if len(cmp.results) == 1 else folder / _safe(name)
            written += save_plots(r, sub, r.gt, r.pred)
        if all(r.tide is not None for r in cmp.results):
            written.append(save_tide_plot([r.tide for r in cmp.results], cmp.names,
                                          folder / "tide.png"))  # fmt: skip
    return written
