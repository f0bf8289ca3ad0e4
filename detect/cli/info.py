"""`detect info`: what a weights file or an architecture holds (layers, parameters, anchors)."""

from __future__ import annotations

from typing import Annotated

import typer

from detect.cli.common import console

EXAMPLES = [
    "detect info",
    "detect info runs/train/weights/best.safetensors",
    "detect info --model yolov2 --imgsz 416 --classes 20",
]  # the end of --help


def command(
    weights: Annotated[
        str | None,
        typer.Argument(help="Weights file (default: the shipped model).", show_default=False),
    ] = None,
    model: Annotated[
        str | None,
        typer.Option("--model", help="Describe an architecture instead: tiny | yolov2."),
    ] = None,
    imgsz: Annotated[
        int | None,
        typer.Option("--imgsz", help="Input size for shapes and GFLOPs (default: trained size)."),
    ] = None,
    classes: Annotated[
        int, typer.Option("--classes", metavar="N", help="Number of classes (with --model).")
    ] = 80,
) -> None:
    """Architecture, layer table, parameter counts, GFLOPs, anchors, classes, training summary.

    GFLOPs are counted by torch.utils.flop_counter (2 x conv/matmul multiply-adds, as ultralytics).
    """
    from rich.table import Table

    from detect.errors import DetectError
    from detect.models.info import describe_arch, describe_weights

    if model is not None and weights is not None:
        raise DetectError("give a weights file or --model, not both")
    if model is not None:
        info = describe_arch(model, imgsz, classes)
    else:
        from detect.resources import default_weights

        path = weights if weights is not None else default_weights()
        if weights is None and not default_weights().is_file():
            raise DetectError(f"no weights given and the shipped model is missing: {path}")
        info = describe_weights(path, imgsz)
    if info.get("layers"):
        table = Table("#", "layer", "filters", "size/stride", "input", "output", box=None)
        for row in info["layers"]:
            table.add_row(*(str(v) for v in row))
        console.print(table)
    for key, value in info["lines"]:
        console.print(f"{key}: {value}", highlight=False, soft_wrap=True)
    if info.get("anchors"):
        table = Table("level", "stride", "w", "h", "w px", "h px", box=None)
        for row in info["anchors"]:
            table.add_row(*row)
        console.print(table)
    if info.get("training"):
        table = Table("training", "", title="Training summary", show_header=False)
        for key, value in info["training"]:
            table.add_row(key, value)
        console.print(table)
