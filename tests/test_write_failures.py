"""Nothing lost when writing fails (issue 25): a full disk, a read-only folder, a process killed
while saving.

Faults are injected where every output byte and every rename goes (`detect.files._write`,
`_replace`) and where the up-front check probes the destination (`_probe`), since CI runs as
root and a read-only folder by permissions does not stop root. Each writing command must end in
one line `error: cannot write PATH: <reason>` with exit code 1, no traceback, no `.*.tmp` file
left, and every output that exists whole.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import signal
import sys
import time
from pathlib import Path

import pytest

import detect.files as F
from detect.files import WriteError

REPO = Path(__file__).resolve().parent.parent
WEIGHTS = REPO / "weights" / "shapes-tiny.safetensors"
WINDOW = REPO / "weights" / "shapes-window.safetensors"
NOSPC = "no space left on device"
ROFS = "read-only file system"


# --------------------------------------------------------------------------------- helpers


def _name(f) -> str:
    """The path of an open file object (os.fdopen's objects are named by their fd)."""
    name = f.name
    return os.readlink(f"/proc/self/fd/{name}") if isinstance(name, int) else str(name)


class Faults:
    """Patches detect.files so that writes fail as a full or read-only disk does."""

    def __init__(self, monkeypatch) -> None:
        self.mp = monkeypatch
        self.writes: list[str] = []  # every file written to, failed ones included

    def writes_fail(self, code: int = errno.ENOSPC, after: int = 0, where: str = "") -> None:
        """Every write whose file path contains `where`, from the one after the first `after`
        on, raises OSError(code): the disk stays full."""
        real, seen = F._write, [0]

        def write(f, data):
            name = _name(f)
            self.writes.append(name)
            if where in name:
                seen[0] += 1
                if seen[0] > after:
                    raise OSError(code, os.strerror(code))
            return real(f, data)

        self.mp.setattr(F, "_write", write)

    def read_only(self) -> None:
        """The destination refuses new files, as a read-only mount does."""

        def probe(folder):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS))

        self.mp.setattr(F, "_probe", probe)


@pytest.fixture
def faults(monkeypatch) -> Faults:
    return Faults(monkeypatch)


