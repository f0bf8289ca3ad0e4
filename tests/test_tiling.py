"""Tiled inference: SAHI's windows and merges, held against the `sahi` package (the oracle),
and an object cut by a tile border re-joined into one box."""

from __future__ import annotations

import numpy as np
import pytest

from detect import tiling
from detect.errors import DetectError


@pytest.fixture(scope="module")
def sahi():
    pytest.importorskip("sahi", reason="the oracle: `make install` installs sahi (no deps)")
    from sahi.postprocess.backends import set_postprocess_backend

    set_postprocess_backend("numpy")  # SAHI's reference backend; no torch or numba
    import sahi

    return sahi


def test_windows_hand_computed():
    # 1000 x 600, tile 400, overlap 0.25 (100 px): columns start 0, 300, then the last is moved
    # back to end at 1000; rows 0 and 200 (the second ends at the border)
    w = tiling.tile_windows(1000, 600, 400, 0.25)
    assert w.dtype == np.int64
    assert w.tolist() == [
        [0, 0, 400, 400],
        [300, 0, 700, 400],
        [600, 0, 1000, 400],
        [0, 200, 400, 600],
        [300, 200, 700, 600],
        [600, 200, 1000, 600],
    ]
    assert tiling.tile_windows(300, 200, 640, 0.2).tolist() == [[0, 0, 300, 200]]  # small image


def test_windows_cover_the_image():
    for width, height in [(1280, 960), (2560, 1440), (641, 640), (1000, 3000)]:
        w = tiling.tile_windows(width, height, 640, 0.2)
        covered = np.zeros((height, width), bool)
        for x1, y1, x2, y2 in w:
            assert x2 - x1 == 640 and y2 - y1 == 640
            covered[y1:y2, x1:x2] = True
        assert covered.all()


def test_windows_equal_sahi(sahi):
    from sahi.slicing import get_slice_bboxes

    rng = np.random.default_rng(0)
    cases = [(1, 1, 64, 0.2), (320, 320, 320, 0.2), (321, 320, 320, 0.0), (2560, 1280, 640, 0.9)]
    tiles, overlaps = rng.choice([160, 320, 512, 640], 80), rng.uniform(0, 0.6, 80)
    cases += [
        (int(rng.integers(1, 2600)), int(rng.integers(1, 2600)), int(tile), float(ov))
        for tile, ov in zip(tiles, overlaps, strict=True)
    ]
    for width, height, tile, overlap in cases:
        got = tiling.tile_windows(width, height, tile, overlap).tolist()
        ref = get_slice_bboxes(height, width, tile, tile, False, overlap, overlap)
        assert got == ref, (width, height, tile, overlap)


def test_window_errors():
    with pytest.raises(DetectError, match="overlap"):
        tiling.tile_windows(100, 100, 64, 1.0)
    with pytest.raises(DetectError, match="tile"):
        tiling.tile_windows(100, 100, 0, 0.2)
    with pytest.raises(DetectError, match="merge method"):
        tiling.merge(np.zeros((1, 4)), [1.0], [0], method="wbf")
    with pytest.raises(DetectError, match="metric"):
        tiling.merge(np.zeros((1, 4)), [1.0], [0], metric="giou")


def _canon(boxes, scores, classes):
    """A merge result as a sorted list: SAHI returns NMM keepers per class, not by score."""
    return sorted(
        zip(
            map(tuple, np.asarray(boxes, np.float32).tolist()),
            np.asarray(scores, np.float32).tolist(),
            np.asarray(classes).tolist(),
            strict=True,
        )
    )


def _sahi_merge(boxes, scores, classes, method, threshold, metric, agnostic):
    from sahi.postprocess.combine import GreedyNMMPostprocess, NMSPostprocess
    from sahi.prediction import ObjectPrediction

    preds = [
        ObjectPrediction(bbox=b.tolist(), category_id=int(c), score=float(s))
        for b, s, c in zip(boxes, scores, classes, strict=True)
    ]
    cls = NMSPostprocess if method == "nms" else GreedyNMMPostprocess
    out = cls(match_threshold=threshold, match_metric=metric.upper(), class_agnostic=agnostic)(
        preds
    )
    return _canon(
        [o.bbox.to_xyxy() for o in out], [o.score.value for o in out], [o.category.id for o in out]
    )


