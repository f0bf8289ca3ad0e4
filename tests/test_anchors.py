"""Anchors: statistics against brute force, the k-means search, files, the CLI, the VOC target."""

from __future__ import annotations

import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
import torch
from torchvision.ops import box_iou

from detect.anchor_boxes import (
    KMeansConfig,
    anchor_stats,
    avg_iou,
    boxes_wh,
    kmeans_anchors,
    parse_anchors,
    read_anchors,
    score_anchors,
    wh_iou,
    write_anchors,
)
from detect.errors import DetectError

# darknet cfg/yolo-voc.cfg anchors, grid units of the 13 x 13 grid of a 416 input.
PAPER_VOC = [
    1.3221,
    1.73145,
    3.19275,
    4.00944,
    5.05587,
    8.09892,
    9.47112,
    4.84053,
    11.2364,
    10.0071,
]


def random_wh(n: int, seed: int = 0) -> np.ndarray:
    """Box shapes spread like real ones: log-normal sizes, varied aspect ratios."""
    rng = np.random.default_rng(seed)
    size = np.exp(rng.normal(-2.0, 0.8, n))
    aspect = np.exp(rng.normal(0.0, 0.5, n))
    return np.clip(np.stack([size * aspect, size / aspect], 1), 1e-3, 1.0)


def brute_stats(wh, anchors, thr):
    """Per-box loops in plain Python: best IoU, BPR and anchors above threshold."""
    best, fit, above = [], 0, 0
    for w, h in wh:
        ious, ok = [], 0
        for aw, ah in anchors:
            inter = min(w, aw) * min(h, ah)
            ious.append(inter / (w * h + aw * ah - inter))
            worst = max(max(w / aw, aw / w), max(h / ah, ah / h))
            ok += worst < thr
        best.append(max(ious))
        fit += ok > 0
        above += ok
    n = len(wh)
    return sum(best) / n, fit / n, above / n


