"""Reading images: the size from the file header (no pixel decoding) and full BGR decoding.

`image_size` parses JPEG, PNG, GIF, BMP, WebP and TIFF headers in pure python, so a data set
of thousands of images is sized in a fraction of a second; other formats fall back to a full
OpenCV decode. JPEG EXIF orientations 5..8 swap width and height, because OpenCV's decoder
applies the orientation and the size must match the pixels a model will see.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

from detect.errors import DetectError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".jfif")


def read_image(path: str | Path) -> np.ndarray:
    """Decode an image file to `ndarray[H, W, 3]` uint8 BGR (EXIF orientation applied).

    Raises DetectError naming the file when it is missing, unreadable or not an image.
    """
    # The one deferred import of the library: OpenCV takes ~0.2 s to load, and the readers of
    # this package serve `detect evaluate` and `detect anchors`, which never decode pixels.
    import cv2

    path = Path(path)
    try:
        data = np.fromfile(path, dtype=np.uint8)  # works for non-ASCII paths, unlike cv2.imread
    except OSError as e:
        raise DetectError(f"{path}: cannot read image ({e.strerror or e})") from None
    img = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if img is None:
        raise DetectError(f"{path}: not a readable image")
    return img


def image_size(path: str | Path) -> tuple[int, int]:
    """`(width, height)` of an image from its header; DetectError naming the file if unreadable."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            head = f.read(32)
            size = _header_size(f, head)
    except OSError as e:
        raise DetectError(f"{path}: cannot read image ({e.strerror or e})") from None
    except (struct.error, ValueError, IndexError):
        size = None
    if size is None:
        if _known_magic(head):
            raise DetectError(f"{path}: corrupt image header")
        # An unknown format: let OpenCV decode it (slow, but correct for anything it reads).
        img = read_image(path)
        return img.shape[1], img.shape[0]
    w, h = size
    if w <= 0 or h <= 0:
        raise DetectError(f"{path}: corrupt image header (size {w}x{h})")
    return w, h


def _known_magic(head: bytes) -> bool:
    return head[:2] in (b"\xff\xd8", b"BM", b"II", b"MM") or head[:4] in (
        b"\x89PNG",
        b"GIF8",
        b"RIFF",
    )


def _header_size(f, head: bytes) -> tuple[int, int] | None:
    if head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR":
        return struct.unpack(">II", head[16:24])
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return struct.unpack("<HH", head[6:10])
    if head[:2] == b"BM" and len(head) >= 26:
        (hsize,) = struct.unpack("<I", head[14:18])
        if hsize == 12:
            w, h = struct.unpack("<HH", head[18:22])
        else:
            w, h = struct.unpack("<ii", head[18:26])
        return w, abs(h)  # negative height = top-down rows
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return _webp_size(head)
    if head[:2] == b"\xff\xd8":
        return _jpeg_size(f)
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return _tiff_size(f)
    return None


def _webp_size(head: bytes) -> tuple[int, int] | None:
    kind = head[12:16]
    if kind == b"VP8X":
        w = int.from_bytes(head[24:27], "little") + 1
        h = int.from_bytes(head[27:30], "little") + 1
        return w, h
    if kind == b"VP8L":
        b = head[21:25]
        bits = int.from_bytes(b, "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if kind == b"VP8 ":
        w, h = struct.unpack("<HH", head[26:30])
        return w & 0x3FFF, h & 0x3FFF
    return None


_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def _jpeg_size(f) -> tuple[int, int] | None:
    """Walk the JPEG segments up to the frame header; note the EXIF orientation on the way."""
    f.seek(2)
    orientation = 1
    while True:
        b = f.read(1)
        while b == b"\xff":  # fill bytes before a marker
            b = f.read(1)
        if not b:
            return None
        marker = b[0]
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:  # markers without a length
            continue
        seg = f.read(2)
        if len(seg) < 2:
            return None
        (length,) = struct.unpack(">H", seg)
        if length < 2:
            return None
        if marker in _SOF:
            data = f.read(5)
            if len(data) < 5:
                return None
            h, w = struct.unpack(">HH", data[1:5])
            return (h, w) if orientation in (5, 6, 7, 8) else (w, h)
        if marker == 0xE1 and orientation == 1:
            data = f.read(length - 2)
            orientation = _exif_orientation(data)
            continue
        if marker == 0xD9:
            return None
        f.seek(length - 2, 1)


def _exif_orientation(app1: bytes) -> int:
    """The EXIF Orientation tag (1..8) of an APP1 payload; 1 when absent or unreadable."""
    if app1[:6] != b"Exif\x00\x00":
        return 1
    t = app1[6:]
    try:
        e = "<" if t[:2] == b"II" else ">"
        (ifd,) = struct.unpack(e + "I", t[4:8])
        (n,) = struct.unpack(e + "H", t[ifd : ifd + 2])
        for i in range(n):
            off = ifd + 2 + 12 * i
            tag, typ = struct.unpack(e + "HH", t[off : off + 4])
            if tag == 0x0112:
                (v,) = struct.unpack(e + "H", t[off + 8 : off + 10])
                return v if 1 <= v <= 8 else 1
    except struct.error:
        pass
    return 1


def _tiff_size(f) -> tuple[int, int] | None:
    f.seek(0)
    t = f.read(65536)
    e = "<" if t[:2] == b"II" else ">"
    (ifd,) = struct.unpack(e + "I", t[4:8])
    (n,) = struct.unpack(e + "H", t[ifd : ifd + 2])
    w = h = None
    for i in range(n):
        off = ifd + 2 + 12 * i
        tag, typ = struct.unpack(e + "HH", t[off : off + 4])
        if tag in (256, 257):
            fmt = e + ("H" if typ == 3 else "I")
            (v,) = struct.unpack(fmt, t[off + 8 : off + 8 + struct.calcsize(fmt)])
            if tag == 256:
                w = v
            else:
                h = v
    return (w, h) if w is not None and h is not None else None
