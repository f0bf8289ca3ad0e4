"""A model to predict with: from memory, a weights file or an exported model (an ONNX file or an
OpenVINO folder of `detect export`, run by detect.runtime), with its input size and classes."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from detect.device import select_device
from detect.errors import DetectError
from detect.models import load_weights
from detect.runtime import ExportedModel, is_exported, load_exported


def unwrap(model: nn.Module) -> nn.Module:
    """The bare model under DDP / DataParallel wrappers."""
    return getattr(model, "module", model)


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter (CPU for a model without parameters)."""
    for p in model.parameters():
        return p.device
    return torch.device("cpu")


def load_model(model_or_weights: Any, device: str | torch.device = "cpu") -> tuple[Any, dict]:
    """A model in memory is returned as is (never moved); a path is loaded onto `device`.

    An exported model (`.onnx` file, OpenVINO folder) loads as a `detect.runtime.ExportedModel`
    on the CPU (ONNX Runtime / OpenVINO).
    Returns (model, meta) where meta is the weights' metadata ({} for a model in memory; an
    exported model's: names, imgsz, stride, config, training summary).
    Raises DetectError for a missing or bad weights file, something that is not a model, or an
    exported model asked to run on another device than the CPU.
    """
    if isinstance(model_or_weights, ExportedModel):
        return model_or_weights, dict(model_or_weights.meta)
    if isinstance(model_or_weights, (str, Path)):
        path = Path(model_or_weights)
        if is_exported(path):
            if str(device) not in ("auto", "cpu"):
                raise DetectError(
                    f"{path}: an exported model runs on the CPU (ONNX Runtime / OpenVINO); "
                    f"use the .safetensors weights for --device {device}"
                )
            model = load_exported(path)
            return model, dict(model.meta)
        if not path.is_file():
            raise DetectError(f"weights file not found: {path}")
        if isinstance(device, str):
            device = select_device(device)
        model, meta = load_weights(path, device=device)
        return model, dict(meta or {})
    if not hasattr(model_or_weights, "parameters"):
        raise DetectError(f"expected a model or a weights path, got {type(model_or_weights)!r}")
    return model_or_weights, {}


def model_imgsz(model: Any, meta: dict | None = None) -> int:
    """The input side the model was trained at: weights metadata, else its config, else 320."""
    if meta and meta.get("imgsz"):
        return int(meta["imgsz"])
    cfg = getattr(unwrap(model), "cfg", None)
    return int(getattr(cfg, "imgsz", 320) or 320)


def model_names(model: Any, meta: dict | None = None) -> list[str]:
    """Class names: the model config's, else the weights metadata's."""
    cfg = getattr(unwrap(model), "cfg", None)
    names = list(getattr(cfg, "names", []) or [])
    if not names and meta and meta.get("names"):
        names = list(meta["names"])
    return names


def check_class_names(model: Sequence[str], data: Sequence[str], source: str) -> None:
    """Raise DetectError unless a model's class names are the data set's, in the same order.

    Scoring a model against data whose class ids mean other things gives a plausible wrong
    mAP. Placeholder names (`0`, `1`, ... as a YAML with only `nc` gets) match any names of
    the same count.
    """
    model, data = list(model), list(data)
    if model == data:
        return
    placeholder = [str(i) for i in range(len(data))]
    if len(model) == len(data) and placeholder in (model, data):
        return

    def show(names: list[str]) -> str:
        text = ", ".join(names[:8]) + (", ..." if len(names) > 8 else "")
        return f"{len(names)}: {text}"

    raise DetectError(
        f"{source}: the model's classes ({show(model)}) are not the data set's ({show(data)})"
    )