def cli(monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
    """`detect ARGS` in this process through the console-script entry (detect.cli.main.run):
    (exit code, stdout, stderr). An exception other than SystemExit (a traceback) fails."""
    from detect.cli.main import run

    monkeypatch.setattr(sys, "argv", ["detect", *map(str, args)])
    with pytest.raises(SystemExit) as e:
        run()
    out, err = capsys.readouterr()
    code = e.value.code
    return (code if isinstance(code, int) else int(code is not None)), out, err


def assert_one_line_error(code: int, err: str, path: Path | str, reason: str) -> None:
    """Exit 1 and, last on stderr, `error: cannot write PATH: REASON` where PATH is `path` or a
    file in it (a run folder's image); no traceback."""
    assert code == 1, err
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert re.match(f"error: cannot write {re.escape(str(path))}(/[^:]+)?: {reason}", last), err


def temps(root: Path) -> list[Path]:
    """Hidden temporary files or folders left anywhere under `root`."""
    return [p for p in root.rglob(".*") if ".tmp" in p.name]


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """A tiny shapes data set (64 px) and a predictions file scoring it."""
    from detect.synth import SynthConfig, make_synth

    root = tmp_path_factory.mktemp("wdata")
    make_synth(root / "d", SynthConfig(train=6, val=4, size=64, seed=3, max_objects=2))
    preds = []
    for lab in sorted((root / "d" / "labels" / "val").glob("*.txt")):
        for line in lab.read_text().splitlines():
            c, cx, cy, w, h = map(float, line.split())
            box = [(cx - w / 2) * 64, (cy - h / 2) * 64, w * 64, h * 64]
            preds.append({"image_id": int(lab.stem), "category_id": int(c), "bbox": box,
                          "score": 0.9})  # fmt: skip
    (root / "preds.json").write_text(json.dumps(preds))
    return root / "d" / "data.yaml"


# ----------------------------------------------------------------------- the writing helpers


def test_atomic_write_keeps_old_file_and_leaves_no_temp(tmp_path, faults):
    p = tmp_path / "x.json"
    p.write_text("old")
    faults.writes_fail(errno.ENOSPC)
    with pytest.raises(WriteError, match=f"^cannot write {p}: {NOSPC}$") as e:
        F.atomic_write_text(p, "new")
    assert e.value.path == p and e.value.errno == errno.ENOSPC
    assert p.read_text() == "old" and temps(tmp_path) == []


def test_all_or_nothing_keeps_every_old_file(tmp_path, faults):
    a, b = tmp_path / "a", tmp_path / "w" / "b"
    F.atomic_write_text(a, "a1")
    F.atomic_write_text(b, "b1")
    faults.writes_fail(errno.ENOSPC, after=1)  # the second write fails
    with pytest.raises(WriteError, match=f"cannot write {b}: {NOSPC}"), F.all_or_nothing():
        F.atomic_write_text(a, "a2")
        F.atomic_write_text(b, "b2")
    assert (a.read_text(), b.read_text()) == ("a1", "b1") and temps(tmp_path) == []


def test_check_writable_names_the_output_and_the_reason(tmp_path, faults):
    (tmp_path / "file").write_text("")
    with pytest.raises(WriteError, match="is not a folder"):
        F.check_writable(tmp_path / "file" / "sub" / "x.json")
    with pytest.raises(WriteError, match="it is a folder"):
        F.check_writable_file(tmp_path)
    F.check_writable(tmp_path / "new" / "deeper" / "run")  # a writable place: fine
    faults.read_only()
    with pytest.raises(WriteError, match=f"^cannot write {tmp_path / 'run'}: {ROFS}$"):
        F.check_writable(tmp_path / "run")
    assert temps(tmp_path) == []


def test_unwrapped_oserror_names_the_final_file():
    e = OSError(errno.ENOSPC, "No space left on device", "/d/.results.csv.ab_cd123.tmp")
    assert str(F.write_error_from(e)) == f"cannot write /d/results.csv: {NOSPC}"
    e = OSError(errno.EROFS, "Read-only file system", "/d/.clip.tmp.mp4")
    assert str(F.write_error_from(e)) == f"cannot write /d/clip.mp4: {ROFS}"
    assert F.write_error_from(FileNotFoundError(errno.ENOENT, "gone", "/x")) is None


def test_incomplete_mp4_is_detected(tmp_path):
    import cv2
    import numpy as np

    path = tmp_path / "v.mp4"
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10, (64, 64))
    for _ in range(5):
        w.write(np.zeros((64, 64, 3), np.uint8))
    w.release()
    assert F.mp4_complete(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 100])  # cut short, as a full disk does
    assert not F.mp4_complete(path)


# ------------------------------------------------------------------ every writing command


def _commands(data: Path, tmp: Path) -> dict[str, tuple[list, Path]]:
    """command -> (arguments, the output its error must name)."""
    root = data.parent.parent
    return {
        "predict": (["predict", root / "d/images/val", "--weights", WEIGHTS, "--imgsz", "64",
                     "--out", tmp / "run"], tmp / "run"),
        "predict-json": (["predict", root / "d/images/val", "--weights", WEIGHTS, "--imgsz",
                          "64", "--no-images", "--save-json", tmp / "p.json"], tmp / "p.json"),
        "track": (["track", root / "d/images/val", "--weights", WEIGHTS, "--imgsz", "64",
                   "--save-txt", "--out", tmp / "trk"], tmp / "trk"),
        "evaluate-json": (["evaluate", data, "--pred", root / "preds.json", "--json",
                           tmp / "e.json"], tmp / "e.json"),
        "evaluate-plots": (["evaluate", data, "--pred", root / "preds.json", "--plots",
                            tmp / "plots"], tmp / "plots"),
        "anchors": (["anchors", data, "-k", "2", "--save", tmp / "a.json"], tmp / "a.json"),
        "anchors-plot": (["anchors", data, "-k", "2", "--plot", tmp / "a.png"], tmp / "a.png"),
        "check": (["check", data, "--fast", "--out", tmp / "check"], tmp / "check"),
        "convert": (["convert", data, "--to", "yolo", tmp / "conv"], tmp / "conv"),
        "export": (["export", WEIGHTS, "--format", "torchscript", "--imgsz", "64", "--out",
                    tmp / "w.ts"],
                   tmp / "w.ts"),
        "train": (["train", data, "--epochs", "1", "--imgsz", "64", "--batch", "4", "--workers",
                   "0", "--out", tmp / "train"], tmp / "train"),
        "synth": (["synth", tmp / "synth", "--train", "2", "--val", "1", "--size", "64"],
                  tmp / "synth"),
        "bench": (["bench", data, "--weights", WEIGHTS, "--window-weights", WINDOW, "--imgsz",
                   "64", "--max-images", "1", "--scales", "32", "--plot", tmp / "b.png"],
                  tmp / "b.png"),
    }  # fmt: skip


