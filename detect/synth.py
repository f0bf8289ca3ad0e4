"""Synthetic detection data: filled shapes of different aspect ratios on cluttered backgrounds.

`make_synth(out, cfg)` writes a data set in the ultralytics YAML layout:

    OUT/data.yaml                      path / train / val / names
    OUT/images/{train,val}/000000.jpg
    OUT/labels/{train,val}/000000.txt  one `class cx cy w h` line per box, normalised 0..1
    OUT/video.mp4, OUT/video_labels/frame_000001.txt   (with cfg.video)
    OUT/video_gt.txt                   the clip's ground-truth tracks (MOTChallenge gt rows)

Everything is deterministic per seed: image i of a split is drawn from its own generator
`default_rng([seed, split, i])`, so it does not depend on how many images the other split has.
Shapes are drawn without anti-aliasing, so the label box is exactly the bounding box of the
drawn pixels (`x2 = last column + 1`, pixel edges, as `(x1, y1, x2, y2)` everywhere else).
"""

from __future__ import annotations

import functools
import math
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import yaml

from detect.errors import DetectError
from detect.files import (
    WriteError,
    check_writable,
    mp4_complete,
    put_bytes,
    short_write,
    temp_dir_beside,
    writing,
)
from detect.track.mot import gt_lines

# Aspect ratios differ on purpose so that anchors matter: round (circle, square, star),
# wide-ish (triangle), tall (bar) and wide (ellipse).
CLASS_NAMES = ["circle", "square", "triangle", "tall_bar", "wide_ellipse", "star"]
SPLITS = {"train": 0, "val": 1}

Callback = Callable[[int, int], None]  # (done, total)


@dataclass
class SynthConfig:
    train: int = 1000  # training images
    val: int = 200  # validation images
    size: int = 320  # square image side in pixels
    seed: int = 0  # everything is a function of this
    video: bool = False  # also write video.mp4 with per-frame labels
    frames: int = 60  # video length (frames); small so tests stay fast
    fps: int = 15  # video frame rate
    occluders: int = 0  # video: static unlabelled screens (another background's texture,
    # full height) drawn over the moving shapes, which pass behind them: tracking through
    # occlusion (bench/track.py)
    min_objects: int = 1  # objects per image, uniform in [min, max]
    max_objects: int = 8
    min_scale: float = 0.04  # longest object side as a fraction of the image side (log-uniform)
    max_scale: float = 0.5
    max_occlusion: float = 0.4  # an object keeps at least 1 - this of its pixels visible
    clutter: bool = True  # random lines and unlabelled distractors (off: an easier set)
    jpeg_quality: int = 90


# `detect synth --easy`: larger objects, fewer, hardly occluded, no clutter: a set on which a
# detector trained for minutes should already do well (a sanity check, and a second benchmark).
EASY = {"min_scale": 0.1, "max_objects": 5, "max_occlusion": 0.1, "clutter": False}


@dataclass
class SynthSummary:
    out: Path
    images: dict[str, int]  # split -> images written
    boxes: dict[str, list[int]]  # split -> boxes per class
    side_range: tuple[float, float]  # smallest / largest box longest side, fraction of the image
    aspect_range: dict[str, tuple[float, float]]  # class -> (min, max) of h / w
    video_frames: int = 0
    seconds: float = 0.0
    names: list[str] = field(default_factory=lambda: list(CLASS_NAMES))


# ---------------------------------------------------------------- shapes


def _unit_polygon(cls: int, rng: np.random.Generator) -> np.ndarray:
    """Vertices of class `cls` in a unit box centred at 0 -> float [K, 2] (x, y), y down."""
    if cls in (0, 4):  # circle / ellipse: scaled later
        t = np.linspace(0, 2 * np.pi, 48, endpoint=False)
        return 0.5 * np.stack((np.cos(t), np.sin(t)), 1)
    if cls in (1, 3):  # square / bar
        return np.array([[-0.5, -0.5], [0.5, -0.5], [0.5, 0.5], [-0.5, 0.5]])
    if cls == 2:  # triangle, apex up
        return np.array([[0.0, -0.5], [0.5, 0.5], [-0.5, 0.5]])
    # star: 5 points, inner radius ratio varies
    inner = rng.uniform(0.35, 0.5)
    t = -np.pi / 2 + np.arange(10) * np.pi / 5
    r = np.where(np.arange(10) % 2 == 0, 0.5, 0.5 * inner)
    return np.stack((r * np.cos(t), r * np.sin(t)), 1)


