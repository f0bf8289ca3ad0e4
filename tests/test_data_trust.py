"""Data you can trust: the field cases of ../shared/field-cases, and each kind of fault behind them.

Image identity (same names in sub-folders, numeric stems colliding as ints), nothing skipped in
silence (summaries, --strict), VOC as annotation tools write it, loud failures where nothing is
right, separate train / val sets, `detect check` and `detect convert`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from detect.data import load_dataset
from detect.data._common import unique_ids
from detect.data.types import ReadReport
from detect.errors import DetectError
from detect.metrics import evaluate
from detect.metrics.predictions import load_ground_truth, read_predictions

REPO = Path(__file__).resolve().parent.parent
CASES = REPO.parent / "shared" / "field-cases"
COCO_KEYS = ["AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl"]


def detect_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "detect", *args], capture_output=True, text=True, timeout=300,
        cwd=cwd,
    )  # fmt: skip


def case(name: str) -> Path:
    p = CASES / name
    if not p.is_dir():
        pytest.skip(f"{p} not present")
    return p


# --------------------------------------------------------------------------- the field cases


def test_case_04_same_file_name_in_two_folders():
    root = case("04-yolo-nested-folders-same-file-name")
    want = json.loads((root / "expected_pycocotools.json").read_text())
    r = detect_cli("evaluate", "data.yaml", "--pred", "predlabels", "--json", "-", cwd=root)
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout)["coco"]
    np.testing.assert_allclose([got[k] for k in COCO_KEYS], [want[k] for k in COCO_KEYS],
                               atol=1e-12)  # fmt: skip
    # The old preds.json gave both images image_id 1: really ambiguous, so one line naming it.
    r = detect_cli("evaluate", "data.yaml", "--pred", "preds.json", cwd=root)
    assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1
    assert "fits 2 images" in r.stderr and "cam1/000001.jpg" in r.stderr
    assert "cam2/000001.jpg" in r.stderr


def test_case_11_voc_filename_without_extension():
    root = case("11-voc-filename-without-extension")
    a = load_dataset(root / "VOC-labelimg", "val")
    b = load_dataset(root / "VOC-control", "val")
    assert len(a.images) == len(b.images) == 3
    for x, y in zip(a.images, b.images, strict=True):
        assert (x.id, x.path.name, x.width, x.height) == (y.id, y.path.name, y.width, y.height)
        np.testing.assert_array_equal(x.boxes, y.boxes)
        assert x.path.is_file()
    from detect.inference.dataset import predict_records

    weights = REPO / "weights" / "shapes-tiny.safetensors"
    ja = evaluate(a, predict_records(a, str(weights))).to_json()
    jb = evaluate(b, predict_records(b, str(weights))).to_json()
    ja.pop("seconds"), jb.pop("seconds")
    assert ja == jb and ja["images"] == 3


def test_case_20_comma_separated_label_lines():
    root = case("20-yolo-comma-separated-label-lines")
    for args in (["anchors", "data.yaml", "-k", "1"],
                 ["evaluate", "data.yaml", "--pred", "preds.json", "--json", "-"]):  # fmt: skip
        r = detect_cli(*args, cwd=root)
        assert r.returncode == 0, r.stderr
        assert "2 malformed label lines" in r.stderr
        for line in (1, 2):
            assert f"labels/val/030_fea8c1dbbec720ca.txt:{line}: fields separated by commas" in (
                r.stderr
            )
    out = json.loads(r.stdout)
    assert out["coco"]["AP"] == pytest.approx(1.0) and sum(c["gt"] for c in out["per_class"]) == 1
    r = detect_cli("anchors", "data.yaml", "-k", "1", "--strict", cwd=root)
    assert r.returncode == 1 and "error: --strict: 2 data problems" in r.stderr


# --------------------------------------------------------------------------- image identity


def test_label_files_with_a_byte_order_mark(tmp_path):
    data = _red_box_set(tmp_path / "set")
    lab = tmp_path / "set/labels/val/001.txt"
    lab.write_bytes(b"\xef\xbb\xbf" + lab.read_bytes())  # Windows editors write one
    rec = load_dataset(data, "val")
    assert rec.report.bad_lines == 0 and rec.num_boxes() == 5


def test_unique_ids_rule():
    assert unique_ids(["a/000001.jpg", "b/000001.jpg", "c/000002.jpg"]) == [
        "a/000001", "b/000001", 2,
    ]  # fmt: skip
    assert unique_ids(["0001.jpg", "001.jpg", "7.png", "x.jpg", "x.png", "d/y.jpg"]) == [
        "0001", "001", 7, "x.jpg", "x.png", "y",
    ]  # fmt: skip


def _red_box_set(root: Path) -> Path:
    """A YAML data set whose val images collide by name: cam1/000001, cam2/000001, 0001 and
    001 (both 1 as ints) and a non-numeric name; one red box each, at different places."""
    names = ["cam1/000001.jpg", "cam2/000001.jpg", "0001.jpg", "001.jpg", "Left Gate.jpg"]
    for k, name in enumerate(names):
        img = np.full((240, 320, 3), 60, np.uint8)
        x1, y1 = 20 + 40 * k, 30 + 20 * k
        img[y1 : y1 + 50, x1 : x1 + 70] = (0, 0, 255)  # BGR red
        p = root / "images" / "val" / name
        p.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(p), img, [cv2.IMWRITE_JPEG_QUALITY, 100])
        lab = root / "labels" / "val" / Path(name).with_suffix(".txt")
        lab.parent.mkdir(parents=True, exist_ok=True)
        cx, cy = (x1 + 35) / 320, (y1 + 25) / 240
        lab.write_text(f"0 {cx} {cy} {70 / 320} {50 / 240}\n")
    (root / "data.yaml").write_text("path: .\ntrain: images/val\nval: images/val\nnames: [red]\n")
    return root / "data.yaml"


def test_predict_outputs_read_back_exactly(tmp_path):
    """What `detect predict --save-json / --save-txt` writes over a data set's images reads back
    into evaluate on the right images: a perfect detector scores AP 1 both ways."""
    from test_predict import RedBoxModel

    from detect.inference import PredictConfig, run_predict
    from detect.inference.outputs import SaveOptions

    data = _red_box_set(tmp_path / "set")
    s = run_predict([str(tmp_path / "set/images/val")], RedBoxModel(320),
                    PredictConfig(conf=0.25, batch=2), out=tmp_path / "runs/p",
                    save=SaveOptions(images=False, txt=True, conf=True),
                    save_json=tmp_path / "p.json")  # fmt: skip
    ids = {r["image_id"] for r in json.loads((tmp_path / "p.json").read_text())}
    assert ids == {"cam1/000001", "cam2/000001", "0001", "001", "Left Gate"}
    gt = load_ground_truth(data, "val")
    for pred in (tmp_path / "p.json", s.run_dir / "labels"):
        res = evaluate(gt, read_predictions(pred, gt))
        assert res.map50 == pytest.approx(1.0) and res.map > 0.7, pred
        assert res.pred_count.tolist() == [5]
    assert oct(os.stat(tmp_path / "p.json").st_mode & 0o777) == oct(0o666 & ~_umask())


def _umask() -> int:
    m = os.umask(0)
    os.umask(m)
    return m


def test_predictions_by_file_name_and_the_clashes(tmp_path):
    data = _red_box_set(tmp_path / "set")
    gt = load_ground_truth(data, "val")
    box = [20.0, 30.0, 70.0, 50.0]
    # ids written as file stems by an older tool: found by file_name where that is unique
    ok = [{"image_id": 1, "file_name": "cam1/000001.jpg", "category_id": 0, "bbox": box,
           "score": 0.9}]  # fmt: skip
    p = tmp_path / "ok.json"
    p.write_text(json.dumps(ok))
    assert evaluate(gt, read_predictions(p, gt)).pred_count.tolist() == [1]
    for row, clash in (
        ({"image_id": 1, "file_name": "000001.jpg"}, "fits 2 images"),  # cam1 or cam2
        ({"image_id": 1}, "fits 4 images"),  # 000001 x2, 0001, 001 are all 1 as ints
    ):
        p.write_text(json.dumps([{**row, "category_id": 0, "bbox": box, "score": 0.9}]))
        with pytest.raises(DetectError, match=clash):
            read_predictions(p, gt)
    # An image outside the split: reported, not silently dropped; nothing matching: an error.
    p.write_text(json.dumps([ok[0], {**ok[0], "image_id": "other", "file_name": "other.jpg"}]))
    report = ReadReport()
    assert len(read_predictions(p, gt, report)) == 1 and report.count("unmatched") == 1
    with pytest.raises(DetectError, match="absent from the ground truth"):
        read_predictions(p, gt)  # without a report to hold it
    p.write_text(json.dumps([{**ok[0], "image_id": "other", "file_name": "other.jpg"}]))
    with pytest.raises(DetectError, match="no prediction is on an image"):
        read_predictions(p, gt, ReadReport())
    empty = tmp_path / "labels"
    (empty / "x").mkdir(parents=True)
    (empty / "x" / "nothing.txt").write_text("0 0.5 0.5 0.1 0.1 0.9\n")
    with pytest.raises(DetectError, match="none of the 1 prediction files"):
        read_predictions(empty, gt, ReadReport())


# --------------------------------------------------------------------------- VOC as written


def test_voc_as_the_field_writes_it(tmp_path):
    root = tmp_path / "VOC"
    for d in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (root / d).mkdir(parents=True)
    cv2.imwrite(str(root / "JPEGImages" / "a.png"), np.zeros((50, 80, 3), np.uint8))
    cv2.imwrite(str(root / "JPEGImages" / "b.jpg"), np.zeros((60, 90, 3), np.uint8))
    obj = ("<object><name>{}</name><difficult>0</difficult><bndbox><xmin>2</xmin><ymin>3</ymin>"
           "<xmax>20</xmax><ymax>30</ymax></bndbox></object>")  # fmt: skip
    # a.xml: <filename> names another extension, size 0; GBK-encoded with a Chinese name
    xml_a = ('<?xml version="1.0" encoding="GBK"?><annotation><filename>a.jpg</filename>'
             "<size><width>0</width><height>0</height></size>" + obj.format("行人")
             + obj.format("Traffic Light") + "</annotation>")  # fmt: skip
    (root / "Annotations" / "a.xml").write_bytes(xml_a.encode("gbk"))
    # b.xml: no extension in <filename> (labelImg), no <size> at all
    xml_b = "<annotation><filename>b</filename>" + obj.format("Traffic Light") + "</annotation>"
    (root / "Annotations" / "b.xml").write_text(xml_b)
    (root / "ImageSets/Main/train.txt").write_text("a\nb\n")
    rec = load_dataset(root, "train")
    a, b = rec.images
    assert a.path.name == "a.png" and (a.width, a.height) == (80, 50)
    assert b.path.name == "b.jpg" and (b.width, b.height) == (90, 60)
    assert rec.names == ["Traffic Light", "行人"]  # as written: spaces, case, any script
    assert a.classes.tolist() == [1, 0] and b.classes.tolist() == [0]
    np.testing.assert_array_equal(a.boxes[0], [1, 2, 19, 29])


# --------------------------------------------------------------------------- loud failures


def test_all_images_missing_is_an_error(tmp_path):
    root = case("11-voc-filename-without-extension") / "VOC-control"
    voc = tmp_path / "voc"  # the annotations and lists, without JPEGImages/
    voc.mkdir()
    (voc / "Annotations").symlink_to(root / "Annotations", target_is_directory=True)
    (voc / "ImageSets").symlink_to(root / "ImageSets", target_is_directory=True)
    (voc / "classes.txt").write_text((root / "classes.txt").read_text())
    w = str(REPO / "weights" / "shapes-tiny.safetensors")
    r = detect_cli("evaluate", str(voc), "--weights", w)
    assert r.returncode == 1
    assert "none of the 3 images of split 'val' could be read" in r.stderr


def test_model_classes_must_be_the_data_sets(tmp_path):
    data = _red_box_set(tmp_path / "set")
    w = str(REPO / "weights" / "shapes-tiny.safetensors")
    r = detect_cli("evaluate", str(data), "--weights", w)
    assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1
    assert "model's classes (6: circle, square" in r.stderr and "data set's (1: red)" in r.stderr
    r = detect_cli("predict", str(tmp_path / "set/images/val"), "--weights", w, "--classes", "7",
                   "--no-images")  # fmt: skip
    assert r.returncode == 1 and "--classes 7: the model has classes 0..5" in r.stderr


def test_dataloader_worker_error_shows_the_file():
    import torch

    from detect.cli.main import error_line

    class Bad(torch.utils.data.Dataset):
        def __len__(self):
            return 2

        def __getitem__(self, i):
            raise DetectError("imgs/b.jpg: not a readable image")

    with pytest.raises(DetectError) as e:
        list(torch.utils.data.DataLoader(Bad(), num_workers=1))
    assert str(e.value).startswith("Caught DetectError")
    assert error_line(e.value) == "imgs/b.jpg: not a readable image"


def test_training_drops_unreadable_images_before_the_first_epoch(tmp_path):
    from detect.engine.data import load_training_data

    data = _red_box_set(tmp_path / "set")
    (tmp_path / "set/images/val/0001.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    reports = []
    splits = ("train", "val")
    train, val = load_training_data(str(data), splits, None, False, lambda *r: reports.append(r))
    assert len(train.images) == len(val.images) == 4
    assert train.report.count("bad_image") == 1 and "0001.jpg" in train.report.messages[0]
    assert reports[0][0] is train.report
    with pytest.raises(DetectError, match="--strict"):
        load_training_data(str(data), splits, None, True, lambda *r: None)


# --------------------------------------------------------------------------- train / val sets


def test_yaml_names_coco_files_and_voc_lists(tmp_path):
    root = case("11-voc-filename-without-extension") / "VOC-control"
    coco = tmp_path / "c.json"
    coco.write_text(json.dumps({
        "images": [{"id": 3, "file_name": "x.jpg", "width": 10, "height": 10}],
        "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}],
        "annotations": [{"id": 1, "image_id": 3, "category_id": 2, "bbox": [1, 1, 4, 4]}],
    }))  # fmt: skip
    y = tmp_path / "d.yaml"
    y.write_text(f"path: {tmp_path}\ntrain: c.json\nval: {{voc: {root}, split: val}}\n")
    tr, va = load_dataset(y, "train"), load_dataset(y, "val")
    assert tr.names == ["a", "b"] and tr.split == "train" and tr.images[0].classes.tolist() == [1]
    assert len(va.images) == 3 and va.split == "val"
    y.write_text(f"path: {tmp_path}\ntrain: c.json\nnames: [b, a]\n")
    with pytest.raises(DetectError, match="'names'"):
        load_dataset(y, "train")


# --------------------------------------------------------------------------- detect check


def test_check_counts_equal_a_plain_count(voc2007):
    import xml.etree.ElementTree as ET

    from detect.check import check_dataset

    res = check_dataset(voc2007, ["train600"], decode=False)
    (s,) = res.splits
    ids = (voc2007 / "ImageSets/Main/train600.txt").read_text().split()
    per_class: dict[str, int] = {}
    for i in ids:
        for o in ET.parse(voc2007 / "Annotations" / f"{i}.xml").getroot().iter("object"):
            n = o.findtext("name")
            per_class[n] = per_class.get(n, 0) + 1
    assert s.images == len(ids) == 600 and s.boxes == sum(per_class.values())
    assert dict(zip(res.names, s.class_boxes, strict=True)) == {
        n: per_class.get(n, 0) for n in res.names
    }
    assert s.errors == 0 and s.background == 0 and sum(s.size_counts) == s.boxes
    res = check_dataset(voc2007, ["val"], decode=False)
    missing = sum(not (voc2007 / "JPEGImages" / f"{i}.jpg").is_file()
                  for i in (voc2007 / "ImageSets/Main/val.txt").read_text().split())  # fmt: skip
    assert res.splits[0].report.count("bad_image") == missing > 0


def test_check_synth_and_the_field_cases(tmp_path):
    r = detect_cli("synth", str(tmp_path / "s"), "--train", "12", "--val", "6")
    assert r.returncode == 0, r.stderr
    r = detect_cli("check", str(tmp_path / "s/data.yaml"), "--json", "-", "--imgsz", "320",
                   "--out", str(tmp_path / "runs/check"))  # fmt: skip
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    for split, n in (("train", 12), ("val", 6)):
        labels = sorted((tmp_path / f"s/labels/{split}").glob("*.txt"))
        boxes = sum(len(f.read_text().split("\n")) - 1 for f in labels)
        assert out["splits"][split]["images"] == n and out["splits"][split]["boxes"] == boxes
    run = tmp_path / "runs/check"
    assert (run / "classes.png").is_file() and (run / "box_sizes.png").is_file()

    # field case 20: both bad lines named, exit 1 (labels lost)
    r = detect_cli("check", "data.yaml", "--out", str(tmp_path / "c20"),
                   cwd=case("20-yolo-comma-separated-label-lines"))  # fmt: skip
    assert r.returncode == 1
    assert "030_fea8c1dbbec720ca.txt:1" in r.stderr and "030_fea8c1dbbec720ca.txt:2" in r.stderr
    # class id outside names, orphan label, duplicate box, missing image: each named
    data = _red_box_set(tmp_path / "bad")
    lab = tmp_path / "bad/labels/val"
    (lab / "001.txt").write_text("3 0.5 0.5 0.1 0.1\n0 0.2 0.2 0.1 0.1\n0 0.2 0.2 0.1 0.1\n")
    (lab / "ghost.txt").write_text("0 0.5 0.5 0.1 0.1\n")
    r = detect_cli("check", str(data), "--split", "val", "--json", "-", "--out",
                   str(tmp_path / "cb"))  # fmt: skip
    assert r.returncode == 1
    problems = json.loads(r.stdout)["splits"]["val"]["problems"]
    assert problems["bad_class"]["entries"][0].endswith("001.txt:1: class 3 not in names (0..0)")
    assert problems["duplicate_box"]["entries"][0].endswith("001.txt:3: same class and box as "
                                                           "an earlier line")  # fmt: skip
    assert "ghost.txt" in problems["orphan_label"]["entries"][0]


# --------------------------------------------------------------------------- detect convert


def test_convert_round_trip_yolo_coco_voc_yolo(tmp_path):
    r = detect_cli("synth", str(tmp_path / "s"), "--train", "6", "--val", "4")
    assert r.returncode == 0, r.stderr
    steps = [("s/data.yaml", "coco", "c"), ("c/data.yaml", "voc", "v"), ("v", "yolo", "y")]
    for src, to, dst in steps:
        r = detect_cli("convert", str(tmp_path / src), "--to", to, str(tmp_path / dst))
        assert r.returncode == 0, r.stderr
    for split in ("train", "val"):
        a = load_dataset(tmp_path / "s/data.yaml", split)
        b = load_dataset(tmp_path / "y/data.yaml", split)
        assert a.names == b.names and len(a.images) == len(b.images)
        for x, y in zip(a.images, b.images, strict=True):
            assert (x.width, x.height) == (y.width, y.height)
            assert x.classes.tolist() == y.classes.tolist()
            size = np.array([x.width, x.height] * 2)
            assert np.abs((x.boxes - y.boxes) / size).max() <= 1e-6
            assert os.path.samefile(x.path, y.path)  # hard links, never moved
    r = detect_cli("convert", str(tmp_path / "s/data.yaml"), "--to", "voc", str(tmp_path / "v"))
    assert r.returncode == 1 and "already exists" in r.stderr


def test_converted_yaml_resolves_from_its_own_folder_in_ultralytics(tmp_path):
    """`path: .` would send ultralytics to its working folder; the YAML must carry no `path`."""
    r = detect_cli("synth", str(tmp_path / "s"), "--train", "2", "--val", "2")
    assert r.returncode == 0, r.stderr
    r = detect_cli("convert", str(tmp_path / "s/data.yaml"), "--to", "yolo", str(tmp_path / "y"))
    assert r.returncode == 0, r.stderr
    assert "path" not in yaml.safe_load((tmp_path / "y/data.yaml").read_text())
    utils = pytest.importorskip("ultralytics.data.utils")
    cwd = os.getcwd()
    os.chdir(tmp_path / "s")  # any folder but the data set's
    try:
        data = utils.check_det_dataset(str(tmp_path / "y/data.yaml"), autodownload=False)
    finally:
        os.chdir(cwd)
    assert Path(data["val"]) == (tmp_path / "y/images/val").resolve()


def test_convert_keeps_difficult_and_crowd_where_the_target_can(tmp_path):
    from detect.convert import convert

    src = tmp_path / "c.json"
    src.write_text(json.dumps({
        "images": [{"id": 1, "file_name": "x.jpg", "width": 40, "height": 30}],
        "categories": [{"id": 5, "name": "a"}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 5, "bbox": [1.5, 2, 10, 8], "iscrowd": 1},
            {"id": 2, "image_id": 1, "category_id": 5, "bbox": [3, 4, 5, 6], "difficult": 1},
            {"id": 3, "image_id": 1, "category_id": 5, "bbox": [20, 10, 5, 6]},
        ],
    }))  # fmt: skip
    cv2.imwrite(str(tmp_path / "x.jpg"), np.zeros((30, 40, 3), np.uint8))
    convert(src, "voc", tmp_path / "v")
    v = load_dataset(tmp_path / "v", "c").images[0]
    assert v.difficult.tolist() == [True, True, False]  # crowd -> VOC's "ignored in scoring"
    np.testing.assert_allclose(v.boxes[0], [1.5, 2, 11.5, 10])
    convert(tmp_path / "v", "coco", tmp_path / "c2")
    back = json.loads((tmp_path / "c2/annotations/instances_c.json").read_text())
    assert [a.get("difficult", 0) for a in back["annotations"]] == [1, 1, 0]
    res = convert(src, "yolo", tmp_path / "y")
    assert res.dropped_flagged == 2 and res.boxes == 1