ALL = list(_commands(Path("d/data.yaml"), Path()))


@pytest.mark.parametrize("name", ALL)
def test_read_only_destination_is_one_line_before_any_work(
    name, data, tmp_path, faults, monkeypatch, capsys
):
    """Known up front: no frame predicted, no data read for training, nothing created."""
    import detect.engine.run
    import detect.inference.run
    import detect.track.run

    def no_work(*a, **k):
        raise AssertionError("the work started before the destination was checked")

    monkeypatch.setattr(detect.inference.run, "make_predictor", no_work)
    monkeypatch.setattr(detect.track.run, "make_predictor", no_work)
    monkeypatch.setattr(detect.engine.run, "load_training_data", no_work)
    args, target = _commands(data, tmp_path)[name]
    faults.read_only()
    code, out, err = cli(monkeypatch, capsys, *args)
    assert_one_line_error(code, err, target, ROFS)
    assert len(err.strip().splitlines()) == 1, err
    assert list(tmp_path.iterdir()) == [] and faults.writes == []


# Commands with several files to write fail at the first and at a later one; a single-file
# output has only a first. The later write is one the command reaches on this data. Training's
# checkpoints: test_checkpoint_that_cannot_be_written_keeps_the_last_one (same code, no CLI).
LATER = {"predict": 2, "track": 2, "evaluate-plots": 3, "check": 1, "convert": 5, "synth": 4}


@pytest.mark.parametrize(
    ("name", "after"), [(n, 0) for n in ALL if n != "train"] + list(LATER.items())
)
def test_full_disk_while_writing_is_one_line_and_leaves_nothing_partial(
    name, after, data, tmp_path, faults, monkeypatch, capsys
):
    args, target = _commands(data, tmp_path)[name]
    faults.writes_fail(errno.ENOSPC, after=after, where=str(tmp_path))
    code, out, err = cli(monkeypatch, capsys, *args)
    assert_one_line_error(code, err, target if name != "predict" else tmp_path / "run", NOSPC)
    assert len([w for w in faults.writes if str(tmp_path) in w]) > after  # it got that far
    assert temps(tmp_path) == []
    if name in ("convert", "synth"):  # built under a temporary name: absent, never partial
        assert not target.exists()
    for f in tmp_path.rglob("*.json"):  # whatever exists is whole
        json.loads(f.read_text())


def test_predict_stops_at_a_full_disk_with_the_frames_done(data, tmp_path, faults, monkeypatch,
                                                          capsys):  # fmt: skip
    """The run folder and --save-json hold exactly the frames written before the failure (the
    JSON is on another disk here), and the summary says how far it got."""
    images = data.parent / "images" / "val"
    run, preds = tmp_path / "full" / "run", tmp_path / "ok" / "p.json"
    faults.writes_fail(errno.ENOSPC, after=4, where=str(run))  # frames 1-2: image + labels
    code, out, err = cli(monkeypatch, capsys, "predict", images, "--weights", WEIGHTS,
                         "--imgsz", "64", "--conf", "0.001", "--out", run, "--save-txt",
                         "--save-json", preds)  # fmt: skip
    assert_one_line_error(code, err, run, NOSPC)
    assert "stopped after 2 of 4 frames" in err and str(preds) in err
    names = sorted(p.stem for p in run.glob("*.jpg"))
    assert names == ["000000", "000001"]
    assert sorted(p.stem for p in (run / "labels").glob("*.txt")) == names
    rows = json.loads(preds.read_text())
    assert sorted({r["image_id"] for r in rows}) == [0, 1]
    assert temps(tmp_path) == []


