"""Multi-object tracking: identities for the detector's boxes across video frames.

- `ByteTracker` (`bytetrack.py`): ByteTrack (Zhang et al., "ByteTrack: Multi-Object Tracking by
  Associating Every Detection Box", ECCV 2022) with its Kalman filter (`kalman.py`, SORT /
  DeepSORT's constant-velocity model); numpy and `lap` (the authors' assignment solver).
  Its settings, `TrackerConfig`, live in detect.settings with the others.
- `run_track` (`run.py`): `detect track` as a library call: SOURCE arguments in, annotated
  videos with IDs, MOTChallenge rows and a per-class count of distinct objects out.
- `mot.py`: MOTChallenge text rows (`frame,id,x,y,w,h,conf,-1,-1,-1`), read and written.

Importing this package loads no torch (a tracker is numpy; the detector is loaded by the caller).
"""

from detect.settings import TrackerConfig
from detect.track.bytetrack import ByteTracker

__all__ = ["ByteTracker", "TrackerConfig"]
