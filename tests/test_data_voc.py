"""VOC reader: the real VOC 2007 annotations against a plain xml.etree count, bad data, fuzzing."""

from __future__ import annotations

import time
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from detect.data import DetectError, load_dataset
from detect.data.image import image_size


def _plain_count(root: Path, split: str):
    """Objects, difficult objects and boxes of a split, and the class names of the whole folder."""
    ids = (root / "ImageSets/Main" / f"{split}.txt").read_text().split()
    n = diff = 0
    boxes = []
    for i in ids:
        for obj in ET.parse(root / "Annotations" / f"{i}.xml").getroot().iter("object"):
            n += 1
            diff += int(obj.find("difficult").text)
            bb = obj.find("bndbox")
            boxes.append([float(bb.find(t).text) - 1 for t in ("xmin", "ymin", "xmax", "ymax")])
    names = set()
    for f in (root / "Annotations").glob("*.xml"):
        names |= {o.find("name").text for o in ET.parse(f).getroot().iter("object")}
    return ids, n, diff, sorted(names), np.array(boxes, np.float32)


@pytest.fixture(scope="module")
def trainval(voc2007):
    t = time.perf_counter()
    rec = load_dataset(voc2007, "trainval")
    print(f"trainval read in {time.perf_counter() - t:.2f} s")  # ~0.3-0.5 s on an idle dev box
    return rec


def test_voc2007_trainval_matches_plain_count(voc2007, trainval):
    rec = trainval
    ids, n, diff, names, boxes = _plain_count(voc2007, "trainval")
    assert rec.format == "voc" and rec.split == "trainval"
    assert len(rec.images) == len(ids) == 5011
    assert rec.num_boxes() == n == 15662
    assert sum(int(im.difficult.sum()) for im in rec.images) == diff
    assert rec.names == names and len(names) == 20
    assert rec.names[0] == "aeroplane" and rec.names[19] == "tvmonitor"
    assert rec.category_ids == list(range(20))
    np.testing.assert_array_equal(np.concatenate([im.boxes for im in rec.images]), boxes)
    assert [im.id for im in rec.images] == [int(i) for i in ids]
    assert rec.report.bad_lines == rec.report.bad_images == rec.report.missing_labels == 0


def test_voc2007_first_file_by_hand(voc2007, trainval):
    rec = trainval
    im = next(r for r in rec.images if r.id == 5)  # 000005.xml: 500x375, 5 chairs
    assert (im.width, im.height) == (500, 375)
    assert im.path == voc2007 / "JPEGImages" / "000005.jpg"
    np.testing.assert_array_equal(im.boxes[0], [262, 210, 323, 338])  # 263 211 324 339, minus 1
    assert list(im.classes) == [rec.names.index("chair")] * 5
    np.testing.assert_allclose(im.area[0], 61 * 128)


def test_voc2007_train600_images_present(voc2007):
    rec = load_dataset(voc2007, "train600")
    assert len(rec.images) == 600
    for im in rec.images[::60]:
        assert im.path.is_file()
        assert image_size(im.path) == (im.width, im.height)


def test_missing_split_lists_available(voc2007):
    with pytest.raises(DetectError, match=r"train600.*trainval|trainval.*val"):
        load_dataset(voc2007, "nosuch")


def _xml(objects, size=(100, 80), filename="a.jpg"):
    objs = "".join(
        f"<object><name>{n}</name><difficult>{d}</difficult><bndbox><xmin>{b[0]}</xmin>"
        f"<ymin>{b[1]}</ymin><xmax>{b[2]}</xmax><ymax>{b[3]}</ymax></bndbox></object>"
        for n, b, d in objects
    )
    sz = f"<size><width>{size[0]}</width><height>{size[1]}</height></size>" if size else ""
    return f"<annotation><filename>{filename}</filename>{sz}{objs}</annotation>"


def _voc(tmp: Path, files: dict[str, str], split=None, classes=None) -> Path:
    (tmp / "Annotations").mkdir(parents=True, exist_ok=True)
    (tmp / "ImageSets/Main").mkdir(parents=True, exist_ok=True)
    for stem, text in files.items():
        (tmp / "Annotations" / f"{stem}.xml").write_text(text)
    (tmp / "ImageSets/Main/train.txt").write_text("\n".join(split or files) + "\n")
    if classes is not None:
        (tmp / "classes.txt").write_text("\n".join(classes) + "\n")
    return tmp


