"""The one table of detector architectures: what each `--model` is, read without torch.

`settings` (the `--model` choices), `detect info`, the training task, the model builder and the
export all look an architecture up here instead of naming it. A detector is assembled from
parts (detect.models.build): a backbone returning feature maps at `strides`, a neck fusing them,
and one head per level; a new family is a backbone module and one row below.
"""

from __future__ import annotations

from dataclasses import dataclass

from detect.errors import DetectError

# Default anchors as fractions of the training input side (ModelConfig.imgsz), smallest first.
# Three levels (strides 8, 16, 32): the YOLOv3 COCO set (pixels at 416 / 416), three per level.
_V3 = [(10, 13), (16, 30), (33, 23), (30, 61), (62, 45), (59, 119), (116, 90), (156, 198),
       (373, 326)]  # fmt: skip
THREE_LEVEL_ANCHORS = tuple(tuple((w / 416, h / 416) for w, h in _V3[i : i + 3]) for i in (0, 3, 6))
# One level (stride 32): yolo.cfg (COCO) anchors, given in stride-32 grid cells; / 13 cells at 416.
_V2 = [(0.57273, 0.677385), (1.87446, 2.06253), (3.33843, 5.47434), (7.88282, 3.52778),
       (9.77052, 9.16828)]  # fmt: skip
YOLOV2_ANCHORS = (tuple((w / 13, h / 13) for w, h in _V2),)


@dataclass(frozen=True)
class Arch:
    """One detector architecture (a row of `ARCHS`)."""

    name: str  # the `--model` value, stored in weights as ModelConfig.arch
    about: str  # one line for --help and `detect info`
    backbone: str  # backbone module (detect.models.build.BACKBONES): feature maps at `strides`
    neck: str  # "fpn" (tiny's top-down FPN) | "passthrough" (YOLOv2's reorg route)
    head: str  # "decoupled" (YOLOX-style box/class branches) | "conv" (one 1x1 conv, YOLOv2)
    strides: tuple[int, ...]  # pixels per cell of each output level, finest first
    anchors: tuple  # default anchors per level, (w, h) fractions of `imgsz`
    imgsz: int = 320  # default training input side
    info_imgsz: int = 320  # the side `detect info --model` describes by default
    xy_scale: float = 2.0  # default centre-offset stretch (ModelConfig.xy_scale): YOLOv5's 2
    act: str = "silu"  # activation of neck and heads (and tiny's backbone)
    pretrained: str | None = None  # ImageNet backbone file in weights/, loaded for a new model
    scalable: bool = False  # width / depth multipliers apply (tiny's backbone)
    freeze: int = 0  # backbone stages frozen by default when starting from trained weights:
    # the stages to stride 4 (the fine-tuning A/B, bench/README.md)


ARCHS: dict[str, Arch] = {
    a.name: a
    for a in (
        Arch("tiny", "small residual backbone (quick to train from scratch) + FPN, 3 grids",
             "tiny", "fpn", "decoupled", (8, 16, 32), THREE_LEVEL_ANCHORS, scalable=True,
             freeze=2),  # stem, stage2: to stride 4
        Arch("yolov2", "darknet yolo.cfg: Darknet-19 + passthrough, 1 grid, 5 anchors",
             "darknet19", "passthrough", "conv", (32,), YOLOV2_ANCHORS, info_imgsz=608,
             xy_scale=1.0, act="leaky"),
        *(
            Arch(f"efficientnet-{v}", f"EfficientNet-{v.title()} ImageNet backbone + FPN, 3 grids",
                 f"efficientnet-{v}", "fpn", "decoupled", (8, 16, 32), THREE_LEVEL_ANCHORS,
                 pretrained=f"efficientnet-{v}.safetensors", freeze=3)  # stem..stride 4
            for v in ("lite0", "lite1", "lite2")
        ),
    )
}  # fmt: skip


DEFAULT = "tiny"  # what `detect train` builds without --model or --weights


def get_arch(name: str) -> Arch:
    """The row of `name`; DetectError listing the known ones otherwise."""
    try:
        return ARCHS[name]
    except (KeyError, TypeError):
        raise DetectError(f"unknown model {name!r} (expected one of {', '.join(ARCHS)})") from None


def default_anchors(arch: str) -> list[list[list[float]]]:
    """The built-in anchors of `arch` (per level, fractions of the input side), as lists."""
    return [[list(wh) for wh in level] for level in get_arch(arch).anchors]