def test_predict_json_on_a_full_disk_does_not_exist(data, tmp_path, faults, monkeypatch,
                                                   capsys):  # fmt: skip
    images = data.parent / "images" / "val"
    run, preds = tmp_path / "run", tmp_path / "full" / "p.json"
    faults.writes_fail(errno.ENOSPC, after=0, where=str(preds.parent))
    code, out, err = cli(monkeypatch, capsys, "predict", images, "--weights", WEIGHTS,
                         "--imgsz", "64", "--out", run, "--save-json", preds)  # fmt: skip
    assert_one_line_error(code, err, preds, NOSPC)
    assert not preds.exists() and temps(tmp_path) == []


def test_predict_video_cut_short_is_removed(tmp_path, monkeypatch, capsys):
    """OpenCV reports no write error: an annotated video that is not a whole MP4 when it is
    closed (a full disk) is removed and named in the error; the list keeps its frames."""
    import cv2
    import numpy as np

    import detect.inference.outputs

    clip = tmp_path / "clip.mp4"
    w = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"mp4v"), 10, (64, 64))
    for _ in range(3):
        w.write(np.full((64, 64, 3), 90, np.uint8))
    w.release()
    monkeypatch.setattr(detect.inference.outputs, "mp4_complete", lambda path: False)
    run, preds = tmp_path / "run", tmp_path / "p.json"
    code, out, err = cli(monkeypatch, capsys, "predict", clip, "--weights", WEIGHTS, "--imgsz",
                         "64", "--out", run, "--save-json", preds)  # fmt: skip
    assert_one_line_error(code, err, run / "clip.mp4", "the file came out incomplete")
    assert "stopped after 3 of 3 frames" in err
    assert not run.exists() and temps(tmp_path) == []
    json.loads(preds.read_text())


# -------------------------------------------------------------------------------- training


def _cfg(data: Path, out: Path, **kw):
    from detect.engine import TrainConfig

    base = dict(
        data=str(data), epochs=2, imgsz=64, batch=4, workers=0, width=0.25, out=str(out),
        anchors=None, warmup_min_iters=2,
    )  # fmt: skip
    return TrainConfig.create(**{**base, **kw})


def _quick_plot(path: Path, rows: list) -> None:
    """results.png stands in as a few bytes (matplotlib takes ~1.7 s a checkpoint here); it is
    still one of the checkpoint's files, written as the real one is."""
    F.atomic_write_bytes(path, b"png " + str(len(rows)).encode())


@pytest.fixture
def quick(monkeypatch):
    """One torch thread (bit-exact runs, little overhead) and quick results.png."""
    import torch

    import detect.engine.results

    monkeypatch.setattr(detect.engine.results, "plot_results", _quick_plot)
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def reference(data, tmp_path_factory) -> Path:
    """A run of 2 epochs that nothing disturbed."""
    import torch

    import detect.engine.results
    from detect.engine import train

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(detect.engine.results, "plot_results", _quick_plot)
            return train(_cfg(data, tmp_path_factory.mktemp("ref") / "t")).run_dir
    finally:
        torch.set_num_threads(n)


def _state(run: Path) -> dict:
    from detect.engine.state import load_resume_state

    return load_resume_state(run / "resume.safetensors")[0]


def _same_weights(a: Path, b: Path) -> None:
    import torch
    from safetensors.torch import load_file

    ta, tb = load_file(str(a)), load_file(str(b))
    assert ta.keys() == tb.keys()
    for k in ta:
        assert torch.equal(ta[k], tb[k]), k


def _resume_and_compare(run: Path, reference: Path) -> None:
    """--resume RUN (nothing failing now) ends as the undisturbed run: same weights, one
    results row per epoch, no temporary file left."""
    from detect.engine import TrainConfig, train

    r = train(TrainConfig.create(resume=str(run), workers=0))
    assert r.epochs == 2 and r.stopped == "epochs"
    _same_weights(run / "weights" / "last.safetensors", reference / "weights" / "last.safetensors")
    rows = (run / "results.csv").read_text().splitlines()
    assert [r.split(",")[0] for r in rows[1:]] == ["1", "2"]  # no row lost or doubled
    assert temps(run) == []


