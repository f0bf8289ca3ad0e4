"""`detect`: the Typer app. Commands live one per module in this package."""

from __future__ import annotations

import importlib
import os
import re
import sys
from typing import Annotated

import typer
from typer.core import TyperArgument, TyperCommand, TyperOption

from detect import __version__
from detect.errors import DetectError

# name -> module under detect.cli; each module defines `command` (its docstring is the help).
COMMANDS = [
    "predict", "track", "train", "evaluate", "anchors", "check", "convert", "synth", "bench",
    "export", "info",
]  # fmt: skip


def _version(value: bool) -> None:
    if value:
        typer.echo(f"detect {__version__}")
        raise typer.Exit()


def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version.")
    ] = False,
) -> None:
    """YOLO-style object detection from the terminal."""


# Option value names where the type alone says too little; others by type (N, NUM, TEXT).
METAVARS = {
    "weights": "FILE", "window_weights": "FILE", "save_json": "FILE", "json": "FILE",
    "save": "FILE", "pred": "FILE", "plot": "PNG", "plots": "DIR", "out": "DIR",
    "resume": "DIR", "images": "DIR", "name": "NAME", "split": "NAME",
    "train_split": "NAME", "val_split": "NAME", "device": "DEVICE", "classes": "IDS",
    "anchors": "FILE|auto", "scales": "PX,...", "imgsz": "PX", "conf": "SCORE", "iou": "IOU",
    "time": "MINUTES", "lr": "LR", "freeze": "N|backbone", "source": "TEXT",
}  # fmt: skip
TYPE_METAVARS = {
    "int": "N", "int range": "N", "float": "NUM", "float range": "NUM", "str": "TEXT",
    "path": "PATH",
}  # fmt: skip


class Command(TyperCommand):
    """Help that reads well at 80 columns: plain click layout (no panels), one value name per
    option (`--conf SCORE`, `--out DIR`; flags take none), arguments in capitals
    (`SOURCE...`, `[DATA]`), and the module's EXAMPLES at the end."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **{**kwargs, "rich_markup_mode": None})
        for p in self.params:
            if isinstance(p, TyperArgument):
                p.metavar = (p.name or "").upper() + ("..." if p.nargs == -1 else "")
            elif isinstance(p, TyperOption) and not p.is_flag and p.metavar is None:
                if hasattr(p.type, "choices"):
                    p.metavar = "|".join(str(c) for c in p.type.choices)
                else:
                    p.metavar = METAVARS.get(p.name or "", TYPE_METAVARS.get(p.type.name, "X"))
            if hasattr(p.type, "_describe_range"):  # "[x>=1]": the error message says it
                p.get_help_record = _without_range(p.get_help_record)

    def collect_usage_pieces(self, ctx) -> list[str]:
        pieces = [self.options_metavar] if self.options_metavar else []
        for p in self.get_params(ctx):
            if isinstance(p, TyperArgument):
                pieces.append(p.metavar if p.required else f"[{p.metavar}]")
        return pieces


RANGE = re.compile(r"[-\d.]*<=?x(<=?[-\d.]*)?|x[<>]=?[-\d.]*")


def _without_range(get_help_record):
    """An option's help record without click's range note ("[default: 50; x>=0]")."""

    def record(ctx):
        rec = get_help_record(ctx)
        if rec is None or not rec[1].endswith("]") or "  [" not in rec[1]:
            return rec
        text, _, extra = rec[1].rpartition("  [")
        parts = [x for x in extra[:-1].split("; ") if not RANGE.fullmatch(x)]
        return rec[0], text + (f"  [{'; '.join(parts)}]" if parts else "")

    return record


def epilog(examples: list[str]) -> str | None:
    """The examples block at the end of a command's help (kept as written, not rewrapped)."""
    if not examples:
        return None
    return "Examples:\n\n\b\n" + "\n".join(f"  {e}" for e in examples)


def summary(module) -> str:
    """The line `detect --help` lists a command with: its module docstring's first sentence."""
    first = " ".join((module.__doc__ or "").split("\n\n")[0].split())
    text = first.split("`: ", 1)[-1].rstrip(".")
    return text[:1].upper() + text[1:]


def make_app(names: list[str] = COMMANDS) -> typer.Typer:
    """The Typer app with the commands `names` (each module's `command`; its docstring is the
    help). `run` registers only the command being run, so its module and what it imports are
    all that loads (`detect evaluate` starts without rich or the other commands)."""
    app = typer.Typer(
        name="detect",
        help="YOLO-style object detection: predict, train, anchors, evaluate, benchmark.",
        no_args_is_help=True,
        pretty_exceptions_enable=False,
        add_completion=False,
        rich_markup_mode=None,  # click's plain layout: compact at 80 columns, no rich import
        context_settings={"help_option_names": ["-h", "--help"]},
    )
    app.callback()(_root)
    for name in names:
        module = importlib.import_module(f"detect.cli.{name}")
        examples = epilog(getattr(module, "EXAMPLES", []))
        app.command(name, cls=Command, epilog=examples, short_help=summary(module))(module.command)
    return app


def __getattr__(name: str):
    if name == "app":  # the full app, for tests and embedding (typer.testing.CliRunner)
        globals()["app"] = make_app()
        return globals()["app"]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def error_line(e: DetectError) -> str:
    """The one line to show for a DetectError. Raised inside a DataLoader worker, torch re-raises
    it as "Caught DetectError in DataLoader worker process 0." followed by the worker's
    traceback, whose last line holds the message that names the file."""
    lines = [ln for ln in str(e).splitlines() if ln.strip()]
    if not lines:
        return type(e).__name__
    if lines[0].startswith("Caught ") and "Original Traceback" in str(e):
        last = lines[-1]
        for prefix in ("detect.errors.DetectError: ", "DetectError: "):
            if last.startswith(prefix):
                return last[len(prefix) :]
    return lines[0]


def run() -> None:
    """Console-script entry: library errors become one `error: ...` line and exit code 1."""
    # Before any command loads torch's OpenMP: idle threads sleep instead of spinning. On a CPU
    # shared with other busy processes, spinning threads steal the cores the working ones need
    # (measured: 10x slower inference, 4-6x slower training steps; bench/README.md). An explicit
    # setting in the environment wins.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    # FFmpeg's own log lines ("moov atom not found", once per open attempt) would only repeat
    # the one line `detect` prints for a file it cannot read; OpenCV reads this at first use.
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
    argv = sys.argv[1:]
    app = make_app([argv[0]] if argv and argv[0] in COMMANDS else COMMANDS)
    try:
        app(prog_name="detect")
    except DetectError as e:
        print(f"error: {error_line(e)}", file=sys.stderr)
        sys.exit(1)
    except OSError as e:  # a write the library did not wrap (a full disk, a read-only mount)
        from detect.files import write_error_from

        err = write_error_from(e)
        if err is None:
            raise
        print(f"error: {error_line(err)}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        sys.exit(130)
