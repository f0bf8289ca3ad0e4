"""`detect bench`: YOLO vs sliding window vs convolutional sliding window, measured side by side."""

from __future__ import annotations

from typing import Annotated

import typer

from detect.cli.common import (
    Device,
    Images,
    Iou,
    MaxDet,
    Split,
    Strict,
    Verbose,
    console,
    print_report,
)

EXAMPLES = [
    "detect bench data.yaml --window-weights window.safetensors",
    "detect bench data.yaml --max-images 20 --plot bench.png",
]  # the end of --help


def command(
    data: Annotated[str, typer.Argument(help="Data set: YAML, COCO instances JSON or VOC folder.")],
    weights: Annotated[
        str | None,
        typer.Option(
            "--weights", help="YOLO detector weights (default: weights/shapes-tiny.safetensors)."
        ),
    ] = None,
    window_weights: Annotated[
        str | None,
        typer.Option(
            "--window-weights",
            help="Window classifier weights (default: weights/shapes-window.safetensors).",
        ),
    ] = None,
    split: Split = "val",
    images: Images = None,
    imgsz: Annotated[
        int | None, typer.Option("--imgsz", help="YOLO input size (default: the weights').")
    ] = None,
    scales: Annotated[
        str | None,
        typer.Option(
            "--scales",
            help="Window sides in pixels of the original image, e.g. 32,48,64,96,128,160.",
        ),
    ] = None,
    stride: Annotated[
        int | None,
        typer.Option(
            "--stride",
            help="Window step in the resized image (default: the classifier's total stride).",
            min=1,
        ),
    ] = None,  # fmt: skip
    conf: Annotated[
        float, typer.Option("--conf", help="Score threshold (mAP wants it low).")
    ] = 0.001,
    iou: Iou = 0.45,
    max_det: MaxDet = 300,
    device: Device = "auto",
    max_images: Annotated[
        int,
        typer.Option(
            "--max-images",
            help="Use the first N images of the split (0: all). Sliding costs seconds per image.",
            min=0,
        ),
    ] = 50,
    plot: Annotated[
        str | None, typer.Option("--plot", help="Write a PNG bar chart of mAP and ms/image.")
    ] = None,
    strict: Strict = False,
    verbose: Verbose = False,
) -> None:
    """Compare YOLO, the sliding window and the convolutional sliding window on DATA's val split:
    mAP50, mAP50-95 and ms/image (batch of 1, images decoded beforehand), and the number of
    windows the classifier evaluated."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn
    from rich.table import Table

    from detect.data import load_dataset
    from detect.files import check_writable_file
    from detect.inference.dataset import bench_methods
    from detect.inference.sliding import DEFAULT_SCALES, parse_scales
    from detect.resources import data_dir, shapes_weights

    weights = weights or str(shapes_weights())
    window_weights = window_weights or str(data_dir("weights") / "shapes-window.safetensors")
    scale_list = parse_scales(scales)
    if plot:  # a read-only or full destination: one error line before the benchmark
        check_writable_file(plot)
    records = load_dataset(data, split=split, images=images)
    print_report(records.report, strict, verbose)
    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=True,
    ) as progress:
        tasks: dict[str, int] = {}

        def callback(method: str, done: int, total: int) -> None:
            if method not in tasks:
                tasks[method] = progress.add_task(method, total=total)
            progress.update(tasks[method], completed=done)

        rows = bench_methods(
            records, weights, window_weights, imgsz=imgsz, scales=scale_list, stride=stride,
            conf=conf, iou=iou, max_det=max_det, device=device, max_images=max_images or None,
            callback=callback,
        )  # fmt: skip

    n = rows[0].images if rows else 0
    scale_text = ",".join(map(str, scale_list))
    default = " (default)" if scale_list == DEFAULT_SCALES else ""
    table = Table(
        title=f"{data}, split {split}: {n} images; window scales {scale_text} px{default}"
    )
    for col in ("method", "mAP50", "mAP50-95", "ms/image", "windows evaluated", "time vs yolo"):
        table.add_column(col, justify="left" if col == "method" else "right")
    base = next((r.ms_per_image for r in rows if r.method == "yolo"), None)
    for r in rows:
        table.add_row(
            r.method,
            f"{r.map50:.3f}",
            f"{r.map:.3f}",
            f"{r.ms_per_image:.1f}",
            f"{r.windows:,} ({r.windows / max(r.images, 1):,.0f}/image)" if r.windows else "-",
            f"{r.ms_per_image / base:.1f}x" if base else "-",
        )
    console.print(table)
    if plot:
        from detect.files import atomic_write_bytes

        atomic_write_bytes(plot, _bar_chart(rows, f"{data}, split {split}: {n} images"))
        console.print(f"plot: {plot}")


def _bar_chart(rows, title: str) -> bytes:
    """PNG: mAP50 / mAP50-95 bars and ms/image bars (log scale) per method."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [r.method for r in rows]
    x = range(len(rows))
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    a.bar([i - 0.2 for i in x], [r.map50 for r in rows], 0.4, label="mAP50")
    a.bar([i + 0.2 for i in x], [r.map for r in rows], 0.4, label="mAP50-95")
    a.set_xticks(list(x), names)
    a.set_ylim(0, 1)
    a.set_title("accuracy")
    a.legend()
    b.bar(list(x), [r.ms_per_image for r in rows], 0.5, color="tab:red")
    b.set_xticks(list(x), names)
    b.set_yscale("log")
    b.set_title("ms / image (log)")
    for i, r in enumerate(rows):
        b.text(i, r.ms_per_image, f"{r.ms_per_image:.0f}", ha="center", va="bottom")
    fig.suptitle(title)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    return buf.getvalue()
