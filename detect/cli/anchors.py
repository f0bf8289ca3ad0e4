"""`detect anchors`: k-means (d = 1 - IoU) anchor boxes from a data set's boxes."""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING, Annotated

import typer

from detect.cli.common import (
    Images,
    Seed,
    Split,
    Strict,
    Verbose,
    console,
    err_console,
    print_report,
)
from detect.settings import DetectorConfig

if TYPE_CHECKING:
    import numpy as np
    from rich.console import Console

    from detect.anchor_boxes import AnchorResult


class AnchorFrame(StrEnum):
    letterbox = "letterbox"
    image = "image"


EXAMPLES = [
    "detect anchors data.yaml -k 5 --save anchors.json",
    "detect anchors VOC2007 --sweep 1-10 --plot anchors.png",
]  # the end of --help


def command(
    data: Annotated[str, typer.Argument(help="Data set: YAML, COCO instances JSON or VOC folder.")],
    k: Annotated[int, typer.Option("-k", help="Number of anchors.", min=1)] = 9,
    split: Split = "train",
    images: Images = None,
    imgsz: Annotated[
        int,
        typer.Option(
            "--imgsz", help="Input size for the pixel column and tiny-box warning (train's)."
        ),
    ] = DetectorConfig.imgsz,
    stride: Annotated[
        int,
        typer.Option("--stride", help="Output stride for grid units (darknet [region] line)."),
    ] = 32,
    thr: Annotated[
        float, typer.Option("--thr", help="Anchor ratio threshold for BPR (ultralytics: 4.0).")
    ] = 4.0,
    frame: Annotated[
        AnchorFrame,
        typer.Option(
            "--frame",
            help="letterbox: box sides over the image's long side, as the model sees them "
            "(what --anchors FILE in training wants); image: over each image side (YOLOv2 "
            "Table 1).",
        ),
    ] = AnchorFrame.letterbox,
    seed: Seed = 0,
    strict: Strict = False,
    verbose: Verbose = False,
    compare: Annotated[
        str | None,
        typer.Option(
            "--compare",
            help="Also score these anchors: a JSON file, a shipped set (yolov2-voc, yolov2-coco, "
            "...) or a darknet list 'w1,h1, w2,h2, ...' in grid units at --imgsz/--stride.",
        ),
    ] = None,
    anchors: Annotated[
        str | None,
        typer.Option(
            "--anchors",
            help="Score these anchors instead of clustering (same forms as --compare).",
        ),
    ] = None,
    save: Annotated[
        str | None, typer.Option("--save", help="Write the anchors JSON to FILE ('-': stdout).")
    ] = None,
    source: Annotated[
        str | None, typer.Option("--source", help="Text for the saved JSON's 'source' field.")
    ] = None,
    sweep: Annotated[
        str | None,
        typer.Option("--sweep", help="Also run every k of a range such as 1-10 (table, --plot)."),
    ] = None,
    plot: Annotated[
        str | None,
        typer.Option("--plot", help="PNG: avg IoU against k (with --sweep) and box shapes."),
    ] = None,
) -> None:
    """Anchor boxes by k-means on the boxes' (w, h) with d = 1 - IoU (YOLOv2), refined to
    maximise the average IoU. Prints them (fractions, pixels at --imgsz, grid units at --stride,
    a darknet anchors= line), the average IoU, the best possible recall and anchors per box."""
    from rich.progress import Progress

    from detect import anchor_boxes as A
    from detect.data import load_dataset
    from detect.errors import DetectError
    from detect.files import check_writable_file

    if thr <= 1 or imgsz < 1 or stride < 1:
        raise DetectError("--thr must be > 1, --imgsz and --stride >= 1")
    for path in (save, plot):  # a read-only or full destination: one error line now
        if path not in (None, "-"):
            check_writable_file(path)
    out = err_console if save == "-" else console  # keep stdout clean for the JSON
    ks = _parse_range(sweep) if sweep else []
    with out.status(f"reading {data} ..."):
        records = load_dataset(data, split=split, images=images)
        wh = A.boxes_wh(records, frame.value)
    print_report(records.report, strict, verbose)
    if len(wh) == 0:
        raise DetectError(f"{data}: no boxes in split '{split}'")
    tiny = int((((wh * imgsz) < 2).any(1) & (wh > 0).all(1)).sum())
    if tiny:
        err_console.print(f"warning: {tiny} boxes are under 2 px at --imgsz {imgsz}")

    if anchors is not None:
        result = A.score_anchors(wh, A.parse_anchors(anchors, imgsz, stride), thr)
        note = f"anchors {anchors} scored on {data} --split {split}"
    else:
        with out.status(f"clustering {len(wh)} boxes into k={k} anchors ..."):
            result = A.kmeans_anchors(wh, k, seed=seed, thr=thr)
        note = f"detect anchors {data} --split {split} -k {k} --seed {seed} --frame {frame.value}"
    for w in result.warnings:
        err_console.print(f"warning: {w}")
    _print_result(out, result, imgsz, stride, records.num_boxes(), data, split)

    if compare is not None:
        other = A.score_anchors(wh, A.parse_anchors(compare, imgsz, stride), thr)
        name = compare if len(compare) <= 32 else compare[:29] + "..."
        _print_compare(out, [("this run", result), (name, other)])

    sweep_rows = []
    if ks:
        with Progress(console=out, transient=True) as bar:
            task = bar.add_task("sweep", total=len(ks))
            for kk in ks:
                sweep_rows.append(A.kmeans_anchors(wh, kk, seed=seed, thr=thr))
                bar.advance(task)
        _print_compare(out, [(None, r) for r in sweep_rows], title="sweep over k")
    if plot is not None:
        _plot(plot, wh, result, sweep_rows)
        out.print(f"plot written to {plot}")
    if save is not None:
        if save == "-":
            print(A.anchors_json_text(result.to_json(source or note, frame.value)), end="")
        else:
            A.write_anchors(save, result, source or note, frame.value)
            out.print(f"anchors written to {save}")