def shape_polygon(cls: int, scale: float, rng: np.random.Generator) -> np.ndarray:
    """Random instance of class `cls` whose longest side is about `scale` pixels.

    Returns float [K, 2] vertices relative to the object centre (pixels).
    """
    if cls == 0:
        w = h = scale
        angle = 0.0
    elif cls == 1:
        w = h = scale
        angle = rng.uniform(-15, 15)
    elif cls == 2:
        w, h = scale, scale / rng.uniform(1.1, 1.5)
        angle = rng.choice([0.0, 180.0]) + rng.uniform(-10, 10)
    elif cls == 3:
        w, h = scale / rng.uniform(2.5, 4.5), scale
        angle = rng.uniform(-8, 8)
    elif cls == 4:
        w, h = scale, scale / rng.uniform(2.0, 3.5)
        angle = rng.uniform(-8, 8)
    else:
        w = h = scale
        angle = rng.uniform(0, 72)
    w, h = max(w, 3.0), max(h, 3.0)  # a 2-px-wide bar is not a fair label
    pts = _unit_polygon(cls, rng) * (w, h)
    a = math.radians(angle)
    rot = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    return pts @ rot.T


def _fill_pattern(rng: np.random.Generator) -> dict:
    """How an object is painted: solid, a gradient between two colours, or stripes."""
    kind = rng.choice(["solid", "solid", "gradient", "stripes"], p=[0.3, 0.2, 0.35, 0.15])
    return {
        "kind": str(kind),
        "c2": rng.uniform(0, 255, 3),
        "angle": rng.uniform(0, 2 * np.pi),
        "period": rng.uniform(4, 12),
        "outline": bool(rng.random() < 0.25),
    }


