"""`detect export`: a weights file to ONNX or TorchScript (decoded output, dynamic batch)."""

from __future__ import annotations

from typing import Annotated

import typer

from detect.cli.common import console

EXAMPLES = [
    "detect export best.safetensors",
    "detect export best.safetensors --format torchscript --imgsz 416",
]  # the end of --help


def command(
    weights: Annotated[
        str, typer.Argument(help="Weights file (.safetensors).", show_default=False)
    ],
    format: Annotated[str, typer.Option("--format", help="onnx | torchscript.")] = "onnx",
    imgsz: Annotated[
        int | None,
        typer.Option("--imgsz", help="Fixed input side of the export (default: trained size)."),
    ] = None,
    out: Annotated[
        str | None,
        typer.Option("--out", help="Output file (default: beside W, .onnx / .torchscript)."),
    ] = None,
) -> None:
    """Export for deployment: input images[B,3,S,S] RGB 0..1, output [B,N,5+C] before NMS.

    Rows are (x1, y1, x2, y2) input pixels, objectness, class probabilities; the batch axis is
    dynamic, the input side fixed.
    """
    from pathlib import Path

    from detect.errors import DetectError
    from detect.models import load_weights
    from detect.models.export import FORMATS, export_model

    if format not in FORMATS:
        raise DetectError(f"unknown export format {format!r} (expected onnx or torchscript)")
    model, meta = load_weights(weights)
    size = imgsz or int(meta.get("imgsz") or 320)
    dst = Path(out) if out else Path(weights).with_suffix(FORMATS[format])
    path = export_model(model, format, dst, size, meta)
    console.print(f"exported {format} ({size} x {size}, dynamic batch) to {path}", highlight=False)
