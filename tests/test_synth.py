"""detect synth: determinism, label correctness against the drawn pixels, balance, shapes, video."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

import detect.synth as synth
from detect.errors import DetectError
from detect.synth import CLASS_NAMES, SynthConfig, make_synth


def read_labels(folder: Path) -> dict[str, np.ndarray]:
    out = {}
    for f in sorted(folder.glob("*.txt")):
        rows = [line.split() for line in f.read_text().splitlines()]
        assert all(len(r) == 5 for r in rows), f
        out[f.stem] = np.array(rows, dtype=np.float64).reshape(-1, 5)
    return out


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synth") / "ds"
    make_synth(out, SynthConfig(train=80, val=20, seed=7, video=True, frames=12, fps=12))
    return out


def test_layout_and_yaml(dataset):
    data = yaml.safe_load((dataset / "data.yaml").read_text())
    assert Path(data["path"]) == dataset
    assert data["names"] == dict(enumerate(CLASS_NAMES))
    for split, n in [("train", 80), ("val", 20)]:
        images = sorted((dataset / data[split]).glob("*.jpg"))
        labels = sorted((dataset / "labels" / split).glob("*.txt"))
        assert [p.stem for p in images] == [p.stem for p in labels] and len(images) == n
        img = cv2.imread(str(images[0]))
        assert img.shape == (320, 320, 3)
    assert not list(dataset.parent.glob(".*tmp"))  # the temp folder was renamed, not left


def test_labels_valid_counts_and_sizes(dataset):
    rows = np.concatenate(list(read_labels(dataset / "labels" / "train").values()))
    per_image = [len(v) for v in read_labels(dataset / "labels" / "val").values()]
    assert min(per_image) >= 1 and max(per_image) <= 8
    cls, cx, cy, w, h = rows.T
    assert set(np.unique(cls).astype(int)) == set(range(6))
    x1, y1, x2, y2 = cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2
    assert (x1 >= -1e-6).all() and (y1 >= -1e-6).all()
    assert (x2 <= 1 + 1e-6).all() and (y2 <= 1 + 1e-6).all() and (w > 0).all() and (h > 0).all()
    side = np.maximum(w, h)
    assert side.min() < 0.07 and side.max() > 0.35  # ~4% .. ~50% of the image side
    # class balance: every class within +-40% of the mean count
    counts = np.bincount(cls.astype(int), minlength=6)
    assert counts.min() > 0.6 * counts.mean() and counts.max() < 1.4 * counts.mean()


def test_aspect_ratios_differ_between_classes(dataset):
    rows = np.concatenate(list(read_labels(dataset / "labels" / "train").values()))
    ar = rows[:, 4] / rows[:, 3]  # h / w
    med = {name: np.median(ar[rows[:, 0] == c]) for c, name in enumerate(CLASS_NAMES)}
    assert med["tall_bar"] > 2.0 and med["wide_ellipse"] < 0.5
    for name in ["circle", "square", "star"]:
        assert 0.85 < med[name] < 1.2, (name, med[name])
    assert med["triangle"] < 0.95  # wider than high
    assert (ar[rows[:, 0] == 3] > 1.5).all() and (ar[rows[:, 0] == 4] < 0.7).all()


def test_deterministic_by_seed(tmp_path, dataset):
    cfg = SynthConfig(train=5, val=2, seed=7)
    a = make_synth(tmp_path / "a", cfg)
    make_synth(tmp_path / "b", cfg)
    make_synth(tmp_path / "c", SynthConfig(train=5, val=2, seed=8))
    files = sorted(p.relative_to(a.out) for p in a.out.rglob("*") if p.suffix in {".txt", ".jpg"})
    assert len(files) == 14
    for f in files:
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes(), f
        # image i of a split does not depend on how many images the set has
        assert (tmp_path / "a" / f).read_bytes() == (dataset / f).read_bytes(), f
    lab = lambda d: [(tmp_path / d / f).read_bytes() for f in files if f.suffix == ".txt"]  # noqa: E731
    assert lab("a") != lab("c")


@pytest.mark.parametrize("cls", range(6))
def test_label_box_is_the_drawn_shape(cls):
    """Draw one shape on a plain background: the box equals the painted pixels' bounding box and
    the polygon's geometric extent within 1 px."""
    rng = np.random.default_rng(cls)
    for scale in (14.0, 60.0, 150.0):
        img = np.zeros((320, 320, 3), np.uint8)
        pts = synth.shape_polygon(cls, scale, rng)
        mask, x0, y0 = synth.polygon_mask(pts, 160.3, 150.7)
        pat = {"kind": "solid", "outline": False}
        box = synth.draw_object(img, mask, x0, y0, np.array([255.0, 255.0, 255.0]), pat)
        ys, xs = np.nonzero(img.any(2))
        np.testing.assert_array_equal(box, [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
        geo = np.concatenate(((pts + (160.3, 150.7)).min(0), (pts + (160.3, 150.7)).max(0)))
        assert np.abs(box - geo).max() <= 1.5  # pixel edges vs vertex coordinates
        longest = max(box[2] - box[0], box[3] - box[1])
        assert 0.8 * scale <= longest <= 1.45 * scale  # rotation widens squares and stars


def test_rendered_labels_match_pixels(monkeypatch):
    """The full renderer with background, clutter and noise switched off: every label file line
    is an object whose pixels are inside its box, and the union of boxes holds all pixels."""
    monkeypatch.setattr(synth, "_background", lambda rng, s: np.zeros((s, s, 3), np.uint8))
    monkeypatch.setattr(synth, "_clutter", lambda *a, **k: None)
    monkeypatch.setattr(synth, "_finish", lambda img, rng, seed: img)
    monkeypatch.setattr(synth, "_contrasting_color", lambda rng, under: np.full(3, 200.0))
    cfg = SynthConfig(min_objects=1, max_objects=1)
    for i in range(12):
        img, boxes, classes = synth.render_image(np.random.default_rng(i), cfg)
        assert boxes.shape == (1, 4) and classes.shape == (1,)
        ys, xs = np.nonzero(img.any(2))
        np.testing.assert_array_equal(boxes[0], [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
        # the text label round-trips to the same pixel box
        c, cx, cy, w, h = map(float, synth.yolo_lines(boxes, classes, 320).split())
        got = np.array([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]) * 320
        np.testing.assert_allclose(got, boxes[0], atol=0.01)
        assert int(c) == classes[0]


def test_occlusion_is_limited(monkeypatch):
    """With many objects, each keeps at least 60% of its pixels visible (checked by redrawing
    every object alone and counting how many of its pixels survive in the final image)."""
    drawn = []
    real_draw = synth.draw_object

    def spy(img, mask, x0, y0, color, pat):
        drawn.append((mask.copy(), x0, y0))
        return real_draw(img, mask, x0, y0, color, pat)

    monkeypatch.setattr(synth, "draw_object", spy)
    monkeypatch.setattr(synth, "_background", lambda rng, s: np.zeros((s, s, 3), np.uint8))
    monkeypatch.setattr(synth, "_clutter", lambda *a, **k: None)
    monkeypatch.setattr(synth, "_finish", lambda img, rng, seed: img)
    cfg = SynthConfig(min_objects=8, max_objects=8, min_scale=0.2)
    for i in range(6):
        drawn.clear()
        synth.render_image(np.random.default_rng(i), cfg)
        owner = np.full((320, 320), -1)
        for k, (m, x0, y0) in enumerate(drawn):
            owner[y0 : y0 + m.shape[0], x0 : x0 + m.shape[1]][m > 0] = k
        for k, (m, x0, y0) in enumerate(drawn):
            vis = (owner[y0 : y0 + m.shape[0], x0 : x0 + m.shape[1]][m > 0] == k).mean()
            assert vis >= 0.6 - 1e-9


def test_easy_preset_has_no_clutter_and_larger_objects(tmp_path, monkeypatch):
    def no_clutter(*a, **k):
        raise AssertionError("--easy drew clutter")

    monkeypatch.setattr(synth, "_clutter", no_clutter)
    make_synth(tmp_path / "e", SynthConfig(train=30, val=5, seed=3, **synth.EASY))
    labels = read_labels(tmp_path / "e" / "labels" / "train")
    assert max(len(v) for v in labels.values()) <= 5
    rows = np.concatenate(list(labels.values()))
    # longest side >= 10% of the image (minus rounding and the <= 10% occlusion of a corner)
    assert np.maximum(rows[:, 3], rows[:, 4]).min() >= 0.09


def test_video(dataset):
    cap = cv2.VideoCapture(str(dataset / "video.mp4"))
    assert cap.isOpened()
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 12
    assert cap.get(cv2.CAP_PROP_FPS) == pytest.approx(12, abs=0.01)
    n = 0
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        assert frame.shape == (320, 320, 3)
        n += 1
    cap.release()
    assert n == 12
    labels = read_labels(dataset / "video_labels")
    assert list(labels) == [f"frame_{i:06d}" for i in range(1, 13)]
    first, last = labels["frame_000001"], labels["frame_000012"]
    assert len(first) >= 3 and not np.array_equal(first[:, 1:3], last[:, 1:3])  # they move
    allrows = np.concatenate(list(labels.values()))
    assert (allrows[:, 1:] >= 0).all() and (allrows[:, 1:] <= 1).all()


def test_refuses_nonempty_out_and_bad_options(tmp_path):
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("mine")
    with pytest.raises(DetectError, match="not empty"):
        make_synth(tmp_path / "full", SynthConfig(train=1, val=1))
    assert (tmp_path / "full" / "keep.txt").read_text() == "mine"
    with pytest.raises(DetectError):
        make_synth(tmp_path / "x", SynthConfig(train=0, val=1))
    (tmp_path / "empty").mkdir()  # an existing empty folder is fine
    s = make_synth(tmp_path / "empty", SynthConfig(train=1, val=1, size=64))
    assert s.images == {"train": 1, "val": 1} and (tmp_path / "empty" / "data.yaml").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty", "full"]  # no temp left


def test_cli(tmp_path):
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "detect",
            "synth",
            str(tmp_path / "d"),
            "--train",
            "4",
            "--val",
            "2",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    assert "tall_bar" in r.stdout and "4 train, 2 val" in r.stdout
    assert len(list((tmp_path / "d" / "images" / "train").glob("*.jpg"))) == 4
    easy = [sys.executable, "-m", "detect", "synth", str(tmp_path / "e"), "--easy", "--val", "2"]
    r = subprocess.run([*easy, "--train", "4"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert all(len(f.read_text().splitlines()) <= 5 for f in (tmp_path / "e").rglob("*.txt"))
    r = subprocess.run(
        [sys.executable, "-m", "detect", "synth", str(tmp_path / "d")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 1 and r.stderr.startswith("error: ") and "not empty" in r.stderr