def test_small_voc_folder(tmp_path):
    root = _voc(
        tmp_path,
        {
            "000001": _xml([("dog", (1, 1, 50, 40), 0), ("cat", (10, 10, 120, 90), 1)]),
            "b_2": _xml([("zebra", (5, 5, 5, 20), 0)], filename="b_2.png"),
            "unused": _xml([("aardvark", (1, 1, 2, 2), 0)]),
        },
        split=["000001", "b_2"],
    )
    rec = load_dataset(root, "train")
    # Whole-folder names, including a class only in a file outside the split.
    assert rec.names == ["aardvark", "cat", "dog", "zebra"]
    a, b = rec.images
    assert a.id == 1 and b.id == "b_2"
    assert b.path.name == "b_2.png"
    np.testing.assert_array_equal(a.boxes, [[0, 0, 49, 39], [9, 9, 100, 80]])  # 2nd clipped
    assert list(a.classes) == [2, 1] and list(a.difficult) == [False, True]
    np.testing.assert_array_equal(b.boxes, [[4, 4, 4, 19]])  # zero-size: kept, counted
    assert rec.report.clipped_boxes == 1 and rec.report.zero_size_boxes == 1


def test_classes_txt_and_unknown_class(tmp_path):
    root = _voc(tmp_path, {"1": _xml([("dog", (1, 1, 5, 5), 0)])}, classes=["person", "dog"])
    rec = load_dataset(root, "train")
    assert rec.names == ["person", "dog"] and list(rec.images[0].classes) == [1]
    (root / "classes.txt").write_text("person\n")
    with pytest.raises(DetectError, match=r"1\.xml.*dog"):
        load_dataset(root, "train")


def test_bad_voc_data(tmp_path):
    root = _voc(
        tmp_path,
        {
            "1": "<annotation><size>",  # malformed
            "2": _xml([("dog", ("x", 1, 5, 5), 0), ("dog", (1, 1, 5, 5), 0)]),
        },
        split=["2", "3"],
    )
    with pytest.raises(DetectError, match=r"1\.xml"):
        load_dataset(root, "train")  # the whole-folder scan reads 1.xml
    (root / "classes.txt").write_text("dog\n")
    rec = load_dataset(root, "train")  # now only the split is parsed
    assert len(rec.images) == 1 and len(rec.images[0].boxes) == 1
    assert rec.report.bad_lines == 1 and rec.report.missing_labels == 1
    assert any("2.xml" in m for m in rec.report.messages)


def test_missing_size_uses_image_header_else_skips(tmp_path):
    import cv2

    root = _voc(tmp_path, {"1": _xml([], size=None), "2": _xml([], size=None, filename="2.jpg")})
    (root / "JPEGImages").mkdir()
    cv2.imwrite(str(root / "JPEGImages/a.jpg"), np.zeros((7, 9, 3), np.uint8))
    rec = load_dataset(root, "train")
    assert [(im.width, im.height) for im in rec.images] == [(9, 7)]
    assert rec.report.bad_images == 1
    (root / "JPEGImages/a.jpg").unlink()
    with pytest.raises(DetectError, match="no images"):
        load_dataset(root, "train")


_tag = st.sampled_from(
    [
        "annotation",
        "object",
        "name",
        "bndbox",
        "xmin",
        "ymin",
        "xmax",
        "ymax",
        "size",
        "width",
        "height",
        "difficult",
        "filename",
    ]
)
_leaf = st.one_of(st.integers(-5, 300).map(str), st.floats().map(str), st.text(max_size=6))
_element = st.recursive(
    st.tuples(_tag, _leaf).map(lambda t: f"<{t[0]}>{t[1]}</{t[0]}>".replace("&", "")),
    lambda kids: st.tuples(_tag, st.lists(kids, max_size=4)).map(
        lambda t: f"<{t[0]}>{''.join(t[1])}</{t[0]}>"
    ),
    max_leaves=12,
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    doc=st.one_of(_element, st.text(max_size=80), st.binary(max_size=80).map(repr)),
    with_classes=st.booleans(),
)
def test_fuzz_voc_raises_only_detect_error(tmp_path, doc, with_classes):
    root = _voc(tmp_path, {"1": doc}, classes=["dog", "cat"] if with_classes else None)
    if not with_classes:
        (root / "classes.txt").unlink(missing_ok=True)
    try:
        rec = load_dataset(root, "train")
    except DetectError:
        return
    for im in rec.images:
        assert im.boxes.shape == (len(im.classes), 4) and im.width > 0 and im.height > 0
        assert ((im.classes >= 0) & (im.classes < len(rec.names))).all()