@pytest.mark.parametrize("matrix_max", [512, 0])  # whole matrix, and rows of kept boxes only
def test_merge_equals_sahi(sahi, monkeypatch, matrix_max):
    monkeypatch.setattr(tiling, "_MATRIX_MAX", matrix_max)
    rng = np.random.default_rng(0)
    for trial in range(120):
        n = int(rng.integers(0, 80))
        if trial % 2:  # tie-heavy: integer corners, equal scores, metrics exactly at threshold
            xy = rng.integers(0, 30, (n, 2)).astype(np.float32)
            wh = rng.integers(0, 12, (n, 2)).astype(np.float32)
            scores = (rng.integers(1, 4, n) / 4).astype(np.float32)
        else:
            xy = rng.uniform(0, 200, (n, 2)).astype(np.float32)
            wh = rng.uniform(1, 60, (n, 2)).astype(np.float32)
            scores = rng.uniform(0, 1, n).astype(np.float32)
        boxes, classes = np.concatenate([xy, xy + wh], 1), rng.integers(0, 3, n)
        method = ("nms", "nmm")[trial % 4 // 2]
        metric = ("iou", "ios")[trial % 3 % 2]
        agnostic = trial % 5 == 0
        thr = float(rng.choice([0.1, 0.25, 1 / 3, 0.5, 0.8]))
        got = tiling.merge(boxes, scores, classes, method, thr, metric, agnostic)
        assert np.all(np.diff(got[1]) <= 0)  # by decreasing score
        ref = _sahi_merge(boxes, scores, classes, method, thr, metric, agnostic)
        assert _canon(*got) == ref, (trial, method, metric, agnostic, thr)


def test_object_cut_by_a_tile_border_is_rejoined(sahi):
    """A 100 px object across the border of two 200 px tiles sharing 40 px: each tile sees a
    part; NMM with IOS gives back one box, the union, as SAHI does."""
    windows = tiling.tile_windows(360, 200, 200, 0.2)
    assert windows.tolist() == [[0, 0, 200, 200], [160, 0, 360, 200]]
    left = np.array([[150, 50, 200, 90, 0.8, 2]], np.float32)  # tile pixels: cut at x = 200
    right = np.array([[0, 52, 90, 91, 0.7, 2]], np.float32)  # image x 160..250, cut at x = 160
    out = tiling.merge_detections([left, right], windows, method="nmm", metric="ios")
    np.testing.assert_array_equal(out, np.float32([[150, 50, 250, 91, 0.8, 2]]))
    rows = np.array([[150, 50, 200, 90], [160, 52, 250, 91]], np.float32)
    assert _sahi_merge(rows, [0.8, 0.7], [2, 2], "nmm", 0.5, "ios", False) == _canon(
        out[:, :4], out[:, 4], out[:, 5]
    )
    # NMS keeps one of the parts (the better-scored), IoU-matching keeps both
    nms = tiling.merge_detections([left, right], windows, method="nms", metric="ios")
    np.testing.assert_array_equal(nms, np.float32([[150, 50, 200, 90, 0.8, 2]]))
    assert len(tiling.merge_detections([left, right], windows, method="nms", metric="iou")) == 2
    # another class on the other side is another object
    right[0, 5] = 1
    assert len(tiling.merge_detections([left, right], windows, method="nmm")) == 2


def test_merge_detections_adds_the_full_image_and_caps():
    windows = np.array([[0, 0, 100, 100], [80, 0, 180, 100]])
    tiles = [
        np.array([[10, 10, 20, 20, 0.9, 0], [40, 40, 60, 60, 0.3, 1]], np.float32),
        np.zeros((0, 6), np.float32),
    ]
    full = np.array([[11, 10, 20, 21, 0.5, 0], [100, 10, 170, 90, 0.6, 3]], np.float32)
    out = tiling.merge_detections(tiles, windows, full, method="nmm", metric="ios")
    assert out.dtype == np.float32
    np.testing.assert_array_equal(
        out,
        np.float32(
            [[10, 10, 20, 21, 0.9, 0], [100, 10, 170, 90, 0.6, 3], [40, 40, 60, 60, 0.3, 1]]
        ),
    )
    assert len(tiling.merge_detections(tiles, windows, full, max_det=2)) == 2
    assert tiling.merge_detections([np.zeros((0, 6))] * 2, windows).shape == (0, 6)
    with pytest.raises(DetectError, match="windows"):
        tiling.merge_detections(tiles, windows[:1])
