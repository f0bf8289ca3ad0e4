"""`detect predict`: detect objects in images, folders, globs, videos and a camera."""

from __future__ import annotations

from typing import Annotated

import typer

from detect.cli.common import Classes, Device, Iou, MaxDet, console, err_console
from detect.settings import Merge, Method, PredictConfig

P = PredictConfig  # the defaults below are its


def command(
    source: Annotated[
        list[str],
        typer.Argument(
            help="Image files, folders (searched recursively), globs ('imgs/**/*.jpg'), "
            "video files or a camera index (0).",
            show_default=False,
        ),
    ],
    weights: Annotated[
        str | None,
        typer.Option(
            "--weights",
            help="Weights file (default: the shipped model), or a model exported by `detect "
            "export` (.onnx file, OpenVINO folder): run on the CPU without PyTorch.",
        ),
    ] = None,
    imgsz: Annotated[
        int | None,
        typer.Option("--imgsz", help="Input size, multiple of 32 (default: the weights' size)."),
    ] = None,
    conf: Annotated[float, typer.Option("--conf", help="Confidence threshold.")] = P.conf,
    iou: Iou = P.iou,
    max_det: MaxDet = P.max_det,
    classes: Classes = None,
    device: Device = "auto",
    batch: Annotated[int, typer.Option("--batch", help="Images per forward pass.")] = P.batch,
    out: Annotated[
        str, typer.Option("--out", help="Run folder (never overwritten: runs/predict-2, ...).")
    ] = "runs/predict",
    save_txt: Annotated[
        bool,
        typer.Option("--save-txt", help="YOLO label files 'class cx cy w h conf' in labels/."),
    ] = False,
    save_json: Annotated[
        str | None,
        typer.Option("--save-json", help="COCO results list to FILE ('-': stdout)."),
    ] = None,
    no_images: Annotated[
        bool, typer.Option("--no-images", help="Do not write annotated images or videos.")
    ] = False,
    vid_stride: Annotated[
        int,
        typer.Option(
            "--vid-stride",
            help="Predict every N-th video frame; the annotated video holds those frames only.",
        ),
    ] = 1,
    method: Annotated[
        Method,
        typer.Option("--method", help="The last two run a window classifier (--weights)."),
    ] = Method(P.method),
    scales: Annotated[
        str | None,
        typer.Option("--scales", help="sliding: window sizes in pixels, e.g. '32,48,64'."),
    ] = None,
    stride: Annotated[
        int | None,
        typer.Option("--stride", help="sliding: window step (default: the classifier's stride)."),
    ] = None,
    tile: Annotated[
        int | None,
        typer.Option(
            "--tile",
            help="Tiled inference for large images: overlapping SIZE x SIZE tiles plus the "
            "whole image, boxes merged across tiles.",
            show_default=False,
        ),
    ] = None,
    overlap: Annotated[
        float, typer.Option("--overlap", help="--tile: fraction of a tile its neighbours share.")
    ] = P.overlap,
    merge: Annotated[
        Merge,
        typer.Option(
            "--merge",
            help="--tile: drop overlapping boxes (nms) or join them into their union (nmm, "
            "re-joins objects cut by a tile border).",
        ),
    ] = Merge(P.merge),
) -> None:
    """Detect objects and save annotated images / videos into a new run folder, with optional
    YOLO label files (--save-txt) and a COCO results list (--save-json). Exit code 1 when some
    input could not be read, 2 when none could."""
    import sys

    from detect.cli.common import default_weights
    from detect.inference import run_predict

    cfg = PredictConfig(
        imgsz=imgsz, conf=conf, iou=iou, max_det=max_det, classes=classes, batch=batch,
        method=method, scales=scales, stride=stride, tile=tile, overlap=overlap, merge=merge,
    )  # fmt: skip
    out_console = err_console if save_json == "-" else console  # keep stdout clean for JSON
    json_target = sys.stdout if save_json == "-" else save_json
    with _progress(out_console) as progress:
        summary = run_predict(
            source, weights or default_weights(), cfg, device=device, out=out,
            save_images=not no_images, save_txt=save_txt, save_json=json_target,
            vid_stride=vid_stride, callback=progress,
        )  # fmt: skip
    print_summary(summary, out_console)
    if summary.frames == 0:
        err_console.print(f"error: nothing could be read ({len(summary.failed)} inputs failed)")
        raise typer.Exit(2)
    if summary.failed:
        err_console.print(f"{len(summary.failed)} input(s) failed, the rest were processed")
        raise typer.Exit(1)


class _progress:
    """A transient rich progress bar fed by run_predict's callback (done, total, source)."""

    def __init__(self, out) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.bar = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=out,
            transient=True,
        )
        self.task = None

    def __enter__(self) -> _progress:
        self.bar.start()
        return self

    def __exit__(self, *exc) -> None:
        self.bar.stop()

    def __call__(self, done: int, total: int | None, name: str) -> None:
        if self.task is None:
            self.task = self.bar.add_task("predict", total=total)
        desc = name if len(name) <= 40 else "..." + name[-37:]
        self.bar.update(self.task, completed=done, description=desc)


def print_summary(s, out) -> None:
    """Per source and per class counts, speed, and where the results went."""
    from rich.markup import escape
    from rich.table import Table

    shown = 10
    for msg in s.failed[:shown]:
        out.print(f"[red]skipped[/red] {escape(msg)}")
    if len(s.failed) > shown:
        out.print(f"... and {len(s.failed) - shown} more")

    table = Table("source", "kind", "frames", "detections", "failed", title="Sources")
    for st in s.sources:
        table.add_row(escape(st.arg), st.kind, str(st.frames), str(st.detections), str(st.failed))
    out.print(table)
    if s.detections:
        table = Table("id", "class", "detections", title="Classes")
        for k, n in enumerate(s.class_counts.tolist()):
            if n:
                name = s.names[k] if k < len(s.names) else str(k)
                table.add_row(str(k), escape(name), str(n))
        out.print(table)
    ms = s.ms
    size = f"at letterbox {s.imgsz} " if s.method == "yolo" else f"({s.method}) "
    out.print(
        f"Speed: {ms['pre']:.1f} ms pre-process, {ms['inference']:.1f} ms inference, "
        f"{ms['post']:.1f} ms post-process per image {size}on {s.device}; "
        f"{s.frames} frames, {s.detections} detections in {s.seconds:.1f} s"
    )
    if s.run_dir is not None:
        saved = []
        if s.saved_images:
            saved.append(f"{s.saved_images} images")
        if s.saved_videos:
            saved.append(f"{s.saved_videos} videos")
        if s.saved_labels:
            saved.append(f"{s.saved_labels} label files")
        what = ", ".join(saved) or "no files: nothing to save"
        out.print(f"Results saved to [bold]{escape(str(s.run_dir))}[/bold] ({what})")
    if s.json_path is not None:
        out.print(f"COCO results written to {escape(str(s.json_path))}")
