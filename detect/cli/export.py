"""`detect export`: a weights file to ONNX, OpenVINO or TorchScript (decoded output, before NMS)."""

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
    format: Annotated[
        str, typer.Option("--format", help="onnx | openvino | torchscript.")
    ] = "onnx",
    imgsz: Annotated[
        int | None,
        typer.Option("--imgsz", help="Letterbox side recorded in the export (default: trained)."),
    ] = None,
    out: Annotated[
        str | None,
        typer.Option(
            "--out",
            help="Output (default: beside W: W.onnx, W.torchscript, or the folder W_openvino/).",
        ),
    ] = None,
) -> None:
    """Export for deployment: input images[B,3,H,W] RGB 0..1, output [B,N,5+C] before NMS.

    Rows are (x1, y1, x2, y2) input pixels, objectness, class probabilities. Batch, height and
    width are dynamic (H and W multiples of 32, e.g. a rectangular letterbox). Class names, input
    size, anchors and the training summary travel inside (OpenVINO: metadata.json), so
    `detect predict --weights EXPORT` needs nothing else.
    """
    from pathlib import Path

    from detect.errors import DetectError
    from detect.files import file_sha256
    from detect.models import load_weights
    from detect.models.export import FORMATS, default_output, export_model

    if format not in FORMATS:
        raise DetectError(f"unknown export format {format!r} (expected {', '.join(FORMATS)})")
    model, meta = load_weights(weights)
    # which weights file this export is, checkable later (tests hold the shipped ONNX to it)
    meta["source"] = {"file": Path(weights).name, "sha256": file_sha256(weights)}
    size = imgsz or int(meta.get("imgsz") or 320)
    dst = default_output(weights, format) if out is None else Path(out)
    path = export_model(model, format, dst, size, meta)
    console.print(
        f"exported {format} (letterbox {size}, dynamic batch, height and width) to {path}",
        highlight=False,
    )
