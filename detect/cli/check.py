"""`detect check DATA`: a data set's health report before training."""

from __future__ import annotations

from typing import Annotated

import typer

from detect.cli.common import Images, console, err_console
from detect.settings import DetectorConfig

EXAMPLES = [
    "detect check data.yaml",
    "detect check instances_val.json --fast --json report.json",
]  # the end of --help


def command(
    data: Annotated[str, typer.Argument(help="Data set: YAML, COCO instances JSON or VOC folder.")],
    split: Annotated[
        list[str] | None,
        typer.Option(
            "--split",
            help="Split to check (repeatable; default: train, val and test where they exist).",
        ),
    ] = None,
    imgsz: Annotated[
        int,
        typer.Option(
            "--imgsz", help="Model input side for the box sizes in pixels (train's default)."
        ),
    ] = DetectorConfig.imgsz,
    fast: Annotated[
        bool, typer.Option("--fast", help="Read image headers only (no full decode).")
    ] = False,
    images: Images = None,
    json_out: Annotated[
        str | None, typer.Option("--json", help="Write the report as JSON to FILE ('-': stdout).")
    ] = None,
    out: Annotated[
        str, typer.Option("--out", help="Run folder for the plots and the full problem list.")
    ] = "runs/check",
    verbose: Annotated[
        bool, typer.Option("--verbose", help="List every problem, not the first few.")
    ] = False,
) -> None:
    """Check a data set before training: images and boxes per split and class, background
    images, box sizes in pixels at --imgsz (and how many are under 8 px), and every problem:
    unreadable or missing images, class ids outside the names, malformed label lines, label files
    without images, duplicate, clipped and zero-size boxes. Exit code 1 when anything loses data
    (an image or a label); plots and the full list go to the run folder."""
    import json

    from rich.progress import Progress

    from detect.check import ERROR_KINDS, check_dataset
    from detect.cli.common import print_report
    from detect.files import (
        all_or_nothing,
        atomic_write_json,
        atomic_write_text,
        check_writable,
        check_writable_file,
        new_run_dir,
    )

    check_writable(out)  # a read-only or full destination: one error line before the reading
    if json_out not in (None, "-"):
        check_writable_file(json_out)
    out_console = err_console if json_out == "-" else console
    with Progress(console=err_console, transient=True) as bar:
        tasks: dict[str, int] = {}

        def progress(name: str, done: int, total: int) -> None:
            if name not in tasks:
                tasks[name] = bar.add_task(f"opening {name} images", total=total)
            bar.update(tasks[name], completed=done)

        result = check_dataset(data, split, imgsz, decode=not fast, images=images,
                               callback=progress)  # fmt: skip
    run_dir = new_run_dir(out)
    _print(out_console, result)
    lines = []
    for s in result.splits:
        print_report(s.report, verbose=verbose, split=s.split, saved=run_dir / "problems.txt",
                     errors=ERROR_KINDS)  # fmt: skip
        for kind, entries in s.report.entries.items():
            lines += [f"[{s.split}] {kind}: {m}" for m in entries]
    with all_or_nothing(run_dir):  # the run folder's files all appear, or none and no folder
        atomic_write_text(run_dir / "problems.txt", "\n".join(lines) + ("\n" if lines else ""))
        atomic_write_json(run_dir / "check.json", result.to_json())
        _plots(run_dir, result)
    out_console.print(f"plots, check.json and problems.txt in {run_dir}")
    if json_out == "-":
        print(json.dumps(result.to_json()))
    elif json_out is not None:
        atomic_write_json(json_out, result.to_json())
    if result.errors:
        err_console.print(f"{result.errors} problem{'s' if result.errors != 1 else ''} lose data")
        raise typer.Exit(1)


def _print(out, result) -> None:
    from rich.table import Table

    from detect.check import SIZE_EDGES

    t = Table(title=f"{result.data}: boxes (images) per class", title_justify="left")
    t.add_column("class")
    for s in result.splits:
        t.add_column(s.split, justify="right")
    for k, name in enumerate(result.names):
        t.add_row(name, *(f"{s.class_boxes[k]} ({s.class_images[k]})" for s in result.splits))
    t.add_row("all", *(f"{s.boxes} ({s.images})" for s in result.splits), style="bold")
    out.print(t)
    edges = [f"<{SIZE_EDGES[1]}"] + [
        f"{a}-{b}" for a, b in zip(SIZE_EDGES[1:], SIZE_EDGES[2:], strict=False)
    ]
    edges.append(f">={SIZE_EDGES[-1]}")
    t = Table(title=f"box size, sqrt(w x h) in px at --imgsz {result.imgsz}", title_justify="left")
    t.add_column("split")
    for e in edges:
        t.add_column(e, justify="right")
    t.add_column("background images", justify="right")
    for s in result.splits:
        t.add_row(s.split, *map(str, s.size_counts), str(s.background))
    out.print(t)


def _plots(run_dir, result) -> None:
    """classes.png (boxes per class and split) and box_sizes.png (size histogram per split)."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from detect.files import atomic_write_bytes

    def save(fig, name: str) -> None:
        buf = io.BytesIO()
        fig.tight_layout()
        fig.savefig(buf, format="png", dpi=90)
        plt.close(fig)
        atomic_write_bytes(run_dir / name, buf.getvalue())

    n = len(result.names)
    fig, ax = plt.subplots(figsize=(max(6, 0.45 * n + 2), 4))
    width = 0.8 / max(1, len(result.splits))
    for j, s in enumerate(result.splits):
        ax.bar(np.arange(n) + j * width, s.class_boxes, width, label=s.split)
    ax.set_xticks(np.arange(n) + 0.4 - width / 2, result.names, rotation=60, ha="right")
    ax.set(ylabel="boxes", title="boxes per class")
    ax.legend()
    save(fig, "classes.png")
    fig, ax = plt.subplots(figsize=(7, 4))
    for s in result.splits:
        if len(s.sizes):
            ax.hist(s.sizes, bins=np.geomspace(1, max(2.0, s.sizes.max() + 1), 40), alpha=0.5,
                    label=s.split)  # fmt: skip
    ax.axvline(8, color="tab:red", lw=1, ls="--", label="8 px")
    ax.set_xscale("log")
    ax.set(xlabel=f"sqrt(w x h), px at {result.imgsz}", ylabel="boxes", title="box sizes")
    ax.legend()
    save(fig, "box_sizes.png")
