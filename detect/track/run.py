"""`detect track` as a library call: frames in, tracks with identities out (never prints).

`track_frames` is the one loop (the CLI's `run_track` and `detect.Detector.track` both use it):
frames are predicted `batch` at a time (one at a time from a camera or a stream, so they track
live), and each frame's detections go, in order, to the ByteTracker of its sequence. A sequence
is one video, camera or stream, or the images of one SOURCE argument (a folder of frames, as
MOTChallenge ships them), in their sorted order.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import cv2
import numpy as np

from detect.errors import DetectError
from detect.files import atomic_write_bytes, check_writable, new_run_dir
from detect.inference.draw import draw_detections
from detect.inference.outputs import VideoOut
from detect.inference.run import make_predictor
from detect.inference.sources import Frame, count_frames, expand_sources, iter_frames
from detect.inference.stream import prefetch
from detect.settings import PredictConfig, TrackerConfig
from detect.track.bytetrack import ByteTracker
from detect.track.mot import MotWriter

LIVE = ("camera", "stream")
# `detect track` runs the detector down to ByteTrack's low threshold: its second association
# needs the low-score boxes (ultralytics' `track` runs at conf 0.1 for the same reason)
TRACK_CONF = TrackerConfig.low_thresh


class Tracked(NamedTuple):
    """One frame after tracking: `tracks` float32 [T, 8] rows (x1, y1, x2, y2, id, score,
    class, det) as `ByteTracker.update` returns them (None for a frame that could not be read:
    `frame.error` says why), `dets` the detector's float32 [K, 6] rows, `key` its sequence."""

    frame: Frame
    tracks: np.ndarray | None
    dets: np.ndarray | None
    key: Any


def sequence_key(frame: Frame) -> Any:
    """Which sequence a frame belongs to: its video, camera or stream; for images the SOURCE
    argument they came from."""
    s = frame.source
    return ("images", s.arg) if s.kind == "image" else ("video", id(s), s.name)


def track_frames(
    frames: Iterable[Frame],
    predictor: Callable[[list[np.ndarray]], list[np.ndarray]],
    tracker: TrackerConfig | None = None,
    batch: int = 8,
    trackers: dict | None = None,
) -> Iterator[Tracked]:
    """Detect and track `frames`, yielding one `Tracked` per frame in order.

    Args:
        frames: Frames (detect.inference.sources) in time order; BGR uint8 images.
        predictor: BGR images -> one float32 [K, 6] array each (x1, y1, x2, y2, score, class),
            a `Predictor` or `ExportedPredictor`; run at a conf <= `tracker.low_thresh`.
        tracker: ByteTrack's settings.
        batch: frames per forward pass (frames of cameras and streams go one at a time).
        trackers: {sequence key: ByteTracker}, kept by the caller to carry tracks over several
            calls (`Detector.track(frame, persist=True)`); a new dict otherwise. A sequence's
            buffer scales with its frame rate (30 fps when unknown, as for images).
    """
    tcfg = (tracker or TrackerConfig()).check()
    trackers = {} if trackers is None else trackers
    pending: list[Frame] = []

    def flush() -> Iterator[Tracked]:
        good = [f for f in pending if f.error is None]
        results = iter(predictor([f.image for f in good]) if good else [])
        for f in pending:
            key = sequence_key(f)
            if f.error is not None:
                yield Tracked(f, None, None, key)
                continue
            dets = next(results)
            if key not in trackers:
                trackers[key] = ByteTracker(tcfg, fps=f.fps or 30.0)
            yield Tracked(f, trackers[key].update(dets), dets, key)

    for frame in frames:
        pending.append(frame)
        if frame.source.kind in LIVE or sum(f.error is None for f in pending) >= batch:
            yield from flush()
            pending = []
    yield from flush()


@dataclass
class SequenceStats:
    """One tracked sequence: a video, a camera, a stream, or the images of a SOURCE argument."""

    name: str
    kind: str  # "video" | "camera" | "stream" | "images"
    frames: int = 0
    tracks: int = 0  # distinct objects (confirmed track ids)
    class_counts: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # [C]
    failed: int = 0
    mot: Path | None = None  # its MOTChallenge rows (--save-txt)
    video: Path | None = None  # its annotated video


