"""`detect synth OUT`: write a ready-to-train synthetic data set (and a short clip)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from detect.cli.common import Seed, console
from detect.cli.text import plural

EXAMPLES = [
    "detect synth data/shapes",
    "detect synth data/small --train 200 --val 50 --video",
]  # the end of --help


def command(
    out: Annotated[Path, typer.Argument(help="New folder for the data set (must not exist).")],
    train: Annotated[int, typer.Option("--train", help="Training images.")] = 1000,
    val: Annotated[int, typer.Option("--val", help="Validation images.")] = 200,
    size: Annotated[int, typer.Option("--size", help="Image side in pixels.")] = 320,
    seed: Seed = 0,
    video: Annotated[
        bool,
        typer.Option(
            "--video",
            help="Also write video.mp4 with per-frame labels and its ground-truth tracks "
            "(video_gt.txt, MOTChallenge rows) for `detect track` and bench/track.py.",
        ),
    ] = False,
    frames: Annotated[int, typer.Option("--frames", help="Video length in frames.")] = 60,
    fps: Annotated[int, typer.Option("--fps", help="Video frame rate.")] = 15,
    occluders: Annotated[
        int,
        typer.Option("--occluders", help="Video: static screens the shapes pass behind."),
    ] = 0,
    easy: Annotated[
        bool,
        typer.Option(
            "--easy", help="An easier set: larger objects, at most 5, little occlusion, no clutter."
        ),
    ] = False,
) -> None:
    """Write a deterministic synthetic data set (6 classes of shapes) in the ultralytics layout."""
    from rich.progress import Progress
    from rich.table import Table

    from detect.synth import CLASS_NAMES, EASY, SynthConfig, make_synth

    cfg = SynthConfig(
        train=train, val=val, size=size, seed=seed, video=video, frames=frames, fps=fps,
        occluders=occluders, **(EASY if easy else {}),
    )  # fmt: skip
    with Progress(console=console, transient=True) as bar:
        task = bar.add_task("drawing", total=None)
        s = make_synth(out, cfg, lambda done, total: bar.update(task, completed=done, total=total))

    table = Table(title=f"synthetic data set: {s.out}")
    table.add_column("class")
    for split in s.images:
        table.add_column(f"{split} boxes", justify="right")
    table.add_column("h / w range", justify="right")
    for c, name in enumerate(CLASS_NAMES):
        lo, hi = s.aspect_range[name]
        table.add_row(
            f"{c} {name}", *[str(s.boxes[sp][c]) for sp in s.images], f"{lo:.2f}-{hi:.2f}"
        )
    table.add_row("all", *[str(sum(s.boxes[sp])) for sp in s.images], "", style="bold")
    console.print(table)
    images = ", ".join(f"{n} {sp}" for sp, n in s.images.items())
    lo, hi = s.side_range
    console.print(
        f"images: {images} at {size}x{size}; box longest side {lo:.1%}-{hi:.1%} of the image"
    )
    if s.video_frames:
        frames = plural(s.video_frames, "frame")
        console.print(f"video: {s.out / 'video.mp4'} ({frames} at {fps} fps)")
        console.print(f"ground-truth tracks: {s.out / 'video_gt.txt'} (MOTChallenge rows)")
    console.print(f"data: {s.out / 'data.yaml'} ({s.seconds:.1f} s)")
