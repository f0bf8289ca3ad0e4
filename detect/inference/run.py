"""`detect predict` as a library call: sources in, files and a summary out (never prints)."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from detect.errors import DetectError
from detect.files import (
    WriteError,
    check_writable,
    check_writable_file,
    new_run_dir,
    remove_empty_dirs,
)
from detect.inference.outputs import JsonRows, Outputs, SaveOptions
from detect.inference.sources import Frame, count_frames, expand_sources, iter_frames
from detect.inference.stream import prefetch
from detect.inference.torchfree import ExportedPredictor
from detect.runtime import ExportedModel, is_exported
from detect.settings import Method, PredictConfig


@dataclass
class SourceStats:
    """Counts for one SOURCE argument (a file, a folder, a glob, a video or a camera)."""

    arg: str
    kind: str  # "image" | "video" | "camera" | "folder" | "glob" | "list"
    frames: int = 0  # images / video frames predicted
    detections: int = 0
    failed: int = 0  # inputs (or broken videos) that could not be read


@dataclass
class PredictSummary:
    """What a `run_predict` did; the CLI turns it into tables and the exit code."""

    names: list[str]
    run_dir: Path | None  # None when nothing was written there (--no-images, no --save-txt)
    sources: list[SourceStats]
    class_counts: np.ndarray  # int64 [C] detections per class
    frames: int = 0  # images + video frames predicted
    detections: int = 0
    failed: list[str] = field(default_factory=list)  # one message per input that failed
    ms: dict[str, float] = field(default_factory=dict)  # per image: pre, inference, post
    saved_images: int = 0
    saved_videos: int = 0
    saved_labels: int = 0
    saved_crops: int = 0
    total: int | None = None  # frames expected (None: unknown, a camera or a stream)
    interrupted: bool = False  # stopped by Ctrl-C / SIGTERM: the counts are what was done
    json_path: Path | None = None
    imgsz: int = 0
    device: str = "cpu"
    method: str = "yolo"
    seconds: float = 0.0


def run_predict(
    sources: Sequence[str],
    weights: Any,
    cfg: PredictConfig | None = None,
    device: str = "auto",
    out: str | Path = "runs/predict",
    save_images: bool = True,
    save_txt: bool = False,
    save_json: Path | TextIO | None = None,
    save: SaveOptions | None = None,
    vid_stride: int = 1,
    callback: Callable[[int, int | None, str], None] | None = None,
) -> PredictSummary:
    """Predict on SOURCE arguments and write the results; the library side of `detect predict`.

    Args:
        sources: image files, folders (recursive), globs, video files, camera indices.
        weights: a weights path, an exported model (`.onnx` file, OpenVINO folder), or a
            model in memory.
        cfg: thresholds, input size, batch, method.
        out: the run folder to create (`out`, else `out-2`, ...; never overwritten); made only
            when images or label files are saved.
        save_images: annotated images, and annotated videos (mp4v, the source's fps and size;
            with `vid_stride` N only every N-th frame is predicted and written, as ultralytics).
        save_txt: `labels/<name>.txt` per image (`<name>_<frame>.txt` per video frame) with
            `class cx cy w h` rows normalised to 0..1; none for an image without detections.
        save_json: a path or an open text stream for the COCO results list.
        save: everything written to the run folder and how it is drawn (`SaveOptions`: label
            files with scores, crops, line width, hidden labels); when given, it replaces
            `save_images` and `save_txt`.
        callback: `callback(done, total, source_name)` after each frame; total is None when
            unknown (a camera).
    Returns:
        PredictSummary. Unreadable inputs are skipped and listed in `failed`. A
        KeyboardInterrupt (Ctrl-C; the CLI turns SIGTERM into one) during the frames ends the
        run early: what was written stays valid (the COCO list holds every frame done) and the
        summary says `interrupted`.
    Raises:
        DetectError before any work for a missing path, an empty folder, bad options or weights.
        WriteError (a DetectError: `cannot write PATH: reason`) before any work when `out` or
        `save_json` is in a read-only, unwritable or full place; during the frames when an
        output cannot be written (disk full): the run stops there, every file written is whole
        (the COCO list holds exactly the frames done, or does not exist) and the error's
        `summary` is the PredictSummary of the frames done.
    """
    t_start = time.perf_counter()
    cfg = (cfg or PredictConfig()).check()
    if vid_stride < 1:
        raise DetectError(f"--vid-stride must be >= 1, got {vid_stride}")
    srcs = expand_sources(sources)
    save = save or SaveOptions(images=save_images, txt=save_txt)
    if save.run_dir:
        check_writable(out)
    if isinstance(save_json, (str, Path)):
        check_writable_file(save_json)
    predictor = make_predictor(weights, cfg, device)
    total = count_frames(srcs, vid_stride) if callback is not None else None
    stats: dict[str, SourceStats] = {}
    for s in srcs:
        if s.arg not in stats:
            stats[s.arg] = SourceStats(s.arg, s.kind)
        if s.path not in (None, Path(s.arg).expanduser()):  # a file of a folder, glob or list
            p = Path(s.arg).expanduser()
            stats[s.arg].kind = "folder" if p.is_dir() else "list" if p.is_file() else "glob"
    run_dir = new_run_dir(out) if save.run_dir else None
    json_rows = JsonRows(save_json) if save_json is not None else None
    outputs = Outputs(run_dir, predictor.names, save, json_rows)
    summary = PredictSummary(
        names=predictor.names, run_dir=run_dir, sources=list(stats.values()),
        class_counts=np.zeros(max(len(predictor.names), 1), np.int64),
        imgsz=predictor.imgsz, method=Method(cfg.method).value, total=total,
        device=f"cpu ({predictor.runtime})" if predictor.exported else str(predictor.device),
    )  # fmt: skip
    tally = _Tally(summary, stats, outputs, total, callback)
    ok, failed = False, None
    try:
        pending: list[Frame] = []  # in arrival order; errors wait with the good frames
        for frame in prefetch(iter_frames(srcs, vid_stride), depth=2 * cfg.batch):
            pending.append(frame)
            if sum(f.error is None for f in pending) == cfg.batch:
                _flush(predictor, pending, tally)
                pending = []
        _flush(predictor, pending, tally)
        ok = True
    except KeyboardInterrupt:  # Ctrl-C (a camera is stopped so): keep what was written
        summary.interrupted = ok = True
    except WriteError as e:  # disk full: stop, keep what is whole
        failed = e
    finally:
        failed = _close(outputs, json_rows, ok, failed)
    summary.ms = predictor.ms_per_image()
    summary.saved_images, summary.saved_videos = outputs.images, outputs.videos
    summary.saved_labels, summary.saved_crops = outputs.labels, outputs.crops
    summary.json_path = json_rows.path if json_rows is not None else None
    if json_rows is not None and json_rows.file is not None and not json_rows.committed:
        summary.json_path = None  # it could not be written
    summary.seconds = time.perf_counter() - t_start
    if failed is not None:
        if run_dir is not None and remove_empty_dirs(run_dir):  # nothing was written into it
            summary.run_dir = None
        failed.summary = summary
        raise failed
    return summary


def _close(
    outputs: Outputs, json_rows: JsonRows | None, ok: bool, failed: WriteError | None
) -> WriteError | None:
    """Finish the video and the COCO list after the frames: kept when the run ended well, was
    interrupted or stopped at a WriteError (`failed`: an unfinished video is dropped, the list
    keeps the frames done), else removed. Returns the first WriteError."""
    try:
        outputs.close_video(keep=failed is None)
    except WriteError as e:
        failed = failed or e
    if json_rows is not None:
        try:
            json_rows.close(ok or failed is not None)
        except WriteError as e:
            failed = failed or e
    return failed


def make_predictor(weights: Any, cfg: PredictConfig, device: str = "auto") -> Any:
    """`ExportedPredictor` for an exported model (`.onnx` file, OpenVINO folder): this process
    then never imports torch; else `Predictor` (PyTorch), imported only here."""
    if isinstance(weights, ExportedModel) or (
        isinstance(weights, (str, Path)) and is_exported(weights)
    ):
        return ExportedPredictor(weights, cfg, device)
    from detect.inference.predictor import Predictor  # deferred: see the docstring

    return Predictor(weights, cfg, device)


def _flush(predictor: Any, pending: list[Frame], tally: _Tally) -> None:
    """Predict the good frames of `pending` in one batch, then write every frame in order."""
    results = iter(predictor([f.image for f in pending if f.error is None]))
    for f in pending:
        tally.add(f, None if f.error is not None else next(results))
        f.image = None  # drop pixels as soon as the frame is written


@dataclass
class _Tally:
    """Writes each finished frame and counts it into the summary, in arrival order."""

    summary: PredictSummary
    stats: dict[str, SourceStats]
    outputs: Outputs
    total: int | None
    callback: Callable[[int, int | None, str], None] | None
    done: int = 0

    def add(self, frame: Frame, dets: np.ndarray | None) -> None:
        st, summary = self.stats[frame.source.arg], self.summary
        if frame.error is not None:
            st.failed += 1
            summary.failed.append(frame.error)
            if self.outputs.video_source is frame.source:
                self.outputs.close_video()
        else:
            self.outputs.write(frame, dets)
            st.frames += 1
            st.detections += len(dets)
            summary.frames += 1
            summary.detections += len(dets)
            cls = dets[:, 5].astype(np.int64)
            if len(cls) and cls.max() >= len(summary.class_counts):
                grown = np.zeros(cls.max() + 1, np.int64)
                grown[: len(summary.class_counts)] = summary.class_counts
                summary.class_counts = grown
            np.add.at(summary.class_counts, cls, 1)
        self.done += 1
        if self.callback is not None:
            self.callback(self.done, self.total, frame.source.name)