@dataclass
class TrackSummary:
    """What a `run_track` did; the CLI turns it into tables and the exit code."""

    names: list[str]
    run_dir: Path | None
    sequences: list[SequenceStats]
    class_counts: np.ndarray  # int64 [C] distinct objects per class, summed over sequences
    frames: int = 0
    tracks: int = 0
    failed: list[str] = field(default_factory=list)
    ms: dict[str, float] = field(default_factory=dict)  # per frame: pre, inference, post
    total: int | None = None
    interrupted: bool = False
    seconds: float = 0.0
    imgsz: int = 0
    device: str = "cpu"
    saved_images: int = 0


def run_track(
    sources: Sequence[str],
    weights: Any,
    cfg: PredictConfig | None = None,
    tracker: TrackerConfig | None = None,
    device: str = "auto",
    out: str | Path = "runs/track",
    save_images: bool = True,
    save_txt: bool = False,
    vid_stride: int = 1,
    line_width: int | None = None,
    callback: Callable[[int, int | None, str], None] | None = None,
) -> TrackSummary:
    """Track objects in SOURCE arguments and write the results; the library side of
    `detect track`.

    Args:
        sources: video files, stream URLs, camera indices, folders of frames (one sequence per
            folder, glob or list, in sorted order), image files.
        weights: a weights path, an exported model, or a model in memory.
        cfg: the detector's settings; its `conf` should be at most `tracker.low_thresh`
            (PredictConfig(conf=TRACK_CONF) is what the CLI passes).
        tracker: ByteTrack's settings (TrackerConfig()).
        out: the run folder (a new one: `runs/track-2`, ...); made when something is saved.
        save_images: annotated videos (mp4v, the source's fps and size) and images, each box
            labelled with its track id and coloured by it.
        save_txt: MOTChallenge rows `frame,id,x,y,w,h,conf,-1,-1,-1`, one file per sequence:
            `mot/<name>.txt`; frame numbers are the video's own, from 1 (with `vid_stride`
            N: 1, N + 1, ...), a folder's images numbered 1, 2, ... in sorted order.
        callback: `callback(done, total, source_name)` after each frame (total None: unknown).
    Returns:
        TrackSummary. Unreadable inputs are skipped and listed. Ctrl-C (KeyboardInterrupt)
        ends the run early with every file whole: the videos and MOT files hold the frames
        done; the summary says `interrupted`.
    Raises:
        DetectError before any work for a missing path, bad options or weights, and when an
        output cannot be written.
    """
    t0 = time.perf_counter()
    cfg = (cfg or PredictConfig(conf=TRACK_CONF)).check()
    tcfg = (tracker or TrackerConfig()).check()
    if vid_stride < 1:
        raise DetectError(f"--vid-stride must be >= 1, got {vid_stride}")
    srcs = expand_sources(sources)
    if save_images or save_txt:  # a read-only or full destination: one line before the model
        check_writable(out)
    predictor = make_predictor(weights, cfg, device)
    names = list(predictor.names)
    total = count_frames(srcs, vid_stride) if callback is not None else None
    run_dir = new_run_dir(out) if (save_images or save_txt) else None
    runtime = f"cpu ({predictor.runtime})" if predictor.exported else str(predictor.device)
    summary = TrackSummary(names, run_dir, [], np.zeros(len(names), np.int64), total=total,
                           imgsz=predictor.imgsz, device=runtime)  # fmt: skip
    writer = _SequenceWriter(run_dir, names, save_images, save_txt, line_width, summary)
    frames = prefetch(iter_frames(srcs, vid_stride), depth=2 * cfg.batch)
    done, ok = 0, False
    try:
        for item in track_frames(frames, predictor, tcfg, cfg.batch):
            writer.add(item)
            done += 1
            if callback is not None:
                callback(done, total, item.frame.source.name)
        ok = True
    except KeyboardInterrupt:
        summary.interrupted = ok = True
    finally:
        writer.close(keep=ok)
    summary.ms = predictor.ms_per_image()
    summary.seconds = time.perf_counter() - t0
    return summary


