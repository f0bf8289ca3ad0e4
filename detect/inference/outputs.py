"""What `detect predict` writes for each predicted frame, streaming: annotated images and
videos, YOLO label files and a COCO results list. Every file appears whole or not at all."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import cv2
import numpy as np

from detect.errors import DetectError
from detect.files import (
    AtomicFile,
    WriteError,
    all_or_nothing,
    atomic_write_bytes,
    check_writable_file,
    mp4_complete,
    rename_into_place,
    short_write,
    writing,
)
from detect.inference.draw import draw_detections
from detect.inference.sources import Frame, Source

_WRITABLE_IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}


def json_id(source: Source, index: int) -> tuple[int | str, str]:
    """(image_id, file_name) of one image or video frame in the COCO results list."""
    if source.kind == "image":
        return source.image_id, source.file_name
    return f"{source.image_id}_{index}", source.file_name


class JsonRows:
    """A COCO results list written row by row (flat memory), atomically for a file.

    Rows go to a temporary file beside the target, renamed over it on `close`: the file holds
    every frame added before it, or does not exist. Raises WriteError naming the file when it
    cannot be written (the temporary file removed).
    """

    def __init__(self, target: Path | TextIO) -> None:
        self.path: Path | None = None
        self.file: AtomicFile | None = None
        self.stream: TextIO | None = None
        self.committed = False  # the file is in place, whole
        if isinstance(target, (str, Path)):
            self.path = Path(target)
            self.file = AtomicFile(self.path, fsync=False)
        else:
            self.stream = target
        self.n = 0
        self._put("[")

    def _put(self, text: str) -> None:
        if self.file is not None:
            self.file.write(text.encode("utf-8"))
        else:
            self.stream.write(text)

    def add(self, image_id: int | str, file_name: str, dets: np.ndarray) -> None:
        for x1, y1, x2, y2, score, cls in dets.tolist():
            row = {
                "image_id": image_id,
                "file_name": file_name,
                "category_id": int(cls),
                "bbox": [round(x1, 3), round(y1, 3), round(x2 - x1, 3), round(y2 - y1, 3)],
                "score": round(score, 5),
            }
            self._put(("\n  " if self.n == 0 else ",\n  ") + json.dumps(row))
            self.n += 1

    def close(self, ok: bool = True) -> None:
        """End the list: rename the file into place (`ok`), else remove it."""
        if self.file is None:
            self.stream.write("\n]\n" if self.n else "]\n")
            self.stream.flush()
            return
        if self.file.closed:
            return
        if not ok:
            self.file.discard()
            return
        self._put("\n]\n" if self.n else "]\n")
        self.file.commit()
        self.committed = True


def _save_image(path: Path, img: np.ndarray) -> None:
    ok, buf = cv2.imencode(path.suffix, img)
    if not ok:
        raise DetectError(f"cannot encode image {path}")
    atomic_write_bytes(path, buf.tobytes(), fsync=False)


class VideoOut:
    """An annotated copy of a video: mp4v, the source's fps and size, renamed into place when
    complete (an interrupted run leaves no half-written file under the final name). OpenCV
    reports no write errors, so `close` checks the file is a whole MP4 before the rename.
    Raises WriteError naming `path` when it cannot be written."""

    def __init__(self, path: Path, fps: float, size: tuple[int, int]) -> None:
        self.path = path
        with writing(path):
            path.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
        self.writer = cv2.VideoWriter(str(self.tmp), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
        if not self.writer.isOpened():
            self.tmp.unlink(missing_ok=True)
            check_writable_file(path)  # names the reason when it is the folder
            raise WriteError(path, "OpenCV cannot open an mp4v video writer for it")

    def write(self, img: np.ndarray) -> None:
        self.writer.write(img)

    def close(self, keep: bool = True) -> None:
        """Finish the file and rename it into place (`keep`), or remove it."""
        self.writer.release()
        try:
            if keep and not mp4_complete(self.tmp):  # a full disk cuts it short
                raise WriteError(self.path, short_write(self.path.parent))
            if keep:
                rename_into_place(self.tmp, self.path)
        finally:
            self.tmp.unlink(missing_ok=True)


def yolo_lines(dets: np.ndarray, hw: tuple[int, int], conf: bool = True) -> str:
    """`class cx cy w h` lines (trainable as labels), coordinates normalised by the image size;
    with `conf` the score as a 6th column (what `detect evaluate --pred FOLDER` reads)."""
    h, w = hw
    lines = []
    for x1, y1, x2, y2, score, cls in dets.tolist():
        cx, cy, bw, bh = (x1 + x2) / 2 / w, (y1 + y2) / 2 / h, (x2 - x1) / w, (y2 - y1) / h
        line = f"{int(cls)} {cx:.6f} {cy:.6f} {bw:.6f} {bh:.6f}"
        lines.append(f"{line} {score:.6f}" if conf else line)
    return "\n".join(lines) + "\n"


def crops(img: np.ndarray, dets: np.ndarray) -> list[tuple[int, np.ndarray]]:
    """(class, pixels) of each detection's box, clipped to the image; empty boxes left out."""
    h, w = img.shape[:2]
    out = []
    for x1, y1, x2, y2, _, cls in dets.tolist():
        a, b = max(int(np.floor(x1)), 0), max(int(np.floor(y1)), 0)
        c, d = min(int(np.ceil(x2)), w), min(int(np.ceil(y2)), h)
        if c > a and d > b:
            out.append((int(cls), img[b:d, a:c]))
    return out


