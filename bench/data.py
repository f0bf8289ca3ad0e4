"""Data set reading: `detect.data` vs the plain way, side by side, ratios printed.

- VOC 2007 trainval (5011 XML files): `load_dataset` vs a plain `xml.etree.ElementTree.parse`
  loop that collects the same boxes (what most VOC readers do).
- Image sizes of the 600 VOC JPEGs: `detect.data.image_size` (header parse) vs
  `PIL.Image.open(p).size` plus EXIF orientation (what ultralytics' `exif_size` does).

Run: `.venv/bin/python bench/data.py [VOC_ROOT]` (default ../shared/voc2007).
Ratio < 1: ours is faster.
"""

from __future__ import annotations

import statistics
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

from detect.data import image_size, load_dataset


def _median_seconds(fn, runs=5):
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def plain_voc(root: Path, split: str):
    ids = (root / "ImageSets/Main" / f"{split}.txt").read_text().split()
    out = []
    for i in ids:
        r = ET.parse(root / "Annotations" / f"{i}.xml").getroot()
        for o in r.iter("object"):
            bb = o.find("bndbox")
            out.append([float(bb.find(t).text) - 1 for t in ("xmin", "ymin", "xmax", "ymax")])
    names = set()  # the class list needs the whole folder, as ours does
    for f in (root / "Annotations").glob("*.xml"):
        names |= {o.findtext("name") for o in ET.parse(f).getroot().iter("object")}
    return out, sorted(names)


def pil_sizes(paths):
    from PIL import Image

    out = []
    for p in paths:
        with Image.open(p) as im:
            w, h = im.size
            if im.getexif().get(0x0112, 1) in (5, 6, 7, 8):
                w, h = h, w
        out.append((w, h))
    return out


def main() -> None:
    root = Path(
        sys.argv[1] if len(sys.argv) > 1 else Path(__file__).parent / "../../shared/voc2007"
    )
    ours = _median_seconds(lambda: load_dataset(root, "trainval"))
    peer = _median_seconds(lambda: plain_voc(root, "trainval"))
    print(
        f"VOC trainval read   ours {ours * 1e3:7.1f} ms  plain etree {peer * 1e3:7.1f} ms  "
        f"ratio {ours / peer:.2f}"
    )
    paths = sorted((root / "JPEGImages").glob("*.jpg"))
    assert [image_size(p) for p in paths] == pil_sizes(paths)
    ours = _median_seconds(lambda: [image_size(p) for p in paths])
    peer = _median_seconds(lambda: pil_sizes(paths))
    print(
        f"{len(paths)} JPEG sizes     ours {ours * 1e3:7.1f} ms  PIL+EXIF    {peer * 1e3:7.1f} ms  "
        f"ratio {ours / peer:.2f}"
    )


if __name__ == "__main__":
    main()
