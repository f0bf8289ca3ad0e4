"""`detect`: the Typer app. Commands live one per module in this package."""

from __future__ import annotations

import importlib
import os
import sys
from typing import Annotated

import typer

from detect import __version__
from detect.errors import DetectError

# name -> module under detect.cli; each module defines `command` (its docstring is the help).
COMMANDS = [
    "predict", "train", "evaluate", "anchors", "check", "convert", "synth", "bench", "export",
    "info",
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
        context_settings={"help_option_names": ["-h", "--help"]},
    )
    app.callback()(_root)
    for name in names:
        app.command(name)(importlib.import_module(f"detect.cli.{name}").command)
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
        app()
    except DetectError as e:
        print(f"error: {error_line(e)}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        sys.exit(130)
