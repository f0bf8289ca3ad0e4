"""The Kalman filter ByteTrack tracks boxes with: SORT / DeepSORT's constant-velocity model.

State (8): box centre x, y, aspect ratio a = w / h, height h, and their velocities, in pixels
per frame. Measurement (4): (x, y, a, h) of a detection. The noise scales with the box height
(`std_weight_position` 1/20, `std_weight_velocity` 1/160), as in DeepSORT (Wojke et al. 2017)
and ByteTrack's `yolox/tracker/kalman_filter.py`, whose numbers these are; the aspect ratio
gets fixed small noise (1e-2 position, 1e-5 velocity, 1e-1 measurement).
"""

from __future__ import annotations

import numpy as np

_POS = 1.0 / 20
_VEL = 1.0 / 160

# x_{t+1} = F x_t: positions move by their velocities, one frame at a time
_F = np.eye(8)
_F[:4, 4:] = np.eye(4)
_H = np.eye(4, 8)  # the measurement is the position half of the state


def xyxy_to_xyah(box: np.ndarray) -> np.ndarray:
    """(x1, y1, x2, y2) -> (cx, cy, w / h, h), float64 [4] (a box of zero height gets a = 0)."""
    x1, y1, x2, y2 = (float(v) for v in box)
    w, h = x2 - x1, y2 - y1
    return np.array([(x1 + x2) / 2, (y1 + y2) / 2, w / h if h > 0 else 0.0, h])


def xyah_to_xyxy(m: np.ndarray) -> np.ndarray:
    """The first four state entries (cx, cy, a, h) -> (x1, y1, x2, y2), float64 [4]."""
    cx, cy, a, h = m[:4]
    w = a * h
    return np.array([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2])


def initiate(measurement: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A new track's state from its first box (x, y, a, h): (mean [8], covariance [8, 8]),
    velocities 0 with a wide uncertainty."""
    h = measurement[3]
    std = [2 * _POS * h, 2 * _POS * h, 1e-2, 2 * _POS * h,
           10 * _VEL * h, 10 * _VEL * h, 1e-5, 10 * _VEL * h]  # fmt: skip
    return np.r_[measurement, np.zeros(4)], np.diag(np.square(std))


def predict(
    mean: np.ndarray, cov: np.ndarray, freeze_height: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """One frame ahead. `freeze_height`: the height velocity set to 0 first (ByteTrack does this
    for a track that is not currently matched, so a lost box does not grow or shrink away)."""
    if freeze_height:
        mean = mean.copy()
        mean[7] = 0.0
    h = mean[3]
    std = [_POS * h, _POS * h, 1e-2, _POS * h, _VEL * h, _VEL * h, 1e-5, _VEL * h]
    return _F @ mean, _F @ cov @ _F.T + np.diag(np.square(std))


def update(
    mean: np.ndarray, cov: np.ndarray, measurement: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The state corrected by a matched box (x, y, a, h): the standard Kalman update."""
    h = mean[3]
    r = np.diag(np.square([_POS * h, _POS * h, 1e-1, _POS * h]))
    s = _H @ cov @ _H.T + r  # innovation covariance [4, 4]
    gain = np.linalg.solve(s, (cov @ _H.T).T).T  # K = P H^T S^-1 (S symmetric) [8, 4]
    new_mean = mean + gain @ (measurement - _H @ mean)
    new_cov = cov - gain @ s @ gain.T
    return new_mean, new_cov
