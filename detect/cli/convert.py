"""`detect convert DATA --to yolo|coco|voc OUT`: the same data set in another layout."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

import typer

from detect.cli.common import Images, Strict, Verbose, console, err_console


class Layout(StrEnum):
    yolo = "yolo"
    coco = "coco"
    voc = "voc"


EXAMPLES = [
    "detect convert VOC2007 --to yolo voc-yolo",
    "detect convert data.yaml --to coco shapes-coco --split val",
]  # the end of --help


def command(
    data: Annotated[str, typer.Argument(help="Data set: YAML, COCO instances JSON or VOC folder.")],
    to: Annotated[Layout, typer.Option("--to", help="Target layout.")],
    out: Annotated[str, typer.Argument(help="New folder for the converted data set.")],
    split: Annotated[
        list[str] | None,
        typer.Option("--split", help="Split to convert (repeatable; default: train, val, test)."),
    ] = None,
    copy: Annotated[
        bool, typer.Option("--copy", help="Copy the images instead of hard-linking them.")
    ] = False,
    images: Images = None,
    strict: Strict = False,
    verbose: Verbose = False,
) -> None:
    """Convert DATA (ultralytics YAML, COCO JSON, VOC folder) into another layout in the new
    folder OUT: boxes, classes and names kept (within 1e-6 of the image size after any round
    trip), iscrowd / difficult where the target has them, images hard-linked or copied, never
    moved. OUT is built under a temporary name and appears only when complete."""
    from rich.progress import Progress

    from detect.cli.common import print_report
    from detect.convert import convert

    with Progress(console=err_console, transient=True) as bar:
        task = bar.add_task("converting", total=None)
        result = convert(
            data, to.value, out, split, copy=copy, images=images,
            callback=lambda done, total: bar.update(task, completed=done, total=total),
        )  # fmt: skip
    print_report(result.report, strict=False, verbose=verbose)
    splits = ", ".join(f"{s} {n}" for s, n in result.splits.items())
    console.print(f"{result.to} data set in {result.out}: images {splits}; {result.boxes} boxes")
    if result.dropped_flagged:
        console.print(
            f"{result.dropped_flagged} difficult / crowd boxes left out (YOLO labels have no such "
            "flag; darknet and ultralytics drop them too)"
        )
    if strict and result.report.warnings():
        from detect.errors import DetectError

        raise DetectError(f"--strict: {result.report.warnings()} data problems (listed above)")
