"""ModelConfig: everything needed to rebuild a detector, stored as JSON in the weights file.

No torch import here, so the config can be read (e.g. by `detect info`) without building a model.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

from detect.archs import DEFAULT, default_anchors, get_arch
from detect.errors import DetectError


@dataclass
class ModelConfig:
    """What a detector is: architecture, classes, anchors, input size, widths."""

    arch: str = DEFAULT  # a row of detect.archs.ARCHS
    num_classes: int = 80  # C: class logits per anchor
    names: list[str] = field(default_factory=list)  # class names, len == num_classes (or empty)
    anchors: list[list[list[float]]] = field(default_factory=list)  # per level [[w, h], ...]
    # as fractions of `imgsz`: fixed pixels (anchor x imgsz) at every input size; [] = default
    imgsz: int = 320  # training input side (the anchors' unit); also the objectness bias prior
    width: float = 1.0  # tiny: channel multiplier (0.5 halves every layer's width)
    depth: float = (
        1.0  # tiny: residual blocks per backbone stage multiplier (YOLOv5's depth_multiple)
    )
    act: str = "silu"  # tiny: "silu" | "leaky" (LeakyReLU 0.1, darknet's); yolov2 is always leaky
    xy_scale: float = 1.0  # centre-offset sigmoid stretch (YOLOv4 scale_x_y): 1 = YOLOv2's decode;
    # 2 lets the two nearest neighbour cells of a box centre train as positives too (YOLOv5)

    def __post_init__(self) -> None:
        if not self.anchors:
            self.anchors = default_anchors(self.arch)
        if not self.names:
            self.names = [str(i) for i in range(self.num_classes)]

    def check(self) -> ModelConfig:
        """Raise DetectError on an impossible config (checked at public entry points)."""
        arch = get_arch(self.arch)
        if self.num_classes < 1:
            raise DetectError(f"num_classes must be >= 1, got {self.num_classes}")
        if len(self.names) != self.num_classes:
            raise DetectError(f"{len(self.names)} class names for {self.num_classes} classes")
        if self.imgsz < 32 or self.imgsz % 32:
            raise DetectError(f"imgsz must be a positive multiple of 32, got {self.imgsz}")
        if not self.width > 0:
            raise DetectError(f"width must be > 0, got {self.width}")
        if not self.depth > 0:
            raise DetectError(f"depth must be > 0, got {self.depth}")
        if not 1.0 <= self.xy_scale <= 3.0:
            raise DetectError(f"xy_scale must be in [1, 3], got {self.xy_scale}")
        if self.act not in ("silu", "leaky"):
            raise DetectError(f"act must be 'silu' or 'leaky', got {self.act!r}")
        levels = len(arch.strides)
        if len(self.anchors) != levels:
            raise DetectError(
                f"{self.arch} needs anchors for {levels} levels, got {len(self.anchors)}"
            )
        counts = {len(a) for a in self.anchors}
        if len(counts) != 1 or 0 in counts:
            raise DetectError("every output level needs the same number (>= 1) of anchors")
        for level in self.anchors:
            for wh in level:
                if len(wh) != 2 or not all(v > 0 for v in wh):
                    raise DetectError(f"bad anchor {wh!r}: expected [w, h] fractions > 0")
        return self

    @property
    def num_levels(self) -> int:
        return len(self.anchors)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelConfig:
        """Build from `to_dict()` output; unknown keys are ignored, bad values raise DetectError."""
        if not isinstance(d, dict):
            raise DetectError("model config is not a JSON object")
        known = {f.name for f in fields(cls)}
        try:
            cfg = cls(**{k: v for k, v in d.items() if k in known})
            cfg.num_classes = int(cfg.num_classes)
            cfg.imgsz = int(cfg.imgsz)
            cfg.width = float(cfg.width)
            cfg.depth = float(cfg.depth)
            cfg.xy_scale = float(cfg.xy_scale)
            cfg.names = [str(n) for n in cfg.names]
            cfg.anchors = [[[float(w), float(h)] for w, h in level] for level in cfg.anchors]
        except (TypeError, ValueError) as e:
            raise DetectError(f"bad model config: {e}") from None
        return cfg.check()


def split_anchors(anchors: list, levels: int) -> list[list[list[float]]]:
    """Split a flat anchor list ([[w, h], ...], e.g. from k-means) into `levels` groups by area.

    The smallest anchors go to the finest grid (first level), as YOLOv3 does.
    """
    flat = sorted(([float(w), float(h)] for w, h in anchors), key=lambda wh: wh[0] * wh[1])
    if not flat or len(flat) % levels:
        raise DetectError(f"{len(flat)} anchors cannot be split evenly over {levels} output levels")
    k = len(flat) // levels
    return [flat[i * k : (i + 1) * k] for i in range(levels)]
