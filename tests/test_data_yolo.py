"""Ultralytics YAML reader and image headers: layouts, every kind of bad data, fuzzing."""

from __future__ import annotations

import struct
from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from detect.data import DetectError, image_size, load_dataset, read_image
from detect.data.yolo import label_path


def _img(path: Path, w: int, h: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), np.full((h, w, 3), 80, np.uint8))
    return path


def _label(img: Path, text: str) -> None:
    lab = label_path(img)
    lab.parent.mkdir(parents=True, exist_ok=True)
    lab.write_text(text)


@pytest.mark.parametrize("ext", [".jpg", ".png", ".bmp", ".webp", ".tif"])
def test_image_size_matches_decode(tmp_path, ext):
    for w, h in [(1, 1), (37, 21), (640, 480), (300, 1000)]:
        p = _img(tmp_path / f"x{w}{ext}", w, h)
        assert image_size(p) == (w, h) == read_image(p).shape[1::-1]


def _with_orientation(jpg: bytes, orientation: int) -> bytes:
    """Insert an EXIF APP1 segment with the Orientation tag after the SOI marker."""
    ifd = struct.pack("<H", 1) + struct.pack("<HHIHH", 0x0112, 3, 1, orientation, 0)
    tiff = b"II*\x00" + struct.pack("<I", 8) + ifd + struct.pack("<I", 0)
    payload = b"Exif\x00\x00" + tiff
    return jpg[:2] + b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload + jpg[2:]


@pytest.mark.parametrize("orientation", [1, 3, 6, 8])
def test_jpeg_exif_orientation_matches_opencv(tmp_path, orientation):
    ok, buf = cv2.imencode(".jpg", np.zeros((20, 50, 3), np.uint8))
    p = tmp_path / "o.jpg"
    p.write_bytes(_with_orientation(buf.tobytes(), orientation))
    assert image_size(p) == read_image(p).shape[1::-1]


@settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    head=st.sampled_from(
        [
            b"",
            b"\xff\xd8",
            b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR",
            b"BM",
            b"RIFF\x00\x00\x00\x00WEBPVP8X",
            b"II*\x00",
            b"GIF89a",
        ]
    ),
    tail=st.binary(max_size=64),
)
def test_fuzz_image_header_raises_only_detect_error(tmp_path, head, tail):
    p = tmp_path / "f.jpg"
    p.write_bytes(head + tail)
    try:
        w, h = image_size(p)
    except DetectError as e:
        assert "f.jpg" in str(e)
        return
    assert w > 0 and h > 0


def _dataset(tmp: Path) -> Path:
    a = _img(tmp / "images/train/000001.jpg", 40, 30)
    _img(tmp / "images/train/sub/b.png", 20, 50)
    c = _img(tmp / "images/val/c.jpg", 100, 100)
    _label(a, "0 0.5 0.5 0.5 0.5\n\n1 0.25 0.5 0.5 1.0\n")
    _label(c, "1 0.5 0.5 1 1\n")
    (tmp / "data.yaml").write_text(
        "path: .\ntrain: images/train\nval: [images/val]\nnames: ['a', 'b']\n"
    )
    return tmp / "data.yaml"


def test_yaml_layout(tmp_path):
    rec = load_dataset(_dataset(tmp_path), "train")
    assert rec.format == "yaml" and rec.names == ["a", "b"] and rec.category_ids == [0, 1]
    a, b = rec.images
    assert a.id == 1 and b.id == "b" and (a.width, a.height, b.width, b.height) == (40, 30, 20, 50)
    np.testing.assert_allclose(a.boxes, [[10, 7.5, 30, 22.5], [0, 0, 20, 30]])
    np.testing.assert_array_equal(a.classes, [0, 1])
    np.testing.assert_allclose(a.area, [300, 600])
    assert len(b.boxes) == 0 and rec.report.missing_labels == 1
    val = load_dataset(tmp_path, "val")  # a folder with one YAML means that YAML
    assert [im.id for im in val.images] == ["c"]


def test_txt_list_dict_names_and_absolute_path(tmp_path):
    _dataset(tmp_path / "d")
    (tmp_path / "d/val.txt").write_text("./images/val/c.jpg\nimages/train/000001.jpg\n")
    y = tmp_path / "other.yaml"
    y.write_text(f"path: {tmp_path / 'd'}\ntrain: x\nval: val.txt\nnames: {{0: a, 2: c}}\n")
    rec = load_dataset(y, "val")
    assert rec.names == ["a", "1", "c"]
    assert [im.id for im in rec.images] == ["c", 1]
    with pytest.raises(DetectError, match=r"no split 'test' \(available: train, val\)"):
        load_dataset(y, "test")
    with pytest.raises(DetectError, match="does not exist"):
        load_dataset(y, "train")


