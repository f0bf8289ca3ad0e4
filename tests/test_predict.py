"""Prediction library: exact mapping back to original pixels, records, sources, outputs.

Models here are tiny fakes (a fixed decoded output, or one that finds a coloured rectangle in its
input), so every expected box is computed by hand and the tests run in well under a second each.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
import torch
from torch import nn

from detect.data._common import make_record
from detect.data.types import DatasetRecords
from detect.errors import DetectError
from detect.inference import PredictConfig, run_predict
from detect.inference.dataset import predict_records
from detect.inference.draw import PALETTE_BGR, draw_detections, text_color
from detect.inference.predictor import Predictor
from detect.inference.sources import expand_sources, iter_frames


class FixedModel(nn.Module):
    """Returns the same decoded rows `(x1, y1, x2, y2, obj, p_1..p_C)` for every image."""

    def __init__(self, rows, imgsz: int = 320, names=("a", "b")) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.zeros(1))
        self.cfg = SimpleNamespace(arch="tiny", imgsz=imgsz, names=list(names))
        self.rows = torch.tensor(rows, dtype=torch.float32)  # [N,5+C]
        self.calls: list[tuple[int, ...]] = []
        self.modes: list[bool] = []

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        self.calls.append(tuple(x.shape))
        self.modes.append(self.training)
        return self.rows.expand(x.shape[0], -1, -1).clone()  # [B,N,5+C]


class RedBoxModel(nn.Module):
    """Finds the pure red pixels of its RGB input and returns their bounding box as class 0."""

    def __init__(self, imgsz: int) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.zeros(1))
        self.cfg = SimpleNamespace(arch="tiny", imgsz=imgsz, names=["red"])

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        out = []
        for im in x:  # [3,S,S] RGB 0..1
            red = (im[0] > 0.8) & (im[1] < 0.2) & (im[2] < 0.2)  # [S,S]
            ys, xs = red.nonzero(as_tuple=True)
            box = [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]  # pixel edges
            out.append(torch.tensor([[*map(float, box), 1.0, 1.0]]))
        return torch.stack(out)  # [B,1,6]


def _img(h: int, w: int, value: int = 60) -> np.ndarray:
    return np.full((h, w, 3), value, np.uint8)


# --------------------------------------------------------------------------- mapping back


def test_boxes_map_back_to_original_pixels_exactly():
    # 640x480 at 320: scale 0.5, the image is 320x240 with 40 px of padding at the top.
    rows = [
        [10, 50, 110, 90, 1.0, 0.9, 0.1],  # -> (20, 20, 220, 100) class 0, score 0.9
        [300, 20, 330, 60, 0.5, 0.2, 0.8],  # -> (600, -40, 660, 40) clipped to (600, 0, 640, 40)
    ]
    p = Predictor(FixedModel(rows), PredictConfig(conf=0.1, rect=False))
    out = p([_img(480, 640)])[0]
    np.testing.assert_allclose(out[0], [20, 20, 220, 100, 0.9, 0], atol=1e-5)
    np.testing.assert_allclose(out[1], [600, 0, 640, 40, 0.4, 1], atol=1e-5)

    # 333 wide x 517 tall: scale 320/517, width round(333 * scale) = 206, left pad (320-206)//2.
    scale, padx = 320 / 517, (320 - 206) // 2
    rows = [[60, 10, 250, 300, 1.0, 1.0, 0.0]]
    out = Predictor(FixedModel(rows), PredictConfig(conf=0.1, rect=False))([_img(517, 333)])[0]
    expect = [(60 - padx) / scale, 10 / scale, (250 - padx) / scale, 300 / scale]
    np.testing.assert_allclose(out[0, :4], expect, atol=1e-3)


def test_letterbox_round_trip_finds_drawn_box_in_each_image_of_a_batch():
    # BGR (0, 0, 255) is red: the model sees RGB, so this also checks the channel order.
    sizes_boxes = [((480, 640), (100, 60, 300, 200)), ((300, 200), (20, 150, 180, 290))]
    images = []
    for (h, w), (x1, y1, x2, y2) in sizes_boxes:
        img = _img(h, w)
        img[y1:y2, x1:x2] = (0, 0, 255)
        images.append(img)
    p = Predictor(RedBoxModel(320), PredictConfig(conf=0.5, batch=2))
    out = p(images)
    for (hw, box), d in zip(sizes_boxes, out, strict=True):
        scale = 320 / max(hw)
        assert d.shape == (1, 6)
        np.testing.assert_allclose(d[0, :4], box, atol=1.0 / scale + 0.5)


def test_predict_records_indices_bad_image_and_train_mode_restored(tmp_path):
    recs = []
    for i, (h, w) in enumerate([(480, 640), (100, 100), (240, 320)]):
        path = tmp_path / f"{i}.png"
        cv2.imwrite(str(path), _img(h, w))
        recs.append(make_record(path, i, w, h, [], []))
    bad = tmp_path / "bad.jpg"
    bad.write_text("not an image")
    recs.insert(1, make_record(bad, "bad", 10, 10, [], []))
    records = DatasetRecords(["a", "b"], recs, [0, 1], "yaml", tmp_path, "val")

    model = FixedModel([[0, 0, 320, 320, 1.0, 0.3, 0.7]])
    model.train()
    seen = []
    dets = predict_records(records, model, batch=2, callback=lambda d, t: seen.append((d, t)))
    assert model.training and model.modes and not any(model.modes)  # eval inside, train after
    assert dets.image.tolist() == [0, 2, 3]  # the unreadable image (index 1) is skipped
    assert records.report.bad_images == 1 and "bad.jpg" in records.report.messages[0]
    # The whole letterbox square maps back to the whole image.
    np.testing.assert_allclose(dets.boxes, [[0, 0, 640, 480], [0, 0, 100, 100], [0, 0, 320, 240]])
    np.testing.assert_allclose(dets.scores, 0.7)
    assert dets.classes.tolist() == [1, 1, 1]
    assert seen[-1] == (4, 4)


def test_predict_records_uses_imgsz_and_batch(tmp_path):
    recs = []
    for i in range(5):
        path = tmp_path / f"{i}.jpg"
        cv2.imwrite(str(path), _img(50, 80))
        recs.append(make_record(path, i, 80, 50, [], []))
    records = DatasetRecords(["a"], recs, [0], "yaml", tmp_path, "val")
    model = FixedModel([[0, 0, 1, 1, 1.0, 1.0]], names=["a"])
    predict_records(records, model, imgsz=96, batch=2)
    # 80 x 50 at 96: resized to 96 x 60, the rectangular letterbox pads it to 96 x 64
    assert model.calls == [(2, 3, 64, 96), (2, 3, 64, 96), (1, 3, 64, 96)]


# --------------------------------------------------------------------------- sources


def test_expand_sources_errors(tmp_path):
    with pytest.raises(DetectError, match="nope.jpg"):
        expand_sources([str(tmp_path / "nope.jpg")])
    (tmp_path / "empty").mkdir()
    with pytest.raises(DetectError, match="no images or videos in folder"):
        expand_sources([str(tmp_path / "empty")])
    with pytest.raises(DetectError, match="no files match"):
        expand_sources([str(tmp_path / "*.png")])


def test_expand_sources_folders_globs_names(tmp_path):
    for rel in ["a/x.jpg", "a/sub/y.png", "b/x.jpg", "a/notes.txt", "a/clip.mp4"]:
        p = tmp_path / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"")
    srcs = expand_sources([str(tmp_path / "a"), str(tmp_path / "b" / "*.jpg"), "0"])
    assert [(s.kind, s.rel.as_posix()) for s in srcs] == [
        ("video", "clip.mp4"),
        ("image", "sub/y.png"),
        ("image", "x.jpg"),
        ("image", "x-2.jpg"),  # b/x.jpg would overwrite a/x.jpg
        ("camera", "camera0.mp4"),
    ]
    srcs = expand_sources([str(tmp_path / "**" / "*.jpg")])
    assert sorted(s.rel.as_posix() for s in srcs) == ["a/x.jpg", "b/x.jpg"]


def _write_video(path: Path, frames: int, fps: float, size=(160, 120)) -> None:
    w, h = size
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    for i in range(frames):
        f = np.full((h, w, 3), 40, np.uint8)
        cv2.rectangle(f, (5 + i, 10), (50 + i, 60), (0, 0, 255), -1)
        vw.write(f)
    vw.release()


def test_iter_frames_video_stride_and_broken_video(tmp_path):
    _write_video(tmp_path / "v.mp4", 10, 10.0)
    (tmp_path / "broken.mp4").write_text("not a video")
    srcs = expand_sources([str(tmp_path / "v.mp4"), str(tmp_path / "broken.mp4")])
    frames = list(iter_frames(srcs, vid_stride=3))
    assert [(f.source.rel.name, f.index, f.error is None) for f in frames] == [
        ("v.mp4", 0, True),
        ("v.mp4", 3, True),
        ("v.mp4", 6, True),
        ("v.mp4", 9, True),
        ("broken.mp4", 0, False),
    ]
    assert frames[0].image.shape == (120, 160, 3)


# --------------------------------------------------------------------------- run_predict outputs


def _read_video(path: Path) -> tuple[int, float, int, int]:
    cap = cv2.VideoCapture(str(path))
    n = 0
    while cap.read()[0]:
        n += 1
    fps, w, h = cap.get(cv2.CAP_PROP_FPS), cap.get(3), cap.get(4)
    cap.release()
    return n, fps, int(w), int(h)


def test_video_in_video_out_same_frames_fps_size(tmp_path):
    _write_video(tmp_path / "clip.mp4", 23, 12.0)
    model = FixedModel([[0, 0, 320, 320, 1.0, 1.0, 0.0]])
    s = run_predict([str(tmp_path / "clip.mp4")], model, out=tmp_path / "run", save_txt=True)
    assert (s.frames, s.failed, s.saved_videos) == (23, [], 1)
    assert _read_video(s.run_dir / "clip.mp4") == (23, 12.0, 160, 120)
    assert len(list((s.run_dir / "labels").glob("clip_*.txt"))) == 23
    # --vid-stride 5: frames 0, 5, 10, 15, 20 predicted and written (ultralytics' behaviour).
    s = run_predict([str(tmp_path / "clip.mp4")], model, out=tmp_path / "run", vid_stride=5)
    assert s.run_dir.name == "run-2"
    assert _read_video(s.run_dir / "clip.mp4") == (5, 12.0, 160, 120)


def test_mixed_sources_corrupt_file_json_and_txt(tmp_path):
    folder = tmp_path / "imgs"
    (folder / "deep").mkdir(parents=True)
    cv2.imwrite(str(folder / "000123.jpg"), _img(480, 640))
    cv2.imwrite(str(folder / "deep" / "cat.png"), _img(240, 320))
    (folder / "text.jpg").write_text("I am text")  # reported as unreadable, the run goes on
    single = tmp_path / "one.bmp"
    cv2.imwrite(str(single), _img(100, 200))
    _write_video(tmp_path / "v.mp4", 4, 8.0)

    rows = [[10, 50, 110, 90, 1.0, 0.9, 0.1], [0, 0, 4, 4, 1.0, 0.01, 0.01]]
    model = FixedModel(rows, names=["cat", "dog"])
    buf = io.StringIO()
    seen = []
    s = run_predict(
        [str(folder), str(single), str(tmp_path / "v.mp4")],
        model,
        PredictConfig(conf=0.25, batch=3, rect=False),
        out=tmp_path / "runs" / "predict",
        save_txt=True,
        save_json=buf,
        callback=lambda d, t, n: seen.append((d, t)),
    )
    assert len(s.failed) == 1 and "text.jpg" in s.failed[0]
    assert [(x.arg.split("/")[-1], x.kind, x.frames, x.failed) for x in s.sources] == [
        ("imgs", "folder", 2, 1),
        ("one.bmp", "image", 1, 0),
        ("v.mp4", "video", 4, 0),
    ]
    assert s.frames == 7 and s.detections == 7 and s.class_counts.tolist() == [7, 0]
    assert seen[-1] == (8, 8)  # 3 folder files + 1 image + 4 frames
    for name in ["000123.jpg", "deep/cat.png", "one.bmp", "v.mp4"]:
        assert (s.run_dir / name).is_file(), name

    rows_json = json.loads(buf.getvalue())
    assert len(rows_json) == 7
    # file_name: the path below the inputs' common folder (ids are unique among the run's files)
    first = next(r for r in rows_json if r["file_name"] == "imgs/000123.jpg")
    # (10, 50, 110, 90) at scale 0.5, top pad 40 -> (20, 20, 220, 100) -> xywh (20, 20, 200, 80)
    assert first == {
        "image_id": 123,
        "file_name": "imgs/000123.jpg",
        "category_id": 0,
        "bbox": [20.0, 20.0, 200.0, 80.0],
        "score": 0.9,
    }
    assert {r["image_id"] for r in rows_json} >= {"cat", "one", "v_0", "v_3"}

    # `class cx cy w h` (trainable as labels), normalised by the original 640x480
    line = (s.run_dir / "labels" / "000123.txt").read_text().split()
    np.testing.assert_allclose([float(v) for v in line], [0, 120 / 640, 60 / 480, 200 / 640,
                                                          80 / 480], atol=1e-6)  # fmt: skip
    assert (s.run_dir / "labels" / "v_3.txt").is_file()


def test_no_images_writes_no_run_folder_and_json_file(tmp_path):
    cv2.imwrite(str(tmp_path / "a.jpg"), _img(64, 64))
    model = FixedModel([[0, 0, 8, 8, 1.0, 1.0, 0.0]])
    s = run_predict(
        [str(tmp_path / "a.jpg")],
        model,
        out=tmp_path / "run",
        save_images=False,
        save_json=tmp_path / "p.json",
    )
    assert s.run_dir is None and not (tmp_path / "run").exists()
    assert json.loads((tmp_path / "p.json").read_text())[0]["image_id"] == "a"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.jpg", "p.json"]  # no temp left


def test_draw_colours_and_readable_text():
    img = _img(200, 300, 255)
    dets = np.array([[50, 60, 150, 160, 0.87, 3]], np.float32)
    draw_detections(img, dets, ["a", "b", "c", "d"], line_width=2)
    c = PALETTE_BGR[3]
    assert tuple(img[110, 50]) == c and tuple(img[60, 100]) != (255, 255, 255)  # box edges
    label = img[60 - 20 : 60, 50:100].reshape(-1, 3)  # label sits above the box
    colours = {tuple(p) for p in label}
    assert c in colours and text_color(c) in colours
    assert text_color((255, 255, 255)) == (0, 0, 0) and text_color((0, 0, 0)) == (255, 255, 255)


def test_sliding_methods_route_through_the_same_outputs(tmp_path):
    from detect.models.window import WindowConfig, build_window_model

    torch.manual_seed(0)
    win = build_window_model(WindowConfig(num_classes=2, names=["p", "q"])).eval()
    rng = np.random.default_rng(0)
    cv2.imwrite(str(tmp_path / "7.png"), rng.integers(0, 255, (80, 96, 3), dtype=np.uint8))
    rows = {}
    for method in ("sliding", "conv-sliding"):
        buf = io.StringIO()
        cfg = PredictConfig(method=method, conf=0.0, scales=[32, 48], max_det=1000)
        s = run_predict([str(tmp_path / "7.png")], win, cfg, out=tmp_path / method, save_json=buf)
        assert s.frames == 1 and s.detections > 0 and s.method == method
        assert (s.run_dir / "7.png").is_file()
        rows[method] = json.loads(buf.getvalue())
    a, b = rows["sliding"], rows["conv-sliding"]
    assert [(r["bbox"], r["category_id"]) for r in a] == [(r["bbox"], r["category_id"]) for r in b]
    np.testing.assert_allclose([r["score"] for r in a], [r["score"] for r in b], atol=1e-4)
    assert a[0]["image_id"] == 7 and all(0 <= r["bbox"][0] <= 96 for r in a)

    with pytest.raises(DetectError, match="window classifier"):
        Predictor(win, PredictConfig(method="yolo"))
    with pytest.raises(DetectError, match="needs window classifier weights"):
        Predictor(FixedModel([[0, 0, 1, 1, 1, 1, 0]]), PredictConfig(method="sliding"))


def test_classes_filter_max_det_and_conf():
    rows = [
        [0, 0, 10, 10, 1.0, 0.9, 0.1],  # class 0, 0.9
        [50, 50, 60, 60, 1.0, 0.2, 0.8],  # class 1, 0.8
        [100, 100, 110, 110, 1.0, 0.3, 0.7],  # class 1, 0.7
        [200, 200, 210, 210, 1.0, 0.1, 0.2],  # class 1, 0.2: under conf
    ]
    img = [_img(320, 320)]
    out = Predictor(FixedModel(rows), PredictConfig(conf=0.25, classes=[1]))(img)[0]
    np.testing.assert_allclose(out[:, 4:], [[0.8, 1], [0.7, 1]], atol=1e-6)
    out = Predictor(FixedModel(rows), PredictConfig(conf=0.25, max_det=2))(img)[0]
    np.testing.assert_allclose(out[:, 4], [0.9, 0.8], atol=1e-6)


def test_stream_url_from_a_local_server(tmp_path):
    """An http:// video is read through OpenCV as a stream: every frame predicted, an annotated
    video written; a URL nothing answers is one failed input, not a crash."""
    import functools
    import http.server
    import socket
    import threading

    w = cv2.VideoWriter(str(tmp_path / "clip.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 10.0,
                        (64, 48))  # fmt: skip
    for i in range(7):
        w.write(_img(48, 64, 20 * i))
    w.release()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    handler.log_message = lambda *a: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/clip.avi"
        model = FixedModel([[0, 0, 32, 32, 1.0, 1.0, 0.0]])
        buf = io.StringIO()
        s = run_predict([url, f"http://127.0.0.1:{dead}/none.avi"], model,
                        out=tmp_path / "run", save_json=buf)  # fmt: skip
    finally:
        server.shutdown()
        server.server_close()
    assert [(x.kind, x.frames, x.failed) for x in s.sources] == [("stream", 7, 0), ("stream", 0, 1)]
    assert "cannot open stream" in s.failed[0]
    assert {r["image_id"] for r in json.loads(buf.getvalue())} == {f"clip_{i}" for i in range(7)}
    assert _read_video(s.run_dir / "clip.mp4")[:2] == (7, 10.0)  # the stream's own frame rate
