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
