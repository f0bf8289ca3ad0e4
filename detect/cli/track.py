"""`detect track`: detect and track objects in video, streams and cameras (ByteTrack), with IDs.

ByteTrack (Zhang et al., ECCV 2022; `detect.track`) over the detector's boxes: the annotated
video shows each object's id, `--save-txt` writes MOTChallenge rows, and the summary counts the
distinct objects per class.
"""

from __future__ import annotations

from typing import Annotated

import typer

from detect.cli.common import Classes, Device, Iou, MaxDet, console, err_console, parse_classes
from detect.cli.text import plural
from detect.settings import PredictConfig, TrackerConfig

P, T = PredictConfig, TrackerConfig  # the defaults below are theirs

EXAMPLES = [
    "detect track clip.mp4",
    "detect track clip.mp4 --weights best.safetensors --save-txt",
    "detect track frames/ --save-txt --no-images",
    "detect track 0 --weights best.onnx",
]  # the end of --help


def command(
    source: Annotated[
        list[str],
        typer.Argument(
            help="Video files, stream URLs (rtsp://, http://), a camera index (0), or folders, "
            "globs and .txt lists of frames (each one sequence, in sorted order).",
            show_default=False,
        ),
    ],
    weights: Annotated[
        str | None,
        typer.Option("--weights", help="Weights file or export (default: the shipped model)."),
    ] = None,
    imgsz: Annotated[
        int | None,
        typer.Option("--imgsz", help="Input size, multiple of 32 (default: the weights' size)."),
    ] = None,
    conf: Annotated[
        float,
        typer.Option(
            "--conf",
            help="Detector confidence threshold: keep it <= --track-low, ByteTrack's second "
            "association needs the low-score boxes.",
        ),
    ] = T.low_thresh,
    iou: Iou = P.iou,
    max_det: MaxDet = P.max_det,
    classes: Classes = None,
    device: Device = "auto",
    batch: Annotated[
        int, typer.Option("--batch", help="Video frames per forward pass (cameras: 1).")
    ] = P.batch,
    out: Annotated[
        str, typer.Option("--out", help="Run folder (never overwritten: runs/track-2, ...).")
    ] = "runs/track",
    save_txt: Annotated[
        bool,
        typer.Option(
            "--save-txt",
            help="MOTChallenge rows 'frame,id,x,y,w,h,conf,-1,-1,-1', one mot/NAME.txt per "
            "sequence.",
        ),
    ] = False,
    no_images: Annotated[
        bool, typer.Option("--no-images", help="Do not write annotated videos or images.")
    ] = False,
    vid_stride: Annotated[
        int, typer.Option("--vid-stride", help="Track every N-th video frame.")
    ] = 1,
    line_width: Annotated[
        int | None,
        typer.Option("--line-width", metavar="PX", help="Box lines (default: from image size)."),
    ] = None,
    track_high: Annotated[
        float,
        typer.Option("--track-high", help="First association: boxes scoring at least this."),
    ] = T.high_thresh,
    track_low: Annotated[
        float,
        typer.Option("--track-low", help="Second association: boxes scoring above this."),
    ] = T.low_thresh,
    new_track: Annotated[
        float, typer.Option("--new-track", help="An unmatched box this confident starts a track.")
    ] = T.new_track_thresh,
    match: Annotated[
        float,
        typer.Option("--match", help="First association: largest cost 1 - IoU x score."),
    ] = T.match_thresh,
    track_buffer: Annotated[
        int,
        typer.Option(
            "--track-buffer", help="Frames (at 30 fps) a lost track waits for its object."
        ),
    ] = T.track_buffer,
) -> None:
    """Detect and track objects: ByteTrack ids on the annotated video (runs/track), with
    --save-txt MOTChallenge rows, and the number of distinct objects per class. Exit code 1 when
    some input could not be read, 2 when none could, 130 when interrupted (Ctrl-C or SIGTERM:
    the files written hold the frames done)."""
    from detect.cli.common import default_weights
    from detect.cli.predict import _progress, _sigterm_as_interrupt
    from detect.track.run import run_track

    cfg = PredictConfig(
        imgsz=imgsz, conf=conf, iou=iou, max_det=max_det, classes=parse_classes(classes),
        batch=batch,
    )  # fmt: skip
    tracker = TrackerConfig(
        high_thresh=track_high, low_thresh=track_low, new_track_thresh=new_track,
        match_thresh=match, track_buffer=track_buffer,
    )  # fmt: skip
    with _sigterm_as_interrupt(), _progress(console) as progress:
        summary = run_track(
            source, weights or default_weights(device), cfg, tracker, device=device, out=out,
            save_images=not no_images, save_txt=save_txt, vid_stride=vid_stride,
            line_width=line_width, callback=progress,
        )  # fmt: skip
    print_summary(summary)
    if summary.interrupted:
        where = f"; results so far in {summary.run_dir}" if summary.run_dir else ""
        err_console.print(f"interrupted after {plural(summary.frames, 'frame')}{where}")
        raise typer.Exit(130)
    if summary.frames == 0:
        err_console.print(f"error: nothing could be read ({plural(len(summary.failed), 'input')})")
        raise typer.Exit(2)
    if summary.failed:
        err_console.print(f"{plural(len(summary.failed), 'input')} failed, the rest were tracked")
        raise typer.Exit(1)


def print_summary(s) -> None:
    """Per sequence: frames and distinct objects; per class: distinct objects; where it went."""
    from rich.markup import escape
    from rich.table import Table

    for msg in s.failed[:10]:
        console.print(f"[red]skipped[/red] {escape(msg)}")
    table = Table("sequence", "kind", "frames", "objects", "failed", title="Tracks")
    for q in s.sequences:
        table.add_row(escape(q.name), q.kind, str(q.frames), str(q.tracks), str(q.failed))
    console.print(table)
    if s.tracks:
        table = Table("id", "class", "objects", title="Distinct objects per class")
        for k, n in enumerate(s.class_counts.tolist()):
            if n:
                table.add_row(str(k), escape(s.names[k] if k < len(s.names) else str(k)), str(n))
        console.print(table)
    ms = s.ms
    console.print(
        f"{plural(s.frames, 'frame')}, {plural(s.tracks, 'track')} in {s.seconds:.1f} s at "
        f"letterbox {s.imgsz} on {s.device} ({ms.get('pre', 0):.1f} ms pre-process, "
        f"{ms.get('inference', 0):.1f} ms inference, {ms.get('post', 0):.1f} ms post-process "
        "per frame)",
        highlight=False,
    )
    if s.run_dir is not None:
        mots = [q.mot for q in s.sequences if q.mot is not None]
        what = f" (MOTChallenge rows: {escape(str(mots[0].parent))}/)" if mots else ""
        console.print(f"Results saved to [bold]{escape(str(s.run_dir))}[/bold]{what}")
