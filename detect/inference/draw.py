"""Annotating images: boxes, class names and scores in a fixed, readable palette.

A class always gets the same colour (one palette, indexed by class id), labels sit on a filled
background in that colour with black or white text, whichever contrasts more, and line width /
font size follow the image size so labels stay legible on small and large images alike.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

# Ultralytics' palette (hex RGB): 20 distinct, saturated colours.
_HEX = (
    "FF3838",
    "FF9D97",
    "FF701F",
    "FFB21D",
    "CFD231",
    "48F90A",
    "92CC17",
    "3DDB86",
    "1A9334",
    "00D4BB",
    "2C99A8",
    "00C2FF",
    "344593",
    "6473FF",
    "0018EC",
    "8438FF",
    "520085",
    "CB38FF",
    "FF95C8",
    "FF37C7",
)
PALETTE_BGR: tuple[tuple[int, int, int], ...] = tuple(
    (int(h[4:6], 16), int(h[2:4], 16), int(h[0:2], 16)) for h in _HEX
)


def color(cls: int) -> tuple[int, int, int]:
    """The BGR colour of class `cls` (fixed, cycles through the palette)."""
    return PALETTE_BGR[int(cls) % len(PALETTE_BGR)]


def text_color(bg: tuple[int, int, int]) -> tuple[int, int, int]:
    """Black or white, whichever reads better on the BGR background `bg` (by luma)."""
    b, g, r = bg
    return (0, 0, 0) if 0.299 * r + 0.587 * g + 0.114 * b > 150 else (255, 255, 255)


def label_text(cls: int, score: float | None, names: Sequence[str]) -> str:
    """'name 0.87', or the name alone without a score."""
    name = names[cls] if 0 <= cls < len(names) else str(cls)
    return name if score is None else f"{name} {score:.2f}"


def draw_detections(
    img: np.ndarray,
    dets: np.ndarray,
    names: Sequence[str],
    line_width: int | None = None,
    hide_labels: bool = False,
    hide_conf: bool = False,
    ids: np.ndarray | None = None,
) -> np.ndarray:
    """Draw detections on a BGR uint8 image, in place, and return it.

    Args:
        img: HxWx3 uint8 BGR.
        dets: ndarray[K, 6] rows (x1, y1, x2, y2, score, class) in the image's pixels.
        names: class index -> name.
        line_width: box line width in pixels (None: ~0.3% of the image's perimeter, at least 1).
        hide_labels: boxes only, no label.
        hide_conf: the class name without its score.
        ids: int [K] track ids (`detect track`): each box is coloured by its id, not its class,
            and its label starts with the id ('7 person 0.81').
    """
    h, w = img.shape[:2]
    lw = line_width or max(round((h + w) / 2 * 0.003), 1)
    font_scale = lw / 3
    thickness = max(lw - 1, 1)
    # Draw low scores first so the most confident boxes and labels end on top.
    for k in range(len(dets) - 1, -1, -1):
        x1, y1, x2, y2, score, cls = dets[k, :6]
        c = color(int(cls) if ids is None else int(ids[k]))
        p1, p2 = (int(round(x1)), int(round(y1))), (int(round(x2)), int(round(y2)))
        cv2.rectangle(img, p1, p2, c, lw, cv2.LINE_AA)
        if hide_labels:
            continue
        text = label_text(int(cls), None if hide_conf else float(score), names)
        if ids is not None:
            text = f"{int(ids[k])} {text}"
        (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, font_scale, thickness)
        th += base
        # Above the box when there is room, else just inside its top edge; kept inside the image.
        above = p1[1] - th - 2 >= 0
        tx = min(max(p1[0], 0), max(w - tw - 2, 0))
        ty1 = p1[1] - th - 2 if above else max(p1[1], 0)
        ty2 = ty1 + th + 2
        cv2.rectangle(img, (tx, ty1), (tx + tw + 2, ty2), c, -1, cv2.LINE_AA)
        cv2.putText(
            img,
            text,
            (tx + 1, ty2 - base - 1),
            cv2.FONT_HERSHEY_SIMPLEX,
            font_scale,
            text_color(c),
            thickness,
            cv2.LINE_AA,
        )
    return img
