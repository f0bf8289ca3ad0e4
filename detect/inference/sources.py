"""What `detect predict SOURCE...` reads: image files, folders, globs, videos, a camera.

`expand_sources` turns the command-line arguments into a list of `Source`s up front (so a typo
fails before any model is loaded) and `iter_frames` streams their frames one at a time: a folder of
any size or a video of any length goes through in constant memory. A file that cannot be read
is yielded as a `Frame` with an `error`, never raised, so one bad input does not stop the run.
"""

from __future__ import annotations

import contextlib
import glob
import math
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from detect.data._common import relative_paths, unique_ids
from detect.data.image import read_image
from detect.errors import DetectError

IMAGE_EXTS = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".jp2", ".pbm", ".pgm", ".ppm"}
)
VIDEO_EXTS = frozenset(
    {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv", ".ts"}
)
# A video whose container promised this many more frames than could be decoded is reported as
# broken; a few are tolerated because some containers only estimate the count from the duration.
_FRAME_COUNT_SLACK = 2
STREAM_SCHEMES = ("rtsp://", "rtsps://", "rtmp://", "http://", "https://")


@dataclass
class Source:
    """One input: an image file, a video file or a camera."""

    kind: str  # "image" | "video" | "camera" | "stream"
    path: Path | None  # None for a camera or a stream
    arg: str  # the SOURCE argument it came from (summaries group by it)
    rel: Path  # output name relative to the run folder (unique within a run)
    camera: int | None = None  # camera index for kind == "camera"
    url: str | None = None  # rtsp://, rtmp://, http(s):// for kind == "stream" (read by OpenCV)
    # `image_id` / `file_name` of its COCO results rows: unique among the run's files, made as
    # a data set reader makes them (`detect.data._common.unique_ids`), so predictions over a data
    # set's images read back into `detect evaluate` exactly.
    image_id: int | str = ""
    file_name: str = ""

    @property
    def name(self) -> str:
        if self.kind == "camera":
            return f"camera {self.camera}"
        return self.url if self.kind == "stream" else str(self.path)


@dataclass
class Frame:
    """One image, or one frame of a video, ready for the model (or its read error)."""

    source: Source
    index: int  # frame number in the video (0 for an image)
    image: np.ndarray | None  # HxWx3 uint8 BGR; None when it could not be read
    error: str | None = None
    fps: float | None = None  # a video's, camera's or stream's frame rate (as it reports it)


@dataclass
class VideoInfo:
    fps: float
    width: int
    height: int
    frames: int  # as the container reports it; -1 when unknown (a camera, some streams)


def _kind(path: Path) -> str:
    return "video" if path.suffix.lower() in VIDEO_EXTS else "image"


def _media_files(folder: Path) -> list[Path]:
    """Images and videos under `folder`, recursively, in sorted (stable) order."""
    exts = IMAGE_EXTS | VIDEO_EXTS
    found = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found += [Path(root, f) for f in files if Path(f).suffix.lower() in exts]
    return sorted(found)


def _glob_root(pattern: str) -> Path:
    """The leading part of a glob without wildcards: outputs keep paths relative to it."""
    parts = []
    for part in Path(pattern).parts:
        if glob.has_magic(part):
            break
        parts.append(part)
    return Path(*parts) if parts else Path(".")


def read_list(path: Path) -> list[Path]:
    """The files a `.txt` list names, one per line (darknet's and ultralytics' habit; blank
    lines and `#` comments skipped). A relative path is taken from the working folder where it
    exists there, else from the list's own folder. Missing files stay in the list: they are
    reported as inputs that could not be read, as any other unreadable file."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise DetectError(f"{path}: cannot read the list of images ({e})") from None
    files = []
    for line in lines:
        entry = line.strip()
        if not entry or entry.startswith("#"):
            continue
        f = Path(entry).expanduser()
        if not f.is_absolute() and not f.exists():
            f = path.parent / f  # (where a missing one is reported)
        files.append(f)
    if not files:
        raise DetectError(f"{path}: the list names no image or video")
    return files


def expand_sources(args: Sequence[str]) -> list[Source]:
    """Expand SOURCE arguments into image / video / camera sources.

    A folder is searched recursively for images and videos; a pattern with `*`, `?` or `[` is a
    glob (`**` crosses folders); an all-digit argument that is not a file is a camera index;
    an rtsp://, rtmp:// or http(s):// URL is a stream (a video read through OpenCV's FFmpeg);
    a `.txt` file lists image or video paths, one per line (`read_list`). A file with another
    extension is tried as an image (reported if it is not one).

    Raises DetectError for a path that does not exist, an empty folder or a glob that matches
    nothing, naming the argument.
    """
    if not args:
        raise DetectError("no SOURCE given (image files, folders, globs, videos or a camera index)")
    sources: list[Source] = []
    used: set[str] = set()

    def add(
        kind: str, path: Path | None, arg: str, rel: Path, camera: int | None = None,
        url: str | None = None,
    ) -> None:  # fmt: skip
        # Two inputs with the same output name (a.jpg from two folders) get a -2, -3 ... suffix.
        key, n = rel, 1
        while str(key.with_suffix("")).lower() in used:
            n += 1
            key = rel.with_name(f"{rel.stem}-{n}{rel.suffix}")
        used.add(str(key.with_suffix("")).lower())
        sources.append(Source(kind, path, arg, key, camera, url))

    for arg in args:
        p = Path(arg).expanduser()
        if arg.lower().startswith(STREAM_SCHEMES):
            stem = Path(arg.split("?")[0].rstrip("/")).stem or "stream"
            add("stream", None, arg, Path(f"{stem}.mp4"), url=arg)
        elif p.is_dir():
            files = _media_files(p)
            if not files:
                raise DetectError(f"no images or videos in folder: {arg}")
            for f in files:
                add(_kind(f), f, arg, f.relative_to(p))
        elif p.is_file() and p.suffix.lower() == ".txt":
            files = read_list(p)
            for f, rel in zip(files, relative_paths(files), strict=True):
                add(_kind(f), f, arg, Path(rel))
        elif p.is_file():
            add(_kind(p), p, arg, Path(p.name))
        elif glob.has_magic(arg):
            root = _glob_root(arg)
            files = sorted(Path(f) for f in glob.glob(arg, recursive=True) if Path(f).is_file())
            if not files:
                raise DetectError(f"no files match: {arg}")
            for f in files:
                try:
                    rel = f.relative_to(root)
                except ValueError:
                    rel = Path(f.name)
                add(_kind(f), f, arg, rel)
        elif arg.isdigit():
            add("camera", None, arg, Path(f"camera{arg}.mp4"), camera=int(arg))
        else:
            raise DetectError(f"no such file or folder: {arg}")
    files = [s for s in sources if s.path is not None]
    rel = relative_paths([s.path for s in files])
    for s, r, i in zip(files, rel, unique_ids(rel), strict=True):
        s.image_id, s.file_name = i, r
    for s in sources:
        if s.kind == "camera":
            s.image_id = s.file_name = f"camera{s.camera}"
        elif s.kind == "stream":
            s.image_id = s.file_name = s.rel.stem
    return sources


def video_info(cap) -> VideoInfo:
    fps = cap.get(cv2.CAP_PROP_FPS)
    if not fps or not math.isfinite(fps) or fps <= 0:
        fps = 30.0  # cameras and some streams report 0
    count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or -1)
    return VideoInfo(
        float(fps),
        int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)),
        int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)),
        count if count > 0 else -1,
    )


def _quiet_opencv() -> None:
    """A failed open is reported as one line of ours; OpenCV's WARN lines would only repeat it."""
    with contextlib.suppress(AttributeError):
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)


