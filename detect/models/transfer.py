"""Transfer learning: start a detector from weights trained on other data (or other classes).

As ultralytics' `yolo train model=yolov8n.pt data=mine.yaml` ("Transferred 349/355 items") and
darknet's `darknet53.conv.74`: every tensor whose name and shape match is copied; the class
logits are matched by class *name* (same classes in another order keep theirs, new classes get
the usual prior, detect.models.common.Detector.init_biases); what is left keeps its fresh
initialisation. The source is a detect weights file of any architecture (a run's weights, the
shipped default) or an ImageNet backbone file (weights/efficientnet-lite0.safetensors, written by
scripts/convert_efficientnet_lite.py), whose tensors are named `backbone.*` as in a detector.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from detect.errors import DetectError
from detect.models.common import Detector
from detect.models.tiny import DecoupledHead
from detect.models.weights_file import read_tensors, upgrade_keys


@dataclass
class Transfer:
    """What `transfer` did: counts over the model's state-dict tensors."""

    source: str  # the weights file
    matched: int  # model tensors that took the source's values (in full or by class)
    total: int  # model tensors
    skipped: list[str] = field(default_factory=list)  # model tensors left as initialised
    new_classes: list[str] = field(default_factory=list)  # classes whose logits start fresh
    kind: str = "detector"  # "detector" | "backbone" (an ImageNet backbone file)

    def line(self) -> str:
        """`transferred 318/324 tensors from W; new class head for 3 classes: A, B, C`."""
        text = f"transferred {self.matched}/{self.total} tensors from {self.source}"
        if self.kind == "backbone":
            return text + " (ImageNet backbone; neck and heads start fresh)"
        if self.new_classes:
            n = len(self.new_classes)
            shown = ", ".join(self.new_classes[:10]) + (", ..." if n > 10 else "")
            text += f"; new class head for {n} class{'es' if n != 1 else ''}: {shown}"
        return text

    def to_dict(self) -> dict[str, Any]:
        """For the weights' training summary and args.json (`detect info` shows it)."""
        return {"from": self.source, "kind": self.kind, "tensors": f"{self.matched}/{self.total}",
                "new_classes": self.new_classes}  # fmt: skip


def class_rows(model: Detector) -> dict[str, tuple[int, int]]:
    """The head tensors whose rows depend on the classes: key -> (anchors A, offset of the
    first class row within an anchor's block). A decoupled head's class conv holds `A x C`
    rows; YOLOv2's single conv `A x (5 + C)`, the 5 box and objectness rows first."""
    out = {}
    for i, (head, a) in enumerate(zip(model.heads, model.num_anchors, strict=True)):
        prefix, offset = (f"heads.{i}.cls.1.", 0) if isinstance(head, DecoupledHead) else (
            f"heads.{i}.", 5)  # fmt: skip
        out[prefix + "weight"] = out[prefix + "bias"] = (a, offset)
    return out


def transfer(model: Detector, path: str | Path) -> Transfer:
    """Copy into `model` every tensor of weights file `path` whose name and shape match, and
    the class logits of the classes both share by name. In place; returns what it did.

    Raises DetectError (naming the file) when the file is unreadable, or when it shares no
    tensor with the model (a file of another kind altogether).
    """
    tensors, meta = read_tensors(path)
    kind = "backbone" if meta.get("kind") == "backbone" else "detector"
    src_names = [str(n) for n in (meta.get("names") or [])]
    tensors = upgrade_keys(tensors, model)
    dst_names = list(model.cfg.names)
    rows = class_rows(model)
    state = model.state_dict()  # views of the model's tensors: copying into them is loading
    matched, skipped, new_classes = 0, [], list(dst_names)
    with torch.no_grad():
        for key, dst in state.items():
            src = tensors.get(key)
            if src is None:
                skipped.append(key)
                continue
            if key in rows and src_names:
                a, off = rows[key]
                kept = _copy_class_rows(dst, src, a, off, src_names, dst_names)
                if kept is None:
                    skipped.append(key)
                    continue
                new_classes = [n for n in dst_names if n not in kept]
                if kept or off:  # something of the source's (classes, box rows) was kept
                    matched += 1
                else:
                    skipped.append(key)
            elif src.shape == dst.shape:
                dst.copy_(src.to(dst.dtype))
                matched += 1
            else:
                skipped.append(key)
    if kind == "backbone":
        new_classes = list(dst_names)
    if matched == 0:
        raise DetectError(f"{path}: shares no tensor with this model (nothing to start from)")
    return Transfer(str(path), matched, len(state), skipped, new_classes, kind)


def _copy_class_rows(
    dst: Tensor, src: Tensor, a: int, off: int, src_names: list[str], dst_names: list[str]
) -> set[str] | None:
    """Copy the class-independent rows and the rows of shared class names from `src` into
    `dst`, both `[A * (off + C), ...]`; None when the layouts do not fit (no copy)."""
    cs, cd = len(src_names), len(dst_names)
    if src.shape[0] != a * (off + cs) or src.shape[1:] != dst.shape[1:]:
        return None
    s = src.reshape(a, off + cs, *src.shape[1:])
    d = dst.view(a, off + cd, *dst.shape[1:])
    d[:, :off] = s[:, :off]
    where = {n: i for i, n in enumerate(src_names)}
    kept = set()
    for j, name in enumerate(dst_names):
        if name in where:
            d[:, off + j] = s[:, off + where[name]]
            kept.add(name)
    return kept
