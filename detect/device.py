"""`--device auto|cpu|cuda|cuda:N|mps` to a torch.device."""

from __future__ import annotations

import torch

from detect.errors import DetectError


def select_device(spec: str = "auto") -> torch.device:
    """Resolve a device string; `auto` is CUDA when present, else CPU.

    Raises DetectError for an unknown string or a device this machine does not have.
    """
    spec = (spec or "auto").strip().lower()
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if spec.isdigit():  # ultralytics style `--device 0`
        spec = f"cuda:{spec}"
    try:
        device = torch.device(spec)
    except (RuntimeError, ValueError):
        raise DetectError(f"unknown device '{spec}' (use auto, cpu, cuda, cuda:N or mps)") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise DetectError(f"device '{spec}' requested but CUDA is not available here")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise DetectError(
                f"device '{spec}' requested but only {torch.cuda.device_count()} GPU(s) exist"
            )
    elif device.type == "mps":
        if not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
            raise DetectError("device 'mps' requested but MPS is not available here")
    elif device.type != "cpu":
        raise DetectError(f"unsupported device '{spec}' (use auto, cpu, cuda, cuda:N or mps)")
    return device