class _SequenceWriter:
    """Writes each tracked frame (annotated video or image, MOT rows) and counts it; opens
    and closes a sequence's files when the sequence changes."""

    def __init__(self, run_dir, names, save_images, save_txt, line_width, summary) -> None:
        self.run_dir, self.names, self.summary = run_dir, names, summary
        self.save_images, self.save_txt, self.line_width = save_images, save_txt, line_width
        self.key: Any = None
        self.seq: SequenceStats | None = None
        self.ids: dict[int, int] = {}  # id -> class, of this sequence
        self.video = None
        self.mot: MotWriter | None = None

    def _open(self, item: Tracked) -> None:
        self.close()
        src = item.frame.source
        is_images = src.kind == "image"
        name = src.arg if is_images else src.name
        self.seq = SequenceStats(name, "images" if is_images else src.kind)
        self.summary.sequences.append(self.seq)
        self.key, self.ids = item.key, {}
        if self.save_txt and self.run_dir is not None:
            stem = Path(src.arg.rstrip("/\\")).name if is_images else src.rel.stem
            path = _unique(self.run_dir / "mot" / f"{stem or 'images'}.txt")
            self.mot, self.seq.mot = MotWriter(path), path

    def add(self, item: Tracked) -> None:
        if self.seq is None or item.key != self.key:
            self._open(item)
        seq, f = self.seq, item.frame
        if item.tracks is None:
            seq.failed += 1
            self.summary.failed.append(f.error)
            return
        seq.frames += 1
        self.summary.frames += 1
        rows = item.tracks
        for tid, cls in zip(rows[:, 4].astype(int).tolist(), rows[:, 6].astype(int).tolist(),
                            strict=True):  # fmt: skip
            self.ids[tid] = cls  # (a track's class is its latest vote)
        if self.mot is not None:  # a video's own frame numbers; a folder's frames in order
            self.mot.write(seq.frames if f.source.kind == "image" else f.index + 1, rows)
        if self.save_images and self.run_dir is not None:
            self._draw(item)

    def _draw(self, item: Tracked) -> None:
        f, rows = item.frame, item.tracks
        dets = np.concatenate([rows[:, :4], rows[:, 5:7]], 1)
        img = draw_detections(f.image, dets, self.names, self.line_width, ids=rows[:, 4])
        if f.source.kind == "image":
            rel = f.source.rel.with_suffix(".jpg")
            ok, buf = cv2.imencode(".jpg", img)
            if not ok:
                raise DetectError(f"cannot encode image {self.run_dir / rel}")
            atomic_write_bytes(self.run_dir / rel, buf.tobytes())
            self.summary.saved_images += 1
            return
        if self.video is None:
            h, w = img.shape[:2]
            path = self.run_dir / f.source.rel.with_suffix(".mp4")
            self.video, self.seq.video = VideoOut(path, f.fps or 30.0, (w, h)), path
        self.video.write(img)

    def close(self, keep: bool = True) -> None:
        """Finish the current sequence: its files renamed into place, its counts summed."""
        video, mot, self.video, self.mot = self.video, self.mot, None, None
        try:
            if video is not None:  # (whole after release: it holds the frames written)
                video.close()
        finally:  # (a video that could not be finished still lets the MOT file go)
            if mot is not None:
                mot.close(keep)
        seq, s = self.seq, self.summary
        if seq is None:
            return
        counts = np.zeros(max([len(self.names), *(c + 1 for c in self.ids.values())]), np.int64)
        for c in self.ids.values():
            counts[c] += 1
        seq.tracks, seq.class_counts = len(self.ids), counts
        s.tracks += seq.tracks
        if len(counts) > len(s.class_counts):
            s.class_counts = np.pad(s.class_counts, (0, len(counts) - len(s.class_counts)))
        s.class_counts[: len(counts)] += counts
        self.seq = None


def _unique(path: Path) -> Path:
    """`path`, or `name-2.txt`, ... when a file of that name exists."""
    n, p = 1, path
    while p.exists():
        n += 1
        p = path.with_name(f"{path.stem}-{n}{path.suffix}")
    return p