def _parse_range(text: str) -> list[int]:
    """'1-10' or '3,5,9' (or a mix) -> sorted distinct ks."""
    from detect.errors import DetectError

    ks: set[int] = set()
    try:
        for part in text.split(","):
            lo, _, hi = part.strip().partition("-")
            ks.update(range(int(lo), int(hi or lo) + 1))
    except ValueError:
        raise DetectError(
            f"--sweep {text}: expected a range like 1-10 or a list like 3,5,9"
        ) from None
    if not ks or min(ks) < 1 or len(ks) > 50:
        raise DetectError(f"--sweep {text}: ks must be 1 or more, at most 50 of them")
    return sorted(ks)


LEVELS = (8, 16, 32)  # the strides of tiny's grids (and of YOLOv3's three [yolo] layers)


def darknet_lines(anchors, imgsz: int, stride: int) -> list[str]:
    """The anchors as darknet cfg lines, sorted by area as `anchors` is ([K, 2] fractions of
    the input): YOLOv3's [yolo] layers take pixels at the input size, one `mask` per level
    (the smallest third at stride 8, the next at 16, the largest at 32, as yolov3.cfg); YOLOv2's
    [region] takes grid units of one stride-`stride` grid."""
    px = ", ".join(f"{w * imgsz:.0f},{h * imgsz:.0f}" for w, h in anchors)
    k, n = len(anchors), len(LEVELS)
    cuts = [round(i * k / n) for i in range(n + 1)]  # (K = 9: 0-2, 3-5, 6-8)
    masks = []
    for s, a, b in zip(LEVELS, cuts[:-1], cuts[1:], strict=True):
        if b > a:
            masks.append(f"mask={','.join(str(i) for i in range(a, b))} (stride {s})")
    grid = ", ".join(f"{w * imgsz / stride:.4f},{h * imgsz / stride:.4f}" for w, h in anchors)
    return [
        f"darknet [yolo] (pixels at {imgsz}, every level): anchors={px}  " + "  ".join(masks),
        f"darknet [region] (grid units of stride {stride} at {imgsz}): anchors={grid}",
    ]


