"""`detect predict`: detect objects in images, folders, globs, videos and a camera."""

from __future__ import annotations

from typing import Annotated

import typer

from detect.cli.common import Classes, Device, Iou, MaxDet, console, err_console, parse_classes
from detect.cli.text import plural
from detect.errors import DetectError
from detect.files import WriteError
from detect.settings import Merge, Method, PredictConfig

P = PredictConfig  # the defaults below are its

EXAMPLES = [
    "detect predict photo.jpg",
    "detect predict imgs/ --conf 0.5 --classes 0,2 --save-txt --save-conf",
    "detect predict clip.mp4 --weights runs/train/weights/best.safetensors",
    "detect predict list.txt --save-json preds.json --no-images",
]  # the end of --help


def command(
    source: Annotated[
        list[str],
        typer.Argument(
            help="Image files, folders (searched recursively), globs ('imgs/**/*.jpg'), "
            "a .txt file listing image paths, video files, stream URLs (rtsp://, http://) "
            "or a camera index (0).",
            show_default=False,
        ),
    ],
    weights: Annotated[
        str | None,
        typer.Option(
            "--weights",
            help="Weights file (default: the shipped VOC model: weights/voc-tiny.onnx on the "
            "CPU, weights/voc-tiny.safetensors on a GPU), or a model exported by `detect "
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
        typer.Option("--save-txt", help="YOLO label files 'class cx cy w h' in labels/."),
    ] = False,
    save_conf: Annotated[
        bool,
        typer.Option("--save-conf", help="With --save-txt: the score as a 6th column."),
    ] = False,
    save_crop: Annotated[
        bool,
        typer.Option("--save-crop", help="Each detection's box as an image: crops/CLASS/."),
    ] = False,
    save_json: Annotated[
        str | None,
        typer.Option("--save-json", help="COCO results list to FILE ('-': stdout)."),
    ] = None,
    no_images: Annotated[
        bool, typer.Option("--no-images", help="Do not write annotated images or videos.")
    ] = False,
    line_width: Annotated[
        int | None,
        typer.Option("--line-width", metavar="PX", help="Box lines (default: from image size)."),
    ] = None,
    hide_labels: Annotated[
        bool, typer.Option("--hide-labels", help="Draw the boxes without labels.")
    ] = False,
    hide_conf: Annotated[
        bool, typer.Option("--hide-conf", help="Labels without the score.")
    ] = False,
    agnostic_nms: Annotated[
        bool,
        typer.Option("--agnostic-nms", help="NMS across classes (one box per object)."),
    ] = False,
    augment: Annotated[
        bool,
        typer.Option(
            "--augment",
            help="Test-time augmentation: also predict at 0.83x (mirrored) and 0.67x the input "
            "side, boxes merged (~2-3x the time; +0.02 mAP50-95 on VOC val, bench/README.md).",
        ),
    ] = False,
    half: Annotated[
        bool, typer.Option("--half", help="fp16 inference on a CUDA GPU (--device cuda).")
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
    YOLO label files (--save-txt), crops (--save-crop) and a COCO results list (--save-json).
    Exit code 1 when some input could not be read, 2 when none could, 130 when interrupted
    (Ctrl-C or SIGTERM: what was written stays valid)."""
    import sys

    from detect.cli.common import default_weights
    from detect.inference import run_predict
    from detect.inference.outputs import SaveOptions

    if line_width is not None and line_width < 1:
        raise DetectError(f"--line-width must be >= 1, got {line_width}")
    cfg = PredictConfig(
        imgsz=imgsz, conf=conf, iou=iou, max_det=max_det, classes=parse_classes(classes),
        batch=batch, method=method, scales=scales, stride=stride, agnostic_nms=agnostic_nms,
        tile=tile, overlap=overlap, merge=merge, augment=augment, half=half,
    )  # fmt: skip
    save = SaveOptions(
        images=not no_images, txt=save_txt, conf=save_conf, crop=save_crop,
        line_width=line_width, hide_labels=hide_labels, hide_conf=hide_conf,
    )  # fmt: skip
    out_console = err_console if save_json == "-" else console  # keep stdout clean for JSON
    json_target = sys.stdout if save_json == "-" else save_json
    try:
        with _sigterm_as_interrupt(), _progress(out_console) as progress:
            summary = run_predict(
                source, weights or default_weights(device, half), cfg, device=device, out=out,
                save_json=json_target, save=save, vid_stride=vid_stride, callback=progress,
            )  # fmt: skip
    except WriteError as e:  # a full disk mid-run: what was done, then the one error line
        if e.summary is not None:
            print_summary(e.summary, out_console)
            err_console.print(_how_far("stopped", e.summary), highlight=False, soft_wrap=True)
        raise
    print_summary(summary, out_console)
    if summary.interrupted:
        err_console.print(_how_far("interrupted", summary), highlight=False, soft_wrap=True)
        raise typer.Exit(130)
    if summary.frames == 0:
        failed = plural(len(summary.failed), "input")
        err_console.print(f"error: nothing could be read ({failed} failed)")
        raise typer.Exit(2)
    if summary.failed:
        err_console.print(f"{plural(len(summary.failed), 'input')} failed, the rest were processed")
        raise typer.Exit(1)


def _how_far(what: str, summary) -> str:
    """`interrupted after 12 of 40 frames; results so far in runs/predict` (and the COCO
    list, which holds exactly those frames)."""
    n, total = summary.frames, summary.total
    done = f"{n} of {plural(total, 'frame')}" if total is not None else plural(n, "frame")
    kept = [str(p) for p in (summary.run_dir, summary.json_path) if p is not None]
    return f"{what} after {done}" + (f"; results so far in {' and '.join(kept)}" if kept else "")


class _sigterm_as_interrupt:
    """SIGTERM (a `kill`, a container stop) ends the run as Ctrl-C does: outputs kept valid,
    exit 130. The previous handler is restored on exit."""

    def __enter__(self) -> None:
        import signal
        import threading

        self.old = None
        if threading.current_thread() is threading.main_thread():
            self.old = signal.signal(signal.SIGTERM, _raise_interrupt)

    def __exit__(self, *exc) -> None:
        import signal

        if self.old is not None:
            signal.signal(signal.SIGTERM, self.old)


def _raise_interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


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
    size = f"at letterbox {s.imgsz}" if s.method == "yolo" else f"({s.method})"
    out.print(
        f"{plural(s.frames, 'frame')}, {plural(s.detections, 'detection')} in "
        f"{s.seconds:.1f} s {size} on {s.device}",
        highlight=False,
    )
    out.print(
        f"Speed: {ms['pre']:.1f} ms pre-process, {ms['inference']:.1f} ms inference, "
        f"{ms['post']:.1f} ms post-process per image",
        highlight=False,
    )
    if s.run_dir is not None:
        saved = []
        if s.saved_images:
            saved.append(plural(s.saved_images, "image"))
        if s.saved_videos:
            saved.append(plural(s.saved_videos, "video"))
        if s.saved_labels:
            saved.append(plural(s.saved_labels, "label file"))
        if s.saved_crops:
            saved.append(plural(s.saved_crops, "crop"))
        what = ", ".join(saved) or "no files: nothing to save"
        out.print(f"Results saved to [bold]{escape(str(s.run_dir))}[/bold] ({what})")
    if s.json_path is not None:
        out.print(f"COCO results written to {escape(str(s.json_path))}")
