"""`detect predict` from the command line: exit codes, error lines, outputs, tables.

The model is replaced by a fixed-output fake (monkeypatched loader) so these run in-process and
fast; one subprocess test checks the real `error: ...` line and exit code.
"""

from __future__ import annotations

import json
import subprocess
import sys

import cv2
import numpy as np
import pytest
from test_predict import FixedModel
from typer.testing import CliRunner

import detect.inference.predictor
from detect.cli.main import app


@pytest.fixture
def fake_model(monkeypatch):
    model = FixedModel([[10, 50, 110, 90, 1.0, 0.9, 0.1]], names=["cat", "dog"])
    monkeypatch.setattr(
        detect.inference.predictor, "load_model", lambda w, device="cpu": (model, {})
    )
    return model


def _invoke(*args: str):
    return CliRunner().invoke(app, ["predict", *args])


def _images(folder, n=3):
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        cv2.imwrite(str(folder / f"{i}.jpg"), np.full((480, 640, 3), 90, np.uint8))


def test_cli_ok_table_and_outputs(tmp_path, fake_model):
    _images(tmp_path / "imgs")
    out = tmp_path / "runs" / "predict"
    r = _invoke(str(tmp_path / "imgs"), "--weights", "w", "--out", str(out), "--save-txt")
    assert r.exit_code == 0, r.output
    assert "Sources" in r.output and "Classes" in r.output and "ms inference" in r.output
    assert "cat" in r.output and str(out) in r.output.replace("\n", "")
    assert sorted(p.name for p in out.iterdir()) == ["0.jpg", "1.jpg", "2.jpg", "labels"]
    r = _invoke(str(tmp_path / "imgs"), "--weights", "w", "--out", str(out), "--no-images")
    assert r.exit_code == 0 and not (tmp_path / "runs" / "predict-2").exists()


def test_cli_json_to_stdout_is_pure_json(tmp_path, fake_model):
    _images(tmp_path / "imgs", 2)
    r = CliRunner().invoke(
        app,
        ["predict", str(tmp_path / "imgs"), "--weights", "w", "--no-images", "--save-json", "-"],
    )
    assert r.exit_code == 0, r.output
    rows = json.loads(r.stdout)
    assert [(x["image_id"], x["category_id"]) for x in rows] == [(0, 0), (1, 0)]
    # input rows (10, 50, 110, 90); 640x480 -> 320x240 in the 256 x 320 rectangular letterbox
    # (8 px of padding at the top): x / 0.5, (y - 8) / 0.5
    assert rows[0]["bbox"] == [20.0, 84.0, 200.0, 80.0]


def test_cli_corrupt_file_exit_1_others_processed(tmp_path, fake_model):
    _images(tmp_path / "imgs", 2)
    (tmp_path / "imgs" / "fake.jpg").write_text("text, not pixels")
    r = _invoke(str(tmp_path / "imgs"), "--weights", "w", "--out", str(tmp_path / "run"))
    assert r.exit_code == 1
    assert "fake.jpg" in r.output and "1 input(s) failed" in r.output
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["0.jpg", "1.jpg"]


def test_cli_nothing_readable_exit_2(tmp_path, fake_model):
    (tmp_path / "a.jpg").write_text("x")
    (tmp_path / "b.mp4").write_text("y")
    r = _invoke(str(tmp_path / "a.jpg"), str(tmp_path / "b.mp4"), "--weights", "w", "--out",
                str(tmp_path / "run"))  # fmt: skip
    assert r.exit_code == 2
    assert "nothing could be read (2 inputs failed)" in r.output


def test_cli_missing_path_and_empty_folder_one_line_error(tmp_path):
    (tmp_path / "empty").mkdir()
    for arg, msg in [
        (tmp_path / "missing.jpg", f"error: no such file or folder: {tmp_path / 'missing.jpg'}"),
        (tmp_path / "empty", f"error: no images or videos in folder: {tmp_path / 'empty'}"),
    ]:
        r = subprocess.run(
            [sys.executable, "-m", "detect", "predict", str(arg)],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert r.returncode == 1 and r.stderr.strip() == msg, r.stderr