def test_bad_labels_counted(tmp_path):
    y = _dataset(tmp_path)
    a = tmp_path / "images/train/000001.jpg"
    _label(
        a,
        "\n".join(
            [
                "0 0.5 0.5 0.5 0.5",  # good
                "0 0.5 0.5 0.5",  # wrong field count
                "0 0.25 0.5 0.1 0.2 0.9",  # a 6th (confidence) column: a label all the same
                "0 0.5 0.5 0.5 0.5",  # the first line again: kept, reported
                "0,0.5,0.5,0.5,0.5",  # commas
                "a 0.5 0.5 0.5 0.5",  # non-number
                "0 nan 0.5 0.5 0.5",  # non-finite
                "0.5 0.5 0.5 0.5 0.5",  # non-integer class
                "1 0.9 0.5 0.4 0.2",  # clipped: x2 = 1.1
                "0 0.5 0.5 0 0.2",  # zero width: kept, counted
                "1 0.1 0.1 0.3 0.1 0.3 0.3",  # polygon -> its box
            ]
        ),
    )
    (tmp_path / "images/train/corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0\x00")
    (tmp_path / "images/train/empty.png").write_bytes(b"")
    rec = load_dataset(y, "train")
    r = rec.report
    counts = (r.bad_lines, r.clipped_boxes, r.zero_size_boxes, r.bad_images)
    assert counts == (5, 1, 1, 2) and r.count("duplicate_box") == 1
    assert len(rec.images) == 2
    assert any(
        m.endswith("000001.txt:2: expected 5 fields (class cx cy w h), got 4, skipped")
        for m in r.messages
    )
    assert any("corrupt.jpg" in m for m in r.messages)
    assert any(m.endswith("000001.txt:5: fields separated by commas or semicolons (expected "
                          "spaces: class cx cy w h), skipped") for m in r.messages)  # fmt: skip
    np.testing.assert_allclose(
        rec.images[0].boxes,
        [
            [10, 7.5, 30, 22.5],
            [8, 12, 12, 18],
            [10, 7.5, 30, 22.5],
            [28, 12, 40, 18],
            [20, 12, 20, 18],
            [4, 3, 12, 9],
        ],
        atol=1e-5,
    )


def test_class_not_in_names_names_file_and_line(tmp_path):
    y = _dataset(tmp_path)
    _label(tmp_path / "images/train/000001.jpg", "0 0.5 0.5 0.1 0.1\n2 0.5 0.5 0.1 0.1\n")
    with pytest.raises(DetectError, match=r"000001\.txt:2: class 2 not in names"):
        load_dataset(y, "train")


def test_bad_yaml_and_empty_split(tmp_path):
    y = tmp_path / "d.yaml"
    y.write_text("train: [unclosed\n")
    with pytest.raises(DetectError, match="d.yaml.*malformed YAML"):
        load_dataset(y)
    y.write_text("train: imgs\n")
    with pytest.raises(DetectError, match="names"):
        load_dataset(y)
    (tmp_path / "imgs").mkdir()
    y.write_text("train: imgs\nnames: [a]\n")
    with pytest.raises(DetectError, match="no images"):
        load_dataset(y)
    with pytest.raises(DetectError, match="no such file"):
        load_dataset(tmp_path / "nope.yaml")


_num = st.one_of(st.floats(-0.5, 1.5), st.integers(-2, 4), st.sampled_from(["nan", "x", "1e999"]))
_line = st.one_of(
    st.lists(_num.map(str), min_size=0, max_size=9).map(" ".join),
    st.text(max_size=30),
)


@settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(lines=st.lists(_line, max_size=6))
def test_fuzz_labels_raise_only_detect_error(tmp_path, lines):
    y = _dataset(tmp_path)
    _label(tmp_path / "images/train/000001.jpg", "\n".join(lines))
    try:
        rec = load_dataset(y, "train")
    except DetectError as e:
        assert "000001.txt:" in str(e)
        return
    for im in rec.images:
        assert im.boxes.shape == (len(im.classes), 4)
        assert (im.boxes[:, 0::2] >= 0).all() and (im.boxes[:, 0::2] <= im.width).all()
        assert (im.boxes[:, 1::2] >= 0).all() and (im.boxes[:, 1::2] <= im.height).all()
        assert (im.boxes[:, 2:] >= im.boxes[:, :2]).all()


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(text=st.text(max_size=120))
def test_fuzz_yaml_raises_only_detect_error(tmp_path, text):
    y = tmp_path / "f.yaml"
    y.write_text(text)
    try:
        rec = load_dataset(y, "train")
    except DetectError as e:
        assert "f.yaml" in str(e)  # every error names the file at fault
        return
    assert rec.images
