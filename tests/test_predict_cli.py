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
from detect.errors import DetectError


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
    assert "fake.jpg" in r.output and "1 input failed" in r.output
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


@pytest.fixture
def two_class_model(monkeypatch):
    """A cat and an overlapping dog (IoU ~0.8), the cat scoring higher."""
    rows = [[10, 50, 110, 90, 1.0, 0.9, 0.1], [14, 52, 112, 92, 1.0, 0.1, 0.8]]
    model = FixedModel(rows, names=["cat", "dog"])
    monkeypatch.setattr(
        detect.inference.predictor, "load_model", lambda w, device="cpu": (model, {})
    )
    return model


def _labels(run):
    return [line.split() for line in (run / "labels" / "0.txt").read_text().splitlines()]


def test_cli_save_conf_crops_classes_agnostic(tmp_path, two_class_model):
    _images(tmp_path / "imgs", 2)
    run = tmp_path / "run"
    base = [str(tmp_path / "imgs"), "--weights", "w", "--save-txt", "--out"]
    r = _invoke(*base, str(run))
    assert r.exit_code == 0, r.output
    assert [len(x) for x in _labels(run)] == [5, 5]  # class cx cy w h: trainable as labels
    r = _invoke(*base, str(tmp_path / "conf"), "--save-conf", "--save-crop", "--no-images")
    assert r.exit_code == 0, r.output
    assert [x[0] for x in _labels(tmp_path / "conf")] == ["0", "1"]
    assert [float(x[5]) for x in _labels(tmp_path / "conf")] == [0.9, 0.8]
    crops = sorted(p.relative_to(tmp_path / "conf").as_posix() for p in
                   (tmp_path / "conf" / "crops").rglob("*.jpg"))  # fmt: skip
    assert crops == ["crops/cat/0_0.jpg", "crops/cat/1_0.jpg", "crops/dog/0_1.jpg",
                     "crops/dog/1_1.jpg"]  # fmt: skip
    assert cv2.imread(str(tmp_path / "conf/crops/cat/0_0.jpg")).shape == (80, 200, 3)
    assert "4 crops" in r.output
    for classes, want in ((["--classes", "1"], ["1"]), (["--classes", "0,1"], ["0", "1"]),
                          (["--classes", "1", "--classes", "0"], ["0", "1"]),
                          (["--agnostic-nms"], ["0"])):  # fmt: skip
        out = tmp_path / f"run{len(list(tmp_path.iterdir()))}"
        r = _invoke(*base, str(out), "--no-images", *classes)
        assert r.exit_code == 0, r.output
        assert [x[0] for x in _labels(out)] == want, classes
    r = _invoke(*base, str(tmp_path / "bad"), "--classes", "cat")
    assert isinstance(r.exception, DetectError) and "--classes" in str(r.exception)


def test_cli_line_width_and_hidden_labels_change_the_drawing(tmp_path, two_class_model):
    _images(tmp_path / "imgs", 1)
    drawn = {}
    for name, opts in [("plain", []), ("thick", ["--line-width", "6"]),
                       ("nolabels", ["--hide-labels"]), ("noconf", ["--hide-conf"])]:  # fmt: skip
        r = _invoke(str(tmp_path / "imgs"), "--weights", "w", "--out", str(tmp_path / name), *opts)
        assert r.exit_code == 0, r.output
        drawn[name] = cv2.imread(str(tmp_path / name / "0.jpg")).astype(int)
    changed = {k: int((np.abs(v - drawn["plain"]).sum(-1) > 60).sum()) for k, v in drawn.items()}
    assert changed["plain"] == 0
    assert changed["thick"] > 0 and changed["nolabels"] > 0 and changed["noconf"] > 0
    # boxes only: fewer coloured pixels than with labels
    ink = {k: int((np.abs(v - 90).sum(-1) > 60).sum()) for k, v in drawn.items()}
    assert ink["nolabels"] < ink["noconf"] < ink["plain"] < ink["thick"]


def test_cli_txt_list_source(tmp_path, fake_model):
    _images(tmp_path / "a", 2)
    _images(tmp_path / "b", 1)
    lst = tmp_path / "list.txt"
    lst.write_text(f"# val images\na/0.jpg\n{tmp_path / 'b' / '0.jpg'}\n\na/1.jpg\na/missing.jpg\n")
    r = _invoke(str(lst), "--weights", "w", "--out", str(tmp_path / "run"))
    assert r.exit_code == 1, r.output  # the missing entry is reported, the rest done
    assert "missing.jpg" in r.output and "list" in r.output
    names = sorted(p.relative_to(tmp_path / "run").as_posix() for p in
                   (tmp_path / "run").rglob("*.jpg"))  # fmt: skip
    assert names == ["a/0.jpg", "a/1.jpg", "b/0.jpg"]
    (tmp_path / "empty.txt").write_text("# nothing\n")
    r = _invoke(str(tmp_path / "empty.txt"), "--weights", "w")
    assert isinstance(r.exception, DetectError) and "names no image" in str(r.exception)


def test_cli_sigterm_keeps_outputs_valid_exit_130(tmp_path, fake_model, monkeypatch):
    """SIGTERM (as Ctrl-C) in the second batch: the first batch's files and JSON rows stay, the
    JSON is a complete list, one line says how far it got, exit 130."""
    import signal

    _images(tmp_path / "imgs", 3)
    predict = fake_model.predict

    def predict_then_stop(x):
        if len(fake_model.calls) == 1:
            signal.raise_signal(signal.SIGTERM)
        return predict(x)

    monkeypatch.setattr(fake_model, "predict", predict_then_stop)
    before = signal.getsignal(signal.SIGTERM)
    r = _invoke(str(tmp_path / "imgs"), "--weights", "w", "--out", str(tmp_path / "run"),
                "--batch", "1", "--save-json", str(tmp_path / "p.json"))  # fmt: skip
    assert r.exit_code == 130, r.output
    assert "interrupted after 1 of 3 frames" in r.output
    rows = json.loads((tmp_path / "p.json").read_text())
    assert [x["image_id"] for x in rows] == [0]
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["0.jpg"]
    assert signal.getsignal(signal.SIGTERM) == before
