"""Results files of a run: `results.csv` (one row per epoch) and `results.png` (the curves)."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display here; set before pyplot is imported
import matplotlib.pyplot as plt  # noqa: E402

from detect.files import atomic_write_bytes, atomic_write_text  # noqa: E402

CSV_FIELDS = [
    "epoch", "box_loss", "obj_loss", "cls_loss", "val_map50", "val_map", "lr", "images",
    "seconds", "elapsed",
]  # fmt: skip


def write_results(run_dir: Path, rows: list[dict]) -> None:
    """results.csv (one row per epoch) and results.png (training curves)."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=CSV_FIELDS, lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: r.get(k, "") for k in CSV_FIELDS})
    atomic_write_text(run_dir / "results.csv", buf.getvalue())
    plot_results(run_dir / "results.png", rows)


def read_results(path: Path) -> list[dict]:
    """The rows of a results.csv (numbers as floats, `epoch` an int; [] without the file)."""
    if not path.is_file():
        return []
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    out = []
    for r in rows:
        out.append({k: (float(v) if v not in ("", None) else "") for k, v in r.items()})
        out[-1]["epoch"] = int(out[-1]["epoch"])
    return out


def plot_results(path: Path, rows: list[dict]) -> None:
    """Loss terms and val mAP per epoch, as a PNG (matplotlib Agg: no display needed)."""
    fig, axes = plt.subplots(1, 4, figsize=(16, 3.6))
    ep = [r["epoch"] for r in rows]
    for ax, key in zip(axes[:3], ("box_loss", "obj_loss", "cls_loss"), strict=True):
        ax.plot(ep, [r[key] for r in rows], marker=".")
        ax.set_title(key)
        ax.set_xlabel("epoch")
    val = [(r["epoch"], r["val_map50"], r["val_map"]) for r in rows if r.get("val_map") != ""]
    if val:
        e, m50, m = zip(*val, strict=True)
        axes[3].plot(e, m50, marker=".", label="mAP50")
        axes[3].plot(e, m, marker=".", label="mAP50-95")
        axes[3].legend()
    axes[3].set_title("val mAP")
    axes[3].set_xlabel("epoch")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())