@pytest.mark.usefixtures("quick")
@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EROFS])
def test_checkpoint_that_cannot_be_written_keeps_the_last_one(
    code, data, reference, tmp_path, faults
):
    """Epoch 2's checkpoint fails at its first file (ENOSPC) or a later one (EROFS: the resume
    state, written last): epoch 1's stays whole, the error says how to go on, and --resume
    after that continues exactly."""
    from detect.engine import train
    from detect.engine.hooks import Checkpoint

    run = tmp_path / "t"
    real_save, saves, before = Checkpoint.save, [], {}

    def save(self, best):
        saves.append(best)
        if len(saves) == 2:  # epoch 2: from its first file, or from the resume state on
            before.update({p.name: p.read_bytes() for p in run.rglob("*.safetensors")})
            faults.writes_fail(code, where="resume" if code == errno.EROFS else "")
        real_save(self, best)

    faults.mp.setattr(Checkpoint, "save", save)
    with pytest.raises(WriteError) as e:
        train(_cfg(data, run))
    msg = str(e.value)
    assert msg.startswith(f"cannot write {run}") and os.strerror(code).lower() in msg
    assert f"{run} keeps its checkpoint of epoch 1 intact" in msg
    assert msg.endswith(f"continue with: detect train --resume {run}")
    assert _state(run)["epoch"] == 1
    assert {p.name: p.read_bytes() for p in run.rglob("*.safetensors")} == before
    assert temps(run) == []
    faults.mp.setattr(Checkpoint, "save", real_save)
    faults.mp.setattr(F, "_write", _REAL_WRITE)
    _resume_and_compare(run, reference)


_REAL_WRITE, _REAL_REPLACE = F._write, F._replace


def _train_until_killed(cfg, where: str, marker: Path) -> None:
    """In a forked child: train, and stall in epoch 2's checkpoint (`where`: half-way through
    writing its resume state, or after the other files are renamed and before the resume
    state is) after touching `marker`, waiting for the SIGKILL."""
    from detect.engine import train

    saves = []

    def stall():
        marker.touch()
        time.sleep(600)

    def write(f, data):
        if where == "write" and "resume" in _name(f):
            saves.append(1)
            if len(saves) == 2:
                _REAL_WRITE(f, data[: len(data) // 2])
                f.flush()
                stall()
        _REAL_WRITE(f, data)

    def replace(src, dst):
        if where == "rename" and str(dst).endswith("resume.safetensors"):
            saves.append(1)
            if len(saves) == 2:
                stall()
        _REAL_REPLACE(src, dst)

    F._write, F._replace = write, replace
    train(cfg)


@pytest.mark.usefixtures("quick")
@pytest.mark.parametrize("where", ["write", "rename"])
def test_training_killed_while_saving_resumes_from_the_previous_checkpoint(
    where, data, reference, tmp_path
):
    """SIGKILL in the middle of epoch 2's checkpoint: while its resume state is half written,
    or between the renames (weights and results.csv already epoch 2's). The run resumes from
    epoch 1's state, cleans the temporary files up and ends exactly as the undisturbed run.
    The training runs in a forked child (torch already imported: no 8 s start-up)."""
    run, marker = tmp_path / "t", tmp_path / "saving"
    cfg = _cfg(data, run)
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = 1
        try:
            _train_until_killed(cfg, where, marker)
        finally:
            os._exit(code)
    try:
        deadline = time.time() + 120
        while not marker.exists():
            done, status = os.waitpid(pid, os.WNOHANG)
            assert done == 0, f"the child ended before the save (status {status})"
            assert time.time() < deadline, "the save was never reached"
            time.sleep(0.02)
        os.kill(pid, signal.SIGKILL)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    assert _state(run)["epoch"] == 1  # the previous checkpoint, whole
    assert temps(run) != []  # what the killed process left (nothing cleans up after -9)
    _resume_and_compare(run, reference)
