"""Letterbox and its inverse; the torch Dataset and collate_fn."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from detect.data import DetectError, load_dataset
from detect.data.dataset import DetectionDataset, collate_fn
from detect.data.transforms import PAD_VALUE, letterbox, letterbox_boxes, unletterbox_boxes


@pytest.mark.parametrize("hw", [(375, 500), (500, 375), (100, 100), (1000, 30), (7, 900)])
def test_letterbox_geometry(hw):
    h, w = hw
    img = np.full((h, w, 3), 200, np.uint8)
    out, scale, (px, py) = letterbox(img, 416)
    assert out.shape == (416, 416, 3) and out.dtype == np.uint8
    assert scale == pytest.approx(min(416 / h, 416 / w))
    nw, nh = round(w * scale), round(h * scale)
    # Content exactly in [py, py+nh) x [px, px+nw), centred; grey everywhere else.
    assert (out[py : py + nh, px : px + nw] == 200).all()
    assert abs((416 - nw) - 2 * px) <= 1 and abs((416 - nh) - 2 * py) <= 1
    mask = np.ones((416, 416), bool)
    mask[py : py + nh, px : px + nw] = False
    assert (out[mask] == PAD_VALUE).all()


def test_letterbox_aligns_content():
    # A white square at known pixels lands where letterbox_boxes says (within a pixel).
    img = np.zeros((300, 600, 3), np.uint8)
    img[100:200, 250:350] = 255
    out, scale, pad = letterbox(img, 320)
    b = letterbox_boxes(np.array([[250, 100, 350, 200]], np.float32), scale, pad)[0]
    ys, xs = np.nonzero(out[:, :, 0] > 127)
    np.testing.assert_allclose([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], b, atol=1)


@settings(max_examples=200, deadline=None)
@given(
    h=st.integers(1, 2000),
    w=st.integers(1, 2000),
    size=st.sampled_from([32, 320, 416, 640]),
    seed=st.integers(0, 2**31),
)
def test_unletterbox_inverts(h, w, size, seed):
    rng = np.random.default_rng(seed)
    xy = rng.uniform(0, 1, (8, 2, 2)) * [w, h]
    boxes = np.concatenate([xy.min(1), xy.max(1)], 1).astype(np.float32)  # [8,4] inside the image
    scale = min(size / h, size / w)
    pad = (
        (size - min(size, max(1, round(w * scale)))) // 2,
        (size - min(size, max(1, round(h * scale)))) // 2,
    )
    fwd = letterbox_boxes(boxes, scale, pad)
    back = unletterbox_boxes(fwd, scale, pad, (h, w))
    assert back.dtype == np.float32
    np.testing.assert_allclose(back, boxes, atol=1e-4 * max(h, w, 1), rtol=1e-5)
    t = unletterbox_boxes(torch.from_numpy(fwd.astype(np.float64)), scale, pad, (h, w))
    assert isinstance(t, torch.Tensor) and t.dtype == torch.float64
    np.testing.assert_allclose(t.numpy(), boxes, atol=1e-4)


def test_unletterbox_clips():
    b = np.array([[-50, -50, 1000, 1000]], np.float32)
    out = unletterbox_boxes(b, 0.5, (0, 10), (300, 200))
    np.testing.assert_array_equal(out, [[0, 0, 200, 300]])
    assert b[0, 0] == -50  # input untouched


def _voc_with_images(tmp: Path) -> Path:
    """One 40x20 image, left half red (BGR 0,0,255), with a normal, a zero-size, a difficult box."""
    (tmp / "Annotations").mkdir(parents=True)
    (tmp / "ImageSets/Main").mkdir(parents=True)
    (tmp / "JPEGImages").mkdir()
    img = np.zeros((20, 40, 3), np.uint8)
    img[:, :20] = (0, 0, 255)
    cv2.imwrite(str(tmp / "JPEGImages/1.png"), img)
    objs = [("a", (3, 3, 11, 11), 0), ("b", (5, 5, 5, 9), 0), ("b", (1, 1, 41, 21), 1)]
    xml = "".join(
        f"<object><name>{n}</name><difficult>{d}</difficult><bndbox><xmin>{b[0]}</xmin>"
        f"<ymin>{b[1]}</ymin><xmax>{b[2]}</xmax><ymax>{b[3]}</ymax></bndbox></object>"
        for n, b, d in objs
    )
    (tmp / "Annotations/1.xml").write_text(
        f"<annotation><filename>1.png</filename><size><width>40</width><height>20</height>"
        f"</size>{xml}</annotation>"
    )
    (tmp / "ImageSets/Main/train.txt").write_text("1\n1\n")  # a repeated id is read once
    return tmp


def test_dataset_item_and_collate(tmp_path):
    rec = load_dataset(_voc_with_images(tmp_path), "train")
    assert len(rec.images) == 1  # the repeated id
    assert rec.report.zero_size_boxes == 1 and rec.num_boxes() == 3
    ds = DetectionDataset(rec, 80)
    img, targets, index = ds[0]
    assert img.shape == (3, 80, 80) and img.dtype == torch.uint8 and index == 0
    # RGB: the left half is red in channel 0; padding is grey (40x20 -> 80x40, pad 20 top).
    assert img[0, 40, 10] > 240 and img[2, 40, 10] < 15
    assert (img[:, 5, 5] == PAD_VALUE).all()
    # Only the normal box: zero-size and difficult ones are dropped; pixels scaled by 2, +20 y.
    torch.testing.assert_close(targets, torch.tensor([[0.0, 4, 24, 20, 40]]))
    keep = DetectionDataset(rec, 80, keep_ignored=True)[0][1]
    torch.testing.assert_close(keep[:, 0], torch.tensor([0.0, 1]))

    def flip(im, boxes, classes):
        w = im.shape[1]
        return (
            im[:, ::-1],
            np.stack([w - boxes[:, 2], boxes[:, 1], w - boxes[:, 0], boxes[:, 3]], 1),
            classes,
        )

    _, t_aug, _ = DetectionDataset(rec, 80, augment=flip)[0]
    torch.testing.assert_close(t_aug, torch.tensor([[0.0, 60, 24, 76, 40]]))

    imgs, t, idx = collate_fn([ds[0], ds[0]])
    assert imgs.shape == (2, 3, 80, 80) and t.shape == (2, 6)
    torch.testing.assert_close(t[:, 0], torch.tensor([0.0, 1.0]))
    torch.testing.assert_close(idx, torch.tensor([0, 0]))
    empty = collate_fn([(img, torch.zeros(0, 5), 3)])[1]
    assert empty.shape == (0, 6)


def test_dataset_corrupt_image_names_file(tmp_path):
    root = _voc_with_images(tmp_path)
    (root / "JPEGImages/1.png").write_bytes(b"\x89PNG broken")
    ds = DetectionDataset(load_dataset(root, "train"), 64)
    with pytest.raises(DetectError, match=r"1\.png"):
        ds[0]


def test_dataset_on_voc2007(voc2007):
    rec = load_dataset(voc2007, "train600")
    ds = DetectionDataset(rec, 320)
    for i in (0, 299, 599):
        img, targets, _ = ds[i]
        im = rec.images[i]
        scale = 320 / max(im.width, im.height)
        keep = ~im.difficult
        assert len(targets) == int(keep.sum())
        # Boxes back to original pixels equal the records (the forward map inverts).
        pad = ((320 - round(im.width * scale)) // 2, (320 - round(im.height * scale)) // 2)
        back = unletterbox_boxes(targets[:, 1:], scale, pad, (im.height, im.width))
        np.testing.assert_allclose(back.numpy(), im.boxes[keep], atol=1e-3)
