"""What `detect predict` writes for each predicted frame, streaming: annotated images and
videos, YOLO label files and a COCO results list. Every file appears whole or not at all."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import cv2
import numpy as np

from detect.errors import DetectError
from detect.files import temp_beside
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

    Rows go to a temporary file beside the target, renamed over it on `close`.
    """

    def __init__(self, target: Path | TextIO) -> None:
        self.path: Path | None = None
        self.tmp: str | None = None
        if isinstance(target, (str, Path)):
            self.path = Path(target)
            fd, self.tmp = temp_beside(self.path)
            self.f: TextIO = os.fdopen(fd, "w", encoding="utf-8")
        else:
            self.f = target
        self.n = 0
        self.f.write("[")

    def add(self, image_id: int | str, file_name: str, dets: np.ndarray) -> None:
        for x1, y1, x2, y2, score, cls in dets.tolist():
            row = {
                "image_id": image_id,
                "file_name": file_name,
                "category_id": int(cls),
                "bbox": [round(x1, 3), round(y1, 3), round(x2 - x1, 3), round(y2 - y1, 3)],
                "score": round(score, 5),
            }
            self.f.write(("\n  " if self.n == 0 else ",\n  ") + json.dumps(row))
            self.n += 1

    def close(self, ok: bool = True) -> None:
        self.f.write("\n]\n" if self.n else "]\n")
        self.f.flush()
        if self.path is None:
            return
        self.f.close()
        if ok:
            os.replace(self.tmp, self.path)
        else:
            Path(self.tmp).unlink(missing_ok=True)


def _write_atomic(path: Path, data: bytes) -> None:
    """Temporary file + rename, like detect.files.atomic_write_bytes but without the fsync.

    A reader never sees half a file; an annotated image or a label file is reproducible output,
    and one fsync per frame cost 0.5 s of a 10 s run over 200 images (bench/README.md).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _save_image(path: Path, img: np.ndarray) -> None:
    ok, buf = cv2.imencode(path.suffix, img)
    if not ok:
        raise DetectError(f"cannot encode image {path}")
    _write_atomic(path, buf.tobytes())


class VideoOut:
    """An annotated copy of a video: mp4v, the source's fps and size, renamed into place when
    complete (an interrupted run leaves no half-written file under the final name)."""

    def __init__(self, path: Path, fps: float, size: tuple[int, int]) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
        self.writer = cv2.VideoWriter(str(self.tmp), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
        if not self.writer.isOpened():
            raise DetectError(f"cannot write video {path}")

    def write(self, img: np.ndarray) -> None:
        self.writer.write(img)

    def close(self) -> None:
        self.writer.release()
        os.replace(self.tmp, self.path)


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

    def close_video(self) -> None:
        if self.video is not None:
            self.video.close()
            self.videos += 1
        self.video = self.video_source = None

    def write(self, frame: Frame, dets: np.ndarray) -> None:
        src = frame.source
        is_image = src.kind == "image"
        if self.json is not None:
            self.json.add(*json_id(src, frame.index), dets)
        save = self.save
        rel = src.rel if is_image else src.rel.with_name(f"{src.rel.stem}_{frame.index}")
        if save.txt and len(dets):
            path = self.run_dir / "labels" / rel.with_suffix(".txt")
            _write_atomic(path, yolo_lines(dets, frame.image.shape[:2], save.conf).encode())
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