def open_video(source: Source):
    """An opened cv2.VideoCapture and its info, or raise DetectError naming the source."""
    _quiet_opencv()
    target = {"camera": source.camera, "stream": source.url}.get(source.kind, str(source.path))
    cap = cv2.VideoCapture(target)
    if not cap.isOpened():
        cap.release()
        what = source.kind if source.kind in ("camera", "stream") else "video"
        raise DetectError(f"cannot open {what}: {source.name}")
    return cap, video_info(cap)


def count_frames(sources: Sequence[Source], vid_stride: int = 1) -> int | None:
    """Frames `iter_frames` will yield in total (for a progress bar); None when unbounded or
    unknown (a camera, a stream without a frame count)."""
    _quiet_opencv()
    total = 0
    for s in sources:
        if s.kind == "image":
            total += 1
        elif s.kind in ("camera", "stream"):
            return None
        else:
            cap = cv2.VideoCapture(str(s.path))
            opened = cap.isOpened()
            n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0) if opened else 0
            cap.release()
            if n <= 0:
                if opened:
                    return None  # a stream that does not know its length
                n = 1  # unreadable: it will still be yielded once, as an error
            total += math.ceil(n / vid_stride)
    return total


def _read_image(path: Path) -> tuple[np.ndarray | None, str | None]:
    try:
        return read_image(path), None
    except DetectError as e:
        return None, str(e)


def _video_frames(source: Source, vid_stride: int) -> Iterator[Frame]:
    """Every `vid_stride`-th frame of a video; skipped frames are grabbed, not decoded to BGR.

    A video that cannot be opened, or whose frames stop decoding before the end its container
    announced, yields a Frame with an error (after the frames it could read).
    """
    try:
        cap, info = open_video(source)
    except DetectError as e:
        yield Frame(source, 0, None, str(e))
        return
    index = 0
    try:
        while True:
            if index % vid_stride == 0:
                ok, img = cap.read()
                if not ok:
                    break
                yield Frame(source, index, img, fps=info.fps)
            elif not cap.grab():
                break
            index += 1
    finally:
        cap.release()
    if source.kind == "video" and (index == 0 or index < info.frames - _FRAME_COUNT_SLACK):
        what = (
            "no frame could be decoded"
            if index == 0
            else (f"frames {index}..{info.frames - 1} of {info.frames} could not be decoded")
        )
        yield Frame(source, index, None, f"broken video {source.path}: {what}")


def iter_frames(sources: Sequence[Source], vid_stride: int = 1) -> Iterator[Frame]:
    """Stream frames from `sources` in order, one in memory at a time."""
    if vid_stride < 1:
        raise DetectError(f"--vid-stride must be >= 1, got {vid_stride}")
    for s in sources:
        if s.kind == "image":
            img, err = _read_image(s.path)
            yield Frame(s, 0, img, err)
        else:
            yield from _video_frames(s, vid_stride)