def _print_result(
    out: Console, r: AnchorResult, imgsz: int, stride: int, n_all: int, data: str, split: str
) -> None:
    from rich.table import Table

    grid = r.anchors * imgsz / stride
    t = Table(title=f"{r.k} anchors, sorted by area", title_justify="left")
    for col in ["#", "w", "h", f"w px @{imgsz}", f"h px @{imgsz}", "w grid", "h grid"]:
        t.add_column(col, justify="right")
    for i, ((w, h), (gw, gh)) in enumerate(zip(r.anchors, grid, strict=True)):
        t.add_row(
            str(i), f"{w:.4f}", f"{h:.4f}", f"{w * imgsz:.1f}", f"{h * imgsz:.1f}",
            f"{gw:.3f}", f"{gh:.3f}",
        )  # fmt: skip
    out.print(t)
    for text in darknet_lines(r.anchors, imgsz, stride):
        out.print(text, soft_wrap=True, highlight=False, markup=False)
    from rich.markup import escape

    out.print(
        escape(f"{data} [{split}]")
        + f": {r.boxes} boxes ({r.distinct} distinct shapes"
        + (f", {n_all - r.boxes} zero-size ignored" if n_all != r.boxes else "")
        + f"); avg IoU [bold]{100 * r.avg_iou:.2f}%[/], BPR {100 * r.bpr:.2f}% (thr {r.thr:g}), "
        f"anchors/box above thr {r.aat:.2f}"
    )


def _print_compare(out: Console, rows: list, title: str = "comparison") -> None:
    from rich.markup import escape
    from rich.table import Table

    t = Table(title=title, title_justify="left")
    named = rows[0][0] is not None  # a sweep's rows are told apart by k alone
    for col in (["anchors"] if named else []) + ["k", "avg IoU %", "BPR %", "anchors/box"]:
        t.add_column(col, justify="left" if col == "anchors" else "right")
    for name, r in rows:
        cells = [f"{100 * r.avg_iou:.2f}", f"{100 * r.bpr:.2f}", f"{r.aat:.2f}"]
        t.add_row(*([escape(name)] if named else []), str(r.k), *cells)
    out.print(t)


def _plot(path: str, wh: np.ndarray, result: AnchorResult, sweep: list[AnchorResult]) -> None:
    """PNG: the avg IoU elbow over k (if swept) and the box shapes with the anchors on them."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from detect.files import atomic_write_bytes

    fig, axes = plt.subplots(1, 2 if sweep else 1, figsize=(11 if sweep else 5.5, 4.5))
    axes = np.atleast_1d(axes)
    if sweep:
        ax = axes[0]
        ax.plot([r.k for r in sweep], [100 * r.avg_iou for r in sweep], "o-")
        ax.plot([result.k], [100 * result.avg_iou], "o", color="tab:red", label=f"k={result.k}")
        ax.legend(loc="lower right")
        ax.set(xlabel="k (anchors)", ylabel="avg IoU (%)", title="avg IoU against k")
        ax.grid(alpha=0.3)
    ax = axes[-1]
    pts = wh
    if len(pts) > 20_000:  # a readable scatter; order-free subsample
        pts = pts[np.random.default_rng(0).choice(len(pts), 20_000, replace=False)]
    ax.scatter(pts[:, 0], pts[:, 1], s=2, alpha=0.15, color="tab:blue", label="boxes")
    ax.scatter(*result.anchors.T, s=60, color="tab:red", marker="x", label=f"{result.k} anchors")
    ax.set(xlabel="w (fraction of image)", ylabel="h (fraction of image)", title="box shapes")
    ax.set_xlim(0, 1.02)
    ax.set_ylim(0, 1.02)
    ax.set_aspect("equal")
    ax.legend(loc="upper left")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())