def _paint(h: int, w: int, c1: np.ndarray, pat: dict) -> np.ndarray:
    """The object's texture over its box -> uint8 [h, w, 3]."""
    if pat["kind"] == "solid":
        return np.broadcast_to(c1.astype(np.uint8), (h, w, 3))
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    d = xx * math.cos(pat["angle"]) + yy * math.sin(pat["angle"])  # [h,w]
    if pat["kind"] == "gradient":
        t = (d - d.min()) / max(float(d.max() - d.min()), 1.0)
        t = 0.6 * t  # keep c1 dominant so the contrast check stays meaningful
    else:
        t = 0.5 * ((d // pat["period"]) % 2)
    out = c1[None, None] * (1 - t[..., None]) + pat["c2"][None, None] * t[..., None]
    return out.astype(np.uint8)


def polygon_mask(pts: np.ndarray, cx: float, cy: float) -> tuple[np.ndarray, int, int]:
    """Rasterise vertices (relative to centre `cx, cy`) -> (mask uint8 [h, w], x0, y0).

    The mask covers exactly the polygon's integer box (x0, y0) .. (x0 + w, y0 + h).
    """
    ipts = np.round(pts + (cx, cy)).astype(np.int32)  # [K,2]
    x0, y0 = ipts.min(0)
    x1, y1 = ipts.max(0) + 1
    mask = np.zeros((y1 - y0, x1 - x0), np.uint8)
    cv2.fillPoly(mask, [ipts - (x0, y0)], 255, lineType=cv2.LINE_8)
    return mask, int(x0), int(y0)


def draw_object(
    img: np.ndarray, mask: np.ndarray, x0: int, y0: int, color: np.ndarray, pat: dict
) -> np.ndarray | None:
    """Paint the object `mask` at (x0, y0) into `img` (clipped to the image).

    Returns the drawn pixels' box `(x1, y1, x2, y2)` float32 in pixel edges, or None when
    nothing of it is inside the image.
    """
    H, W = img.shape[:2]
    h, w = mask.shape
    ax0, ay0, ax1, ay1 = max(x0, 0), max(y0, 0), min(x0 + w, W), min(y0 + h, H)
    if ax1 <= ax0 or ay1 <= ay0:
        return None
    m = mask[ay0 - y0 : ay1 - y0, ax0 - x0 : ax1 - x0] > 0
    if not m.any():
        return None
    paint = _paint(h, w, color, pat)[ay0 - y0 : ay1 - y0, ax0 - x0 : ax1 - x0]
    roi = img[ay0:ay1, ax0:ax1]
    roi[m] = paint[m]
    if pat["outline"]:  # a darker rim, inside the mask so the box is unchanged
        edge = m & ~cv2.erode(m.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
        roi[edge] = (roi[edge] * 0.5).astype(np.uint8)
    cols, rows = np.flatnonzero(m.any(0)), np.flatnonzero(m.any(1))
    return np.array(
        [ax0 + cols[0], ay0 + rows[0], ax0 + cols[-1] + 1, ay0 + rows[-1] + 1], np.float32
    )


# ---------------------------------------------------------------- backgrounds and clutter


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """Gradient + soft blotches + low-frequency texture, drawn small and upscaled (cheap)."""
    s = max(size // 4, 8)
    yy, xx = np.mgrid[0:s, 0:s].astype(np.float32) / s
    a = rng.uniform(0, 2 * np.pi)
    t = (xx * math.cos(a) + yy * math.sin(a))[..., None]  # [s,s,1]
    t = (t - t.min()) / max(float(t.max() - t.min()), 1e-6)
    c0, c1 = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
    small = (c0 * (1 - t) + c1 * t).astype(np.float32)  # [s,s,3]
    for _ in range(rng.integers(0, 7)):  # blotches
        layer = small.copy()
        r = int(rng.integers(2, max(3, s // 3)))
        center = (int(rng.integers(0, s)), int(rng.integers(0, s)))
        axes = (r, int(r * rng.uniform(0.4, 1.0)))
        cv2.ellipse(layer, center, axes, rng.uniform(0, 180), 0, 360, rng.uniform(0, 255, 3), -1)
        alpha = rng.uniform(0.15, 0.5)
        small = cv2.addWeighted(layer, alpha, small, 1 - alpha, 0)
    grain = rng.integers(4, 24)
    tex = rng.normal(0, rng.uniform(0, 40), (grain, grain, 3)).astype(np.float32)
    small += cv2.resize(tex, (s, s), interpolation=cv2.INTER_CUBIC)
    bg = cv2.resize(small, (size, size), interpolation=cv2.INTER_CUBIC)
    return np.clip(bg, 0, 255).astype(np.uint8)


def _rand_color(rng: np.random.Generator) -> tuple[float, float, float]:
    return tuple(float(v) for v in rng.uniform(0, 255, 3))


def _clutter(img: np.ndarray, rng: np.random.Generator, lines: int, distractors: int) -> None:
    """Random lines and unlabelled distractors that are none of the classes, drawn in place."""
    size = img.shape[0]
    pt = lambda: (int(rng.integers(0, size)), int(rng.integers(0, size)))  # noqa: E731
    for _ in range(lines):
        cv2.line(img, pt(), pt(), _rand_color(rng), int(rng.integers(1, 3)), cv2.LINE_AA)
    for _ in range(distractors):
        kind = rng.integers(0, 5)
        color, thick = _rand_color(rng), int(rng.integers(1, 3))
        if kind == 0:  # ring or arc: an outline, never a filled circle
            r = int(rng.integers(max(3, size // 40), max(4, size // 6)))
            start = rng.uniform(0, 360)
            span = 360.0 if rng.random() < 0.5 else rng.uniform(60, 300)
            axes = (r, int(r * rng.uniform(0.5, 1.0)))
            cv2.ellipse(img, pt(), axes, rng.uniform(0, 180), start, start + span, color, thick)
        elif kind == 1:  # text
            txt = "".join(chr(int(c)) for c in rng.integers(65, 91, int(rng.integers(1, 4))))
            scale = rng.uniform(0.3, 1.2) * size / 320
            cv2.putText(img, txt, pt(), int(rng.integers(0, 8)), scale, color, thick, cv2.LINE_AA)
        elif kind == 2:  # zigzag / scribble
            n = int(rng.integers(3, 8))
            p0 = np.array(pt(), np.float32)
            steps = rng.normal(0, size / 20, (n, 2))
            pts = np.round(p0 + np.cumsum(steps, 0)).astype(np.int32)
            cv2.polylines(img, [pts], False, color, thick, cv2.LINE_AA)
        elif kind == 3:  # dotted patch
            x, y = pt()
            step = int(rng.integers(3, 7))
            for i in range(int(rng.integers(2, 6))):
                for j in range(int(rng.integers(2, 6))):
                    cv2.circle(img, (x + i * step, y + j * step), 1, color, -1)
        else:  # hollow rectangle outline with a gap (not a filled square / bar)
            x, y = pt()
            w, h = int(rng.integers(6, max(7, size // 5))), int(rng.integers(6, max(7, size // 5)))
            cv2.polylines(
                img, [np.array([[x, y + h], [x, y], [x + w, y], [x + w, y + h]])], False, color, 1
            )


@functools.lru_cache(maxsize=4)
def _noise_bank(seed: int, size: int) -> np.ndarray:
    """Standard normal noise float32 [2S, 2S, 3]; images take random crops of it.

    Drawing fresh gaussian noise per image was two thirds of the generation time.
    """
    rng = np.random.default_rng([seed, 99])
    return rng.standard_normal((2 * size, 2 * size, 3), dtype=np.float32)


def _finish(img: np.ndarray, rng: np.random.Generator, seed: int) -> np.ndarray:
    """Sensor-like degradation: slight blur sometimes, then gaussian noise."""
    if rng.random() < 0.25:
        img = cv2.GaussianBlur(img, (3, 3), 0)
    h, w = img.shape[:2]
    bank = _noise_bank(seed, max(h, w))
    oy, ox = int(rng.integers(0, bank.shape[0] - h)), int(rng.integers(0, bank.shape[1] - w))
    noisy = cv2.scaleAdd(bank[oy : oy + h, ox : ox + w], rng.uniform(2, 28), img.astype(np.float32))
    return np.clip(noisy, 0, 255, out=noisy).astype(np.uint8)


def _contrasting_color(rng: np.random.Generator, under: np.ndarray) -> np.ndarray:
    """A random colour far enough from the mean background colour `under` [3] to be fair."""
    for _ in range(20):
        c = rng.uniform(0, 255, 3)
        if np.linalg.norm(c - under) >= 70:
            return c
    return np.where(under > 127, 0.0, 255.0) + rng.uniform(-30, 30, 3).clip(-30, 30)


# ---------------------------------------------------------------- images


def render_image(
    rng: np.random.Generator, cfg: SynthConfig
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One synthetic image.

    Returns:
        img uint8 [S, S, 3] BGR, boxes float32 [N, 4] `(x1, y1, x2, y2)` pixels, classes int64 [N].
    """
    size = cfg.size
    img = _background(rng, size)
    lines, distractors = int(rng.integers(0, 10)), int(rng.integers(1, 7))
    if cfg.clutter:
        _clutter(img, rng, lines, distractors)
    owner = np.full((size, size), -1, np.int16)  # which object a pixel shows (occlusion control)
    area: list[int] = []  # pixels per object when drawn
    visible: list[int] = []
    boxes, classes = [], []
    lo, hi = math.log(cfg.min_scale * size), math.log(cfg.max_scale * size)
    for _ in range(int(rng.integers(cfg.min_objects, cfg.max_objects + 1))):
        cls = int(rng.integers(0, len(CLASS_NAMES)))
        for _try in range(15):
            pts = shape_polygon(cls, math.exp(rng.uniform(lo, hi)), rng)
            ext = np.ceil(np.abs(pts).max(0)) + 1  # keep the whole object inside the image
            if np.any(2 * ext >= size):
                continue
            cx = rng.uniform(ext[0], size - ext[0])
            cy = rng.uniform(ext[1], size - ext[1])
            mask, x0, y0 = polygon_mask(pts, cx, cy)
            m = mask > 0
            own = owner[y0 : y0 + m.shape[0], x0 : x0 + m.shape[1]]
            covered = own[m]
            hit = np.bincount(covered[covered >= 0], minlength=len(area))
            if any(
                v - c < (1 - cfg.max_occlusion) * a
                for v, c, a in zip(visible, hit, area, strict=True)
            ):
                continue  # would hide too much of an earlier object
            under = img[y0 : y0 + m.shape[0], x0 : x0 + m.shape[1]][m].mean(0)
            box = draw_object(img, mask, x0, y0, _contrasting_color(rng, under), _fill_pattern(rng))
            if box is None:
                continue
            own[m] = len(area)
            visible = [v - c for v, c in zip(visible, hit, strict=True)] + [int(m.sum())]
            area.append(int(m.sum()))
            boxes.append(box)
            classes.append(cls)
            break
    if rng.random() < 0.3 and cfg.clutter:  # a few thin lines over everything, labels stay
        _clutter(img, rng, int(rng.integers(1, 3)), 0)
    img = _finish(img, rng, cfg.seed)
    return (
        img,
        np.array(boxes, np.float32).reshape(-1, 4),
        np.array(classes, np.int64),
    )


def yolo_lines(boxes: np.ndarray, classes: np.ndarray, size: int) -> str:
    """`class cx cy w h` lines (normalised 0..1) for xyxy pixel boxes."""
    lines = []
    for (x1, y1, x2, y2), c in zip(boxes.tolist(), classes.tolist(), strict=True):
        cx, cy, w, h = (
            (x1 + x2) / 2 / size,
            (y1 + y2) / 2 / size,
            (x2 - x1) / size,
            (y2 - y1) / size,
        )
        lines.append(f"{c} {cx:.6f} {cy:.6f} {w:.6f} {h:.6f}\n")
    return "".join(lines)


# ---------------------------------------------------------------- video


def render_video_frames(cfg: SynthConfig):
    """Yield (frame uint8 [S, S, 3], boxes float32 [N, 4], classes int64 [N]) of moving shapes:
    `render_video_tracks` without the identities (every object, even a hidden one)."""
    for frame, boxes, classes, _, _ in render_video_tracks(cfg):
        yield frame, boxes, classes


def _stamp(owner: np.ndarray, mask: np.ndarray, x0: int, y0: int, k: int) -> int:
    """Write `k` into `owner` [S, S] where `mask` (placed at x0, y0, clipped) is set; return
    how many pixels that was."""
    H, W = owner.shape
    h, w = mask.shape
    ax0, ay0, ax1, ay1 = max(x0, 0), max(y0, 0), min(x0 + w, W), min(y0 + h, H)
    if ax1 <= ax0 or ay1 <= ay0:
        return 0
    m = mask[ay0 - y0 : ay1 - y0, ax0 - x0 : ax1 - x0] > 0
    owner[ay0:ay1, ax0:ax1][m] = k
    return int(m.sum())


def render_video_tracks(cfg: SynthConfig):
    """The clip of moving shapes, with the ground truth a tracker is scored against.

    3-6 shapes bounce off the borders at constant speeds (1.5-5 px a frame), crossing and
    overlapping one another (the smaller drawn on top); `cfg.occluders` static screens hide
    them as they pass behind. Yields per frame:
        frame uint8 [S, S, 3] BGR, boxes float32 [N, 4] xyxy pixels (each object's whole extent,
        hidden parts included, as MOTChallenge annotates), classes int64 [N], ids int64 [N]
        (1, 2, ...: the same object keeps its id), visibility float32 [N] (the fraction of its
        pixels shown: 0 when wholly hidden).
    The frames and boxes are those of earlier versions for `occluders` 0 (the screens draw from
    a generator of their own).
    """
    size = cfg.size
    rng = np.random.default_rng([cfg.seed, 2])
    bg = _background(rng, size)
    _clutter(bg, rng, int(rng.integers(2, 8)), int(rng.integers(2, 6)))
    objs = []
    for k in range(int(rng.integers(3, 7))):
        cls = k % len(CLASS_NAMES) if k < len(CLASS_NAMES) else int(rng.integers(0, 6))
        pts = shape_polygon(cls, rng.uniform(0.08, 0.3) * size, rng)
        ext = np.ceil(np.abs(pts).max(0)) + 1
        pos = rng.uniform(ext, size - ext)
        vel = rng.uniform(1.5, 5.0, 2) * rng.choice([-1, 1], 2)
        under = bg[int(pos[1]), int(pos[0])].astype(np.float64)
        pat = _fill_pattern(rng)
        pat["kind"] = "solid"  # a moving gradient would need its own frame of reference
        objs.append([cls, pts, ext, pos, vel, _contrasting_color(rng, under), pat])
    objs.sort(key=lambda o: -float(np.ptp(o[1], 0).prod()))  # big first: small ones stay visible
    screens = []  # (x1, x2, texture): full-height bands of another background
    orng = np.random.default_rng([cfg.seed, 3])
    for _ in range(cfg.occluders):
        w = int(orng.uniform(0.1, 0.16) * size)
        x1 = int(orng.integers(0, size - w))
        screens.append((x1, x1 + w, _background(orng, size)[:, x1 : x1 + w]))
    for _ in range(cfg.frames):
        frame = bg.copy()
        owner = np.full((size, size), -1, np.int32)  # which object each pixel shows
        boxes, classes, ids, area = [], [], [], []
        for k, o in enumerate(objs):
            cls, pts, ext, pos, vel, color, pat = o
            mask, x0, y0 = polygon_mask(pts, *pos)
            box = draw_object(frame, mask, x0, y0, color, pat)
            if box is not None:
                boxes.append(box)
                classes.append(cls)
                ids.append(k + 1)
                area.append(_stamp(owner, mask, x0, y0, k + 1))
            pos += vel
            for d in range(2):  # bounce off the borders
                if pos[d] < ext[d] or pos[d] > size - ext[d]:
                    vel[d] = -vel[d]
                    pos[d] = np.clip(pos[d], ext[d], size - ext[d])
        for x1, x2, texture in screens:
            frame[:, x1:x2] = texture
            owner[:, x1:x2] = 0
        shown = np.bincount(owner.ravel() + 1, minlength=len(objs) + 2)[2:]  # per id 1..
        visible = [shown[i - 1] / max(a, 1) for i, a in zip(ids, area, strict=True)]
        yield (
            _finish(frame, rng, cfg.seed),
            np.array(boxes, np.float32).reshape(-1, 4),
            np.array(classes, np.int64),
            np.array(ids, np.int64),
            np.array(visible, np.float32),
        )


# ---------------------------------------------------------------- the data set


def _check(cfg: SynthConfig) -> None:
    if cfg.train < 1 or cfg.val < 1:
        raise DetectError(f"--train and --val must be >= 1, got {cfg.train} and {cfg.val}")
    if cfg.size < 32:
        raise DetectError(f"--size must be >= 32 pixels, got {cfg.size}")
    if cfg.occluders < 0:
        raise DetectError(f"--occluders must be >= 0, got {cfg.occluders}")
    if cfg.video and (cfg.frames < 1 or cfg.fps < 1):
        raise DetectError(f"--frames and --fps must be >= 1, got {cfg.frames} and {cfg.fps}")
    if not 1 <= cfg.min_objects <= cfg.max_objects:
        raise DetectError("objects per image: need 1 <= min <= max")


def make_synth(out: str | Path, cfg: SynthConfig, callback: Callback | None = None) -> SynthSummary:
    """Write the synthetic data set to `out` (must not exist or be an empty folder).

    Everything is written into a temporary sibling folder renamed to `out` at the end, so `out`
    is either complete or absent. `callback(done, total)` is called after each image / frame.
    Raises DetectError for bad settings or a non-empty `out`; WriteError (`cannot write OUT:
    reason`) before any work when OUT's folder is read-only, unwritable or full, and when a
    write fails (the temporary folder removed: OUT then does not exist).
    """
    _check(cfg)
    out = Path(out).absolute()
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise DetectError(f"{out}: exists and is not empty; choose a new folder")
    check_writable(out)
    t0 = time.perf_counter()
    with writing(out):
        tmp = temp_dir_beside(out)
    total = cfg.train + cfg.val + (cfg.frames if cfg.video else 0)
    done = 0
    boxes_per = {s: [0] * len(CLASS_NAMES) for s in SPLITS}
    sides: list[float] = []
    aspects: dict[int, list[float]] = {c: [] for c in range(len(CLASS_NAMES))}
    params = [int(cv2.IMWRITE_JPEG_QUALITY), cfg.jpeg_quality]
    try:
        for split, split_id in SPLITS.items():
            (tmp / "images" / split).mkdir(parents=True)
            (tmp / "labels" / split).mkdir(parents=True)
            for i in range(cfg.train if split == "train" else cfg.val):
                img, boxes, classes = render_image(
                    np.random.default_rng([cfg.seed, split_id, i]), cfg
                )
                ok, jpg = cv2.imencode(".jpg", img, params)
                if not ok:
                    raise DetectError(f"{out}: OpenCV could not encode an image")
                put_bytes(tmp / "images" / split / f"{i:06d}.jpg", jpg.tobytes())
                label = yolo_lines(boxes, classes, cfg.size)
                put_bytes(tmp / "labels" / split / f"{i:06d}.txt", label.encode())
                for b, c in zip(boxes, classes.tolist(), strict=True):
                    boxes_per[split][c] += 1
                    w, h = float(b[2] - b[0]), float(b[3] - b[1])
                    sides.append(max(w, h) / cfg.size)
                    aspects[c].append(h / w)
                done += 1
                if callback:
                    callback(done, total)
        frames = 0
        if cfg.video:
            frames = _write_video(tmp, cfg, callback, done, total)
        data = {
            "path": str(out),
            "train": "images/train",
            "val": "images/val",
            "names": dict(enumerate(CLASS_NAMES)),
        }
        header = f"# detect synth --seed {cfg.seed} --size {cfg.size}\n"
        put_bytes(tmp / "data.yaml", (header + yaml.safe_dump(data, sort_keys=False)).encode())
        if out.exists():
            out.rmdir()  # empty (checked above)
        os.rename(tmp, out)
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(e, OSError):  # a full disk: the partial folder is gone
            raise WriteError(out, e) from None
        raise
    return SynthSummary(
        out=out,
        images={"train": cfg.train, "val": cfg.val},
        boxes=boxes_per,
        side_range=(min(sides, default=0.0), max(sides, default=0.0)),
        aspect_range={
            CLASS_NAMES[c]: (min(v), max(v)) if v else (0.0, 0.0) for c, v in aspects.items()
        },
        video_frames=frames,
        seconds=time.perf_counter() - t0,
    )


def _write_video(
    tmp: Path, cfg: SynthConfig, callback: Callback | None, done: int, total: int
) -> int:
    path = tmp / "video.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), cfg.fps, (cfg.size,) * 2)
    if not writer.isOpened():
        raise DetectError(f"{path}: OpenCV cannot write mp4v video here")
    labels = tmp / "video_labels"
    labels.mkdir()
    n = 0
    try:
        gt = []  # MOTChallenge ground-truth rows
        for frame, boxes, classes, ids, vis in render_video_tracks(cfg):
            writer.write(frame)
            n += 1
            gt.append(gt_lines(n, ids, boxes, classes, vis))
            boxes, classes = boxes[vis > 0], classes[vis > 0]  # labels: what can be seen
            put_bytes(labels / f"frame_{n:06d}.txt", yolo_lines(boxes, classes, cfg.size).encode())
            if callback:
                callback(done + n, total)
        (tmp / "video_gt.txt").write_text("".join(gt))
    finally:
        writer.release()
    if not mp4_complete(path):  # OpenCV reports no write error: a full disk cuts the file short
        raise short_write(tmp)
    return n