def test_wh_iou_equals_torchvision_on_centred_boxes():
    wh, anchors = random_wh(200, 1), random_wh(7, 2)

    def centred(a):
        return torch.tensor(np.concatenate([-a / 2, a / 2], 1), dtype=torch.float64)

    ref = box_iou(centred(wh), centred(anchors)).numpy()
    np.testing.assert_allclose(wh_iou(wh, anchors), ref, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("thr", [4.0, 2.0])
def test_stats_match_brute_force(thr):
    wh, anchors = random_wh(300, 3), random_wh(5, 4)
    st = anchor_stats(wh, anchors, thr)
    ref_iou, ref_bpr, ref_aat = brute_stats(wh.tolist(), anchors.tolist(), thr)
    assert st.avg_iou == pytest.approx(ref_iou, rel=1e-12)
    assert st.bpr == pytest.approx(ref_bpr, abs=1e-12)
    assert st.aat == pytest.approx(ref_aat, abs=1e-12)
    assert 0 < st.bpr < 1  # the case exercises both outcomes
    scored = score_anchors(np.vstack([wh, [[0.0, 0.1]]]), anchors[::-1], thr)  # zero-size left out
    assert (scored.avg_iou, scored.bpr, scored.aat) == (st.avg_iou, st.bpr, st.aat)
    assert scored.boxes == 300 and np.all(np.diff(scored.anchors.prod(1)) >= 0)


def test_result_stats_are_those_of_its_anchors():
    wh = random_wh(2000, 5)
    r = kmeans_anchors(wh, 4, seed=0)
    ref_iou, ref_bpr, ref_aat = brute_stats(wh.tolist(), r.anchors.tolist(), 4.0)
    assert r.avg_iou == pytest.approx(ref_iou, rel=1e-12)
    assert (r.bpr, r.aat) == (pytest.approx(ref_bpr), pytest.approx(ref_aat))
    areas = r.anchors.prod(1)
    assert r.anchors.shape == (4, 2) and np.all(np.diff(areas) >= 0)
    assert r.boxes == 2000 and r.k == 4


def test_k1_hand_case():
    # Boxes 1x1, 2x1, 3x1 (x 0.1). With h = 1, the summed IoU of an anchor a x 1 is
    # 1/a + a/2 + a/3 on [1, 2] and 1/a + 2/a + a/3 on [2, 3], both convex, so the maximum is at a
    # box: a = 2 gives 1/2 + 1 + 2/3 = 13/6 (a = 1: 11/6, a = 3: 2). Any h != 1 lowers every term.
    wh = np.array([[0.1, 0.1], [0.2, 0.1], [0.3, 0.1]])
    r = kmeans_anchors(wh, 1, seed=0)
    np.testing.assert_allclose(r.anchors, [[0.2, 0.1]], rtol=1e-3)
    assert r.avg_iou == pytest.approx(13 / 18, rel=1e-6)


def test_k1_equals_dense_grid_search():
    wh = random_wh(60, 6)
    r = kmeans_anchors(wh, 1, seed=0)
    # Brute force: every anchor on a fine log grid around the data.
    g = np.exp(np.linspace(np.log(wh.min()), np.log(wh.max()), 300))
    grid = np.stack(np.meshgrid(g, g), -1).reshape(-1, 2)
    best_grid = wh_iou(wh, grid).mean(0).max()
    assert r.avg_iou >= best_grid - 1e-6
    assert r.avg_iou <= best_grid + 2e-3  # the grid is fine: it cannot be far below the optimum


def test_beats_plain_kmedians():
    wh = random_wh(3000, 7)

    def kmedians(k, seed):  # the plain reference: random init, median update, 1 - IoU assign
        rng = np.random.default_rng(seed)
        a = wh[rng.choice(len(wh), k, replace=False)]
        for _ in range(100):
            lab = wh_iou(wh, a).argmax(1)
            a = np.array(
                [np.median(wh[lab == j], 0) if (lab == j).any() else a[j] for j in range(k)]
            )
        return avg_iou(wh, a)

    for k in (3, 6):
        ref = max(kmedians(k, s) for s in range(3))
        assert kmeans_anchors(wh, k, seed=0).avg_iou >= ref - 1e-9


def test_invariant_to_box_order_and_deterministic():
    wh = random_wh(1500, 8)
    a = kmeans_anchors(wh, 5, seed=3)
    b = kmeans_anchors(wh[np.random.default_rng(0).permutation(len(wh))], 5, seed=3)
    c = kmeans_anchors(wh, 5, seed=3)
    np.testing.assert_array_equal(a.anchors, b.anchors)
    np.testing.assert_array_equal(a.anchors, c.anchors)
    assert a.avg_iou == b.avg_iou == c.avg_iou


def test_binned_search_for_many_shapes():
    # More distinct shapes than the search/refine limits: the binned path must stay close to
    # the unbinned optimum, measured on all boxes.
    wh = random_wh(6000, 9)
    full = kmeans_anchors(wh, 5, seed=0)
    small = KMeansConfig(search_points=300, refine_points=3000)
    binned = kmeans_anchors(wh, 5, seed=0, config=small)
    assert binned.distinct == len(np.unique(wh, axis=0)) > 3000 and binned.boxes == 6000
    assert binned.avg_iou >= full.avg_iou - 5e-4


def test_k_larger_than_distinct_shapes_and_bad_boxes():
    wh = np.array([[0.1, 0.2]] * 5 + [[0.3, 0.3]] * 2 + [[0.0, 0.5]])
    r = kmeans_anchors(wh, 4, seed=0)
    assert r.anchors.shape == (4, 2) and r.avg_iou == pytest.approx(1.0)
    assert r.boxes == 7 and r.distinct == 2
    assert any("distinct" in w for w in r.warnings)
    assert any("zero-size" in w for w in r.warnings)
    with pytest.raises(DetectError):
        kmeans_anchors(np.zeros((0, 2)), 3)
    with pytest.raises(DetectError):
        kmeans_anchors(np.ones((4, 3)), 2)


def test_files_round_trip_and_errors(tmp_path):
    r = kmeans_anchors(random_wh(500, 10), 3, seed=0)
    path = write_anchors(tmp_path / "a.json", r, "test")
    data = json.loads(path.read_text())
    assert set(data) == {"anchors", "k", "avg_iou", "bpr", "boxes", "source", "frame"}
    assert data["frame"] == "letterbox"
    np.testing.assert_array_equal(read_anchors(path), r.anchors)
    bad = tmp_path / "bad.json"
    bad.write_text('{"anchors": [[1, 2, 3]]}')
    with pytest.raises(DetectError, match="bad.json"):
        read_anchors(bad)
    with pytest.raises(DetectError, match="missing.json"):
        read_anchors(tmp_path / "missing.json")
    # darknet grid units: a 13 x 13 grid at 416 px
    np.testing.assert_allclose(
        parse_anchors(",".join(map(str, PAPER_VOC)), 416, 32), np.reshape(PAPER_VOC, (-1, 2)) / 13
    )
    with pytest.raises(DetectError):
        parse_anchors("1,2,3", 416, 32)


# --- VOC 2007: the targets --------------------------------------------------------------


def voc_wh_reference(root: Path, split: str) -> np.ndarray:
    """Every box of the split, difficult included, w = xmax - xmin over the <size>: plain etree."""
    out = []
    for stem in (root / "ImageSets" / "Main" / f"{split}.txt").read_text().split():
        ann = ET.parse(root / "Annotations" / f"{stem}.xml").getroot()
        w, h = float(ann.findtext("size/width")), float(ann.findtext("size/height"))
        for obj in ann.iter("object"):
            b = obj.find("bndbox")
            x1, y1, x2, y2 = (float(b.findtext(t)) for t in ("xmin", "ymin", "xmax", "ymax"))
            out.append(((x2 - x1) / w, (y2 - y1) / h))
    return np.array(out)


def test_voc2007_targets(voc2007):
    wh = voc_wh_reference(voc2007, "trainval")
    assert len(wh) == 15662
    # The paper's published VOC anchors, measured on exactly these boxes (issue: 56.7 %).
    assert avg_iou(wh, np.reshape(PAPER_VOC, (-1, 2)) / 13) == pytest.approx(0.567, abs=5e-4)
    r5 = kmeans_anchors(wh, 5, seed=0)
    r9 = kmeans_anchors(wh, 9, seed=0)
    assert r5.avg_iou >= 0.602  # paper 61.0, k-medians 60.15
    assert r9.avg_iou >= 0.672  # paper 67.2, k-medians 67.18


def test_boxes_wh_from_records_matches_xml(voc2007):
    from detect.data import load_dataset

    records = load_dataset(voc2007, "train600")
    ref = voc_wh_reference(voc2007, "train600")  # w / width, h / height from the XML
    got = boxes_wh(records, "image")
    np.testing.assert_allclose(
        np.sort(got.view(np.complex128)[:, 0]), np.sort(ref.view(np.complex128)[:, 0])
    )


def test_letterbox_frame_is_the_models(voc2007):
    """Boxes over the long side, as the letterboxed model sees them; anchors computed there fit
    the model's boxes better than anchors computed per image side (YOLOv2 Table 1's frame)."""
    from detect.data import load_dataset

    records = load_dataset(voc2007, "train600")
    lb = boxes_wh(records)  # default: letterbox
    by_hand = []
    for im in records.images:
        long = max(im.width, im.height)
        for x1, y1, x2, y2 in im.boxes.astype(np.float64):
            by_hand.append(((x2 - x1) / long, (y2 - y1) / long))
    np.testing.assert_allclose(lb, np.array(by_hand))
    in_lb = kmeans_anchors(lb, 9, seed=0)
    in_image = kmeans_anchors(boxes_wh(records, "image"), 9, seed=0)
    assert in_lb.avg_iou > score_anchors(lb, in_image.anchors).avg_iou + 0.01
    with pytest.raises(DetectError, match="unknown anchor frame"):
        boxes_wh(records, "square")


# --- CLI ----------------------------------------------------------------------------------------


def write_voc(root: Path, boxes_per_image: list[list[tuple[int, int, int, int]]]) -> Path:
    """A tiny VOC folder: 640 x 480 images with the given (xmin, ymin, xmax, ymax) boxes."""
    (root / "Annotations").mkdir(parents=True)
    (root / "ImageSets" / "Main").mkdir(parents=True)
    stems = []
    for i, boxes in enumerate(boxes_per_image):
        stem = f"{i:06d}"
        stems.append(stem)
        objs = "".join(
            f"<object><name>thing</name><difficult>{j % 2}</difficult><bndbox><xmin>{a}</xmin>"
            f"<ymin>{b}</ymin><xmax>{c}</xmax><ymax>{d}</ymax></bndbox></object>"
            for j, (a, b, c, d) in enumerate(boxes)
        )
        xml = f"<annotation><filename>{stem}.jpg</filename><size><width>640</width>"
        xml += f"<height>480</height><depth>3</depth></size>{objs}</annotation>"
        (root / "Annotations" / f"{stem}.xml").write_text(xml)
    (root / "ImageSets" / "Main" / "train.txt").write_text("\n".join(stems) + "\n")
    return root


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "detect", "anchors", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture(scope="module")
def tiny_voc(tmp_path_factory) -> tuple[Path, np.ndarray]:
    rng = np.random.default_rng(0)
    images, wh = [], []
    for _ in range(40):
        boxes = []
        for _ in range(3):
            w, h = int(rng.integers(4, 300)), int(rng.integers(4, 240))
            x, y = int(rng.integers(1, 640 - w)), int(rng.integers(1, 480 - h))
            boxes.append((x, y, x + w, y + h))
            wh.append((w / 640, h / 480))
        images.append(boxes)
    return write_voc(tmp_path_factory.mktemp("voc"), images), np.array(wh)


def test_cli_default_frame_is_letterbox(tiny_voc, tmp_path):
    root, wh = tiny_voc  # wh: image frame (w / 640, h / 480)
    out = tmp_path / "anchors.json"
    assert run_cli(str(root), "-k", "3", "--save", str(out)).returncode == 0
    data = json.loads(out.read_text())
    assert data["frame"] == "letterbox"
    lb = wh * np.array([1.0, 480 / 640])  # over the long side, 640
    np.testing.assert_allclose(data["anchors"], kmeans_anchors(lb, 3, seed=0).anchors, rtol=1e-12)


def test_cli_save_matches_library(tiny_voc, tmp_path):
    root, wh = tiny_voc
    out = tmp_path / "anchors.json"
    r = run_cli(
        str(root), "-k", "3", "--save", str(out), "--compare", ",".join(map(str, PAPER_VOC)),
        "--frame", "image",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert json.loads(out.read_text())["frame"] == "image"
    assert "avg IoU" in r.stdout and "anchors=" in r.stdout and "comparison" in r.stdout
    data = json.loads(out.read_text())
    assert data["k"] == 3 and data["boxes"] == len(wh) == 120
    ref_iou, ref_bpr, _ = brute_stats(wh.tolist(), data["anchors"], 4.0)
    assert data["avg_iou"] == pytest.approx(ref_iou, rel=1e-9)
    assert data["bpr"] == pytest.approx(ref_bpr)
    np.testing.assert_allclose(data["anchors"], kmeans_anchors(wh, 3, seed=0).anchors, rtol=1e-12)


def test_cli_stdout_json_sweep_and_plot(tiny_voc, tmp_path):
    root, _ = tiny_voc
    png = tmp_path / "elbow.png"
    r = run_cli(str(root), "-k", "2", "--save", "-", "--sweep", "1-3", "--plot", str(png))
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)  # stdout holds the JSON only; the summary went to stderr
    assert data["k"] == 2 and len(data["anchors"]) == 2
    assert "sweep" in r.stderr
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_bad_input(tmp_path):
    r = run_cli(str(tmp_path / "nope"), "-k", "3")
    assert r.returncode == 1
    assert r.stderr.startswith("error:") and len(r.stderr.strip().splitlines()) == 1
    assert "nope" in r.stderr


def test_darknet_lines_cover_every_level():
    from detect.cli.anchors import darknet_lines

    yolo, region = darknet_lines(np.array([[0.05, 0.1], [0.1, 0.2], [0.2, 0.4]]), 320, 32)
    # pixels at 320, one mask per level (smallest at stride 8); grid units of stride 32
    assert yolo.endswith("anchors=16,32, 32,64, 64,128  mask=0 (stride 8)  mask=1 (stride 16)  "
                         "mask=2 (stride 32)")  # fmt: skip
    assert region.endswith("anchors=0.5000,1.0000, 1.0000,2.0000, 2.0000,4.0000")
    nine = darknet_lines(np.full((9, 2), 0.1), 320, 32)[0]
    assert "mask=0,1,2 (stride 8)  mask=3,4,5 (stride 16)  mask=6,7,8 (stride 32)" in nine