@dataclass
class SaveOptions:
    """What `run_predict` writes besides the JSON, and how it draws (`detect predict` options)."""

    images: bool = True  # annotated images and videos
    txt: bool = False  # labels/<name>.txt: `class cx cy w h` per detection
    conf: bool = False  # ... with the score as a 6th column (--save-conf)
    crop: bool = False  # crops/<class>/<name>_<k>.jpg: each detection's box, undrawn
    line_width: int | None = None  # box lines in pixels (None: from the image size)
    hide_labels: bool = False
    hide_conf: bool = False

    @property
    def run_dir(self) -> bool:
        """Whether anything goes into the run folder."""
        return self.images or self.txt or self.crop


class Outputs:
    """Everything `run_predict` writes for each predicted frame, streaming."""

    def __init__(
        self,
        run_dir: Path | None,
        names: list[str],
        save: SaveOptions,
        json_rows: JsonRows | None,
    ) -> None:
        self.run_dir = run_dir
        self.names = names
        self.save = save
        self.json = json_rows
        self.video: VideoOut | None = None
        self.video_source: Source | None = None
        self.images = self.videos = self.labels = self.crops = 0

    def _video_for(self, frame: Frame) -> VideoOut:
        if self.video_source is not frame.source:
            self.close_video()
            h, w = frame.image.shape[:2]
            fps = frame.fps or 30.0  # the source's rate (videos, cameras and streams)
            path = self.run_dir / frame.source.rel.with_suffix(".mp4")
            self.video, self.video_source = VideoOut(path, fps, (w, h)), frame.source
        return self.video

    def close_video(self, keep: bool = True) -> None:
        """Finish the video being written (`keep`: rename it into place, else remove it)."""
        video, self.video, self.video_source = self.video, None, None
        if video is not None:
            video.close(keep)
            self.videos += int(keep)

    def write(self, frame: Frame, dets: np.ndarray) -> None:
        """Write one frame's outputs, all or nothing, its COCO rows last: after a WriteError the
        run folder and the list hold exactly the frames written before."""
        src = frame.source
        counts = self.images, self.labels, self.crops
        try:
            with all_or_nothing():
                self._write_files(frame, dets)
        except WriteError:
            self.images, self.labels, self.crops = counts
            raise
        if self.json is not None:  # last: the list holds the frames whose files are written
            self.json.add(*json_id(src, frame.index), dets)

    def _write_files(self, frame: Frame, dets: np.ndarray) -> None:
        src = frame.source
        is_image = src.kind == "image"
        save = self.save
        rel = src.rel if is_image else src.rel.with_name(f"{src.rel.stem}_{frame.index}")
        if save.txt and len(dets):
            path = self.run_dir / "labels" / rel.with_suffix(".txt")
            text = yolo_lines(dets, frame.image.shape[:2], save.conf)
            atomic_write_bytes(path, text.encode(), fsync=False)
            self.labels += 1
        if save.crop:  # before drawing: crops hold the image's own pixels
            for k, (cls, pixels) in enumerate(crops(frame.image, dets)):
                name = self.names[cls] if 0 <= cls < len(self.names) else str(cls)
                where = self.run_dir / "crops" / name / rel.parent / f"{rel.stem}_{k}.jpg"
                _save_image(where, pixels)
                self.crops += 1
        if not save.images:
            return
        img = draw_detections(
            frame.image, dets, self.names, save.line_width, save.hide_labels, save.hide_conf
        )
        if is_image:
            rel = src.rel
            if rel.suffix.lower() not in _WRITABLE_IMAGE_EXTS:
                rel = rel.with_suffix(".jpg")
            _save_image(self.run_dir / rel, img)
            self.images += 1
        else:
            self._video_for(frame).write(img)
