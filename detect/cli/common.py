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
    list[str] | None,
    typer.Option("--classes", help="Keep only these class ids: 0,2 or repeated --classes 0."),
]


def parse_classes(values: list[str] | None) -> list[int] | None:
    """`--classes 0,2 --classes 5` -> [0, 2, 5]; None when not given."""
    if not values:
        return None
    from detect.errors import DetectError

    ids = []
    for v in values:
        for part in str(v).replace(" ", ",").split(","):
            if not part:
                continue
            if not part.isdigit():
                raise DetectError(f"--classes takes class ids (0,2 or repeated), got {v!r}")
            ids.append(int(part))
    return sorted(set(ids)) or None


Split = Annotated[
    str,
    typer.Option("--split", help="Split of DATA (for a VOC folder: a list in ImageSets/Main)."),
]
Seed = Annotated[int, typer.Option("--seed", help="Random seed (runs are deterministic per seed).")]
Images = Annotated[
    str | None,
    typer.Option("--images", help="Image folder for a COCO JSON (default: next to the JSON)."),
]


def default_weights(device: str | None = None, half: bool = False) -> str:
    """The shipped model, found from the installed package, not the working directory. With
    `device` (predict): its ONNX export where it will run on the CPU (detect.resources)."""
    from detect import resources

    if device is None:
        return str(resources.default_weights())
    return str(resources.default_predict_weights(device, half))


Strict = Annotated[
    bool,
    typer.Option(
        "--strict", help="Exit 1 if any data was skipped or mended (bad lines, images, boxes)."
    ),
]
Verbose = Annotated[
    bool, typer.Option("--verbose", help="List every skipped or mended item, not the first few.")
]


def print_report(
    report,
    strict: bool = False,
    verbose: bool = False,
    saved=None,
    split: str | None = None,
    errors: tuple[str, ...] = ("bad_class",),
) -> None:
    """What a data set reader skipped or mended: per kind a summary line with its count, then
    the first entries (`file:line: reason`; all of them with `verbose`), on stderr so that a
    JSON on stdout stays clean. `saved` names a file holding the full list, `split` which
    split the report is of, `errors` the kinds to show as errors. With `strict`,
    any warning kind raises DetectError (exit 1) after the listing."""
    from detect.data.types import REPORT_KINDS
    from detect.errors import DetectError

    shown = None if verbose else 3
    for kind, (level, what) in REPORT_KINDS.items():
        entries = report.entries.get(kind, [])
        if not entries:
            continue
        level = "error" if kind in errors else level
        style = {"error": "red", "warning": "yellow"}.get(level, "dim")
        say = __getattr__("err_console").print  # (made on first use)
        where = f" in split '{split}'" if split else ""
        head = f"[{style}]{level}: {len(entries)} {what}{where}[/]"
        say(head, highlight=False, soft_wrap=True)
        for msg in entries[:shown]:
            say(f"  {msg}", markup=False, highlight=False, soft_wrap=True)
        if shown is not None and len(entries) > shown:
            more = f"all in {saved}" if saved else "--verbose lists them all"
            say(f"  ... {len(entries) - shown} more ({more})", highlight=False, soft_wrap=True)
    n = report.warnings()
    if strict and n:
        raise DetectError(f"--strict: {n} data problem{'s' if n != 1 else ''} (listed above)")
