"""Pieces every command shares: the console, option types, and output helpers.

Nothing here imports torch: commands import heavy modules inside their bodies. The rich consoles
are made on first use (`console`: human output, tables, summaries; `err_console`: stderr), so a
command that prints plain text (evaluate) never imports rich.
"""

from __future__ import annotations

from typing import Annotated

import typer


def __getattr__(name: str):
    if name in ("console", "err_console"):
        from rich.console import Console

        globals()["console"] = Console()
        globals()["err_console"] = Console(stderr=True)
        return globals()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# Shared options (contract: "Shared options where they apply").
Device = Annotated[
    str, typer.Option("--device", help="auto | cpu | cuda | cuda:N | mps (auto = CUDA if present).")
]
ImgSz = Annotated[
    int, typer.Option("--imgsz", help="Input size in pixels (square, multiple of 32).")
]
Iou = Annotated[float, typer.Option("--iou", help="NMS IoU threshold.")]
MaxDet = Annotated[int, typer.Option("--max-det", help="Maximum detections per image.")]
Classes = Annotated[
    list[int] | None, typer.Option("--classes", help="Keep only these class ids (repeatable).")
]
Split = Annotated[
    str,
    typer.Option("--split", help="Split of DATA (for a VOC folder: a list in ImageSets/Main)."),
]
Seed = Annotated[int, typer.Option("--seed", help="Random seed (runs are deterministic per seed).")]
Images = Annotated[
    str | None,
    typer.Option("--images", help="Image folder for a COCO JSON (default: next to the JSON)."),
]


def default_weights() -> str:
    """The shipped model, found from the installed package, not the working directory."""
    from detect.resources import default_weights as _default

    return str(_default())
