"""The CLI skeleton: help, version, one-line errors, and safe output helpers."""

from __future__ import annotations

import subprocess
import sys

from detect import __version__
from detect.files import atomic_write_text, new_run_dir


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "detect", *args], capture_output=True, text=True, timeout=120
    )


def test_version_and_help():
    r = run_cli("--version")
    assert r.returncode == 0 and r.stdout.strip() == f"detect {__version__}"
    r = run_cli("--help")
    assert r.returncode == 0
    for name in ["predict", "train", "evaluate", "anchors", "synth", "bench", "export", "info"]:
        assert name in r.stdout


def test_help_does_not_import_torch():
    code = "import sys, detect.cli.main; print('torch' in sys.modules)"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.stdout.strip() == "False", r.stderr


def test_predict_path_loads_only_torchvisions_nms_kernel():
    """`import torchvision` costs ~2.3 s (torch._dynamo, torchvision.models) for one NMS op:
    the predict path registers the compiled kernel alone, and NMS still works."""
    code = (
        "import sys, torch, detect.inference\n"
        "from detect.boxes import batched_nms\n"
        "b = torch.tensor([[0, 0, 10, 10], [1, 1, 10, 10], [0, 0, 10, 10.0]])\n"
        "k = batched_nms(b, torch.tensor([0.9, 0.8, 0.7]), torch.tensor([0, 0, 1]), 0.5)\n"
        "print(k.tolist(), [m for m in ('torchvision', 'torch._dynamo') if m in sys.modules])"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.stdout.strip() == "[0, 2] []", r.stderr


def test_new_run_dir_never_reuses(tmp_path):
    a = new_run_dir(tmp_path / "runs" / "predict")
    b = new_run_dir(tmp_path / "runs" / "predict")
    c = new_run_dir(tmp_path / "runs" / "predict")
    assert [a.name, b.name, c.name] == ["predict", "predict-2", "predict-3"]


def test_atomic_write_replaces_whole_file(tmp_path):
    p = tmp_path / "out" / "x.txt"
    atomic_write_text(p, "one")
    atomic_write_text(p, "two")
    assert p.read_text() == "two"
    assert [f.name for f in p.parent.iterdir()] == ["x.txt"]  # no temp file left behind


def test_help_reads_well_at_80_columns():
    """Every command's help: plain value names (no <bool>, <int>, <list[str]>, ranges), lines
    that fit 80 columns, capitalised arguments, and examples at the end."""
    from typer.testing import CliRunner

    from detect.cli.main import COMMANDS, make_app

    app = make_app(COMMANDS)
    runner = CliRunner()
    for name in COMMANDS:
        r = runner.invoke(app, [name, "--help"], env={"COLUMNS": "80"}, prog_name="detect")
        assert r.exit_code == 0, (name, r.output)
        text = r.output
        for noise in ("<bool>", "<int", "<str", "<float", "<list", "x>=", "%%", "{"):
            assert noise not in text, (name, noise)
        assert all(len(line) <= 80 for line in text.splitlines()), name
        assert text.rstrip().splitlines()[-1].strip().startswith("detect "), name
        assert "Examples:" in text, name
    r = runner.invoke(app, ["predict", "--help"], env={"COLUMNS": "80"})
    assert "SOURCE..." in r.output and "--conf SCORE" in r.output
    assert "--save-txt " in r.output and "--save-txt BOOL" not in r.output


def test_plural():
    from detect.cli.text import plural

    assert [plural(1, "video"), plural(2, "epoch"), plural(0, "box")] == [
        "1 video", "2 epochs", "0 boxes",
    ]  # fmt: skip


def test_reference_page_lists_every_command_and_option():
    """docs/reference.md documents every option of every command, under that command."""
    import re
    from pathlib import Path

    import typer.main

    from detect.cli.main import COMMANDS, make_app

    doc = (Path(__file__).resolve().parent.parent / "docs" / "reference.md").read_text()
    sections = dict(re.findall(r"^### detect (\w+)\n(.*?)(?=^### |^## |\Z)", doc, re.S | re.M))
    group = typer.main.get_command(make_app(COMMANDS))
    for name in COMMANDS:
        assert name in sections, name
        for p in group.commands[name].params:
            for opt in p.opts:
                if opt.startswith("-") and opt not in ("-h", "--help"):
                    assert f"`{opt}" in sections[name], (name, opt)
    assert "## From ultralytics" in doc and "`--save-conf`" in doc
