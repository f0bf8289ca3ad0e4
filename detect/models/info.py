"""What `detect info` shows: plain data (lines, table rows), rendered by the CLI."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from detect.archs import get_arch
from detect.models.build import build_model
from detect.models.common import count_parameters, gflops, layer_table, output_shapes
from detect.models.config import ModelConfig
from detect.models.weights_file import load_weights

FLOPS_NOTE = "torch.utils.flop_counter, 2 x conv/matmul MACs"


def describe_arch(arch: str, imgsz: int | None, num_classes: int) -> dict[str, Any]:
    """Layer table and figures of a freshly built `arch` (on the meta device: no memory)."""
    row = get_arch(arch)
    imgsz = imgsz or row.info_imgsz
    cfg = ModelConfig(arch=arch, num_classes=num_classes, imgsz=imgsz).check()
    with torch.device("meta"):
        model = build_model(cfg)
    info = _figures(model, imgsz)
    info["layers"] = layer_table(model, imgsz)
    info["lines"] = [("model", f"{arch}, {num_classes} classes, input {imgsz} x {imgsz}")]
    info["lines"] += _parts(arch)
    info["lines"] += info.pop("figures")
    return info


def describe_weights(path: str | Path, imgsz: int | None) -> dict[str, Any]:
    """Classes, anchors, input size, parameters, GFLOPs and training summary of a weights file."""
    model, meta = load_weights(path)
    cfg = model.cfg
    imgsz = imgsz or int(meta.get("imgsz") or getattr(cfg, "imgsz", 320) or 320)
    names = list(meta.get("names") or getattr(cfg, "names", []))
    lines = [
        ("file", str(path)),
        ("model", str(getattr(cfg, "arch", "?"))),
        ("classes", f"{len(names)}: " + ", ".join(f"{i}={n}" for i, n in enumerate(names))),
        ("input size", f"{imgsz} (trained at {meta.get('imgsz')})"),
    ]
    info: dict[str, Any] = {"anchors": []}
    if hasattr(model, "decode"):
        lines += _parts(cfg.arch)
        info["layers"] = layer_table(model, imgsz)
        info.update(_figures(model, imgsz))
        lines += info.pop("figures")
        xs = float(getattr(cfg, "xy_scale", 1.0))
        decode = "sigmoid(t)" if xs == 1 else f"{xs:g} * sigmoid(t) - {(xs - 1) / 2:g}"
        lines.append(("centre offset", f"{decode} cells from the cell corner"))
        for lvl, (level, s) in enumerate(zip(cfg.anchors, model.strides, strict=True)):
            for w, h in level:
                side = cfg.imgsz  # anchors are fixed pixels at the trained side, any input
                px = (f"{w * side:.1f}", f"{h * side:.1f}")
                info["anchors"].append((str(lvl), str(s), f"{w:.4f}", f"{h:.4f}", *px))
    else:
        total, trainable, stats = count_parameters(model)
        lines.append(("parameters", f"{total:,} total, {trainable:,} trainable"))
    training = meta.get("training") or {}
    lines.append(("weights from", _origin(training)))
    info["training"] = [(k, _value(v)) for k, v in training.items()]
    if not training:
        lines.append(("training", "no summary stored"))
    info["lines"] = lines
    return info


def _parts(arch: str) -> list[tuple[str, str]]:
    """The architecture table's row as `detect info` lines: what the model is made of."""
    row = get_arch(arch)
    pretrained = f" (ImageNet: weights/{row.pretrained})" if row.pretrained else ""
    return [
        ("architecture", row.about),
        ("backbone", f"{row.backbone}{pretrained}"),
        ("neck, head", f"{row.neck}, {row.head}"),
    ]


def _origin(training: dict[str, Any]) -> str:
    """Where a weights file's training started: scratch, ImageNet, or other weights."""
    init = training.get("init")
    if not isinstance(init, dict):
        return "trained from scratch" if training else "unknown (no training summary)"
    kind = "ImageNet backbone" if init.get("kind") == "backbone" else "weights"
    new = init.get("new_classes") or []
    head = f", new class head for {len(new)}" if new and init.get("kind") != "backbone" else ""
    return f"{kind} {init.get('from')} ({init.get('tensors')} tensors{head})"


def _value(v: Any) -> str:
    """A training summary value as text: floats to 4 significant places, others as JSON."""
    if isinstance(v, float):
        return f"{v:.4g}"
    return v if isinstance(v, str) else json.dumps(v)


def _figures(model: nn.Module, imgsz: int) -> dict[str, Any]:
    total, trainable, stats = count_parameters(model)
    outs = output_shapes(model, imgsz)
    shapes = ", ".join(f"{h} x {w} x {a * n} ({a} anchors x {n})" for h, w, a, n in outs)
    figures = [
        ("total parameters", f"{total:,}"),
        ("trainable parameters", f"{trainable:,}"),
        ("BatchNorm running statistics", f"{stats:,}"),
        ("GFLOPs", f"{gflops(model, imgsz):.2f} at {imgsz} x {imgsz} ({FLOPS_NOTE})"),
        ("strides", ", ".join(str(s) for s in model.strides)),
        ("output", shapes),
    ]
    return {"figures": figures}
