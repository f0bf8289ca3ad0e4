"""Weights files: one `.safetensors` file, tensors + string metadata; nothing is ever unpickled.

Metadata (every value a string):
    "detect_format": "1"
    "config":   JSON of the model config (`cfg.to_dict()`, with its "arch")
    "names":    JSON list of class names
    "anchors":  JSON anchors per level, [w, h] as fractions of the input side
    "imgsz":    JSON int, the input side trained at
    "training": JSON training summary (epochs, time, val mAP, command, ...)
    any other key given in `meta`: its JSON.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save
from torch import nn

from detect.errors import DetectError
from detect.files import atomic_write_bytes
from detect.models.build import build_from_config

FORMAT = "1"


def save_weights(path: str | Path, model: nn.Module, meta: dict[str, Any] | None = None) -> Path:
    """Write `model`'s state dict and metadata to `path` atomically.

    `model` is any nn.Module with a `.cfg` having `to_dict()` and an `arch` field (a DDP/EMA
    wrapper with `.module` is unwrapped). `meta` values must be JSON-serialisable; its "names",
    "anchors" and "imgsz" override the config's. Do not save a `fuse()`d model.
    """
    model = getattr(model, "module", model)
    cfg = getattr(model, "cfg", None)
    if cfg is None or not hasattr(cfg, "to_dict"):
        raise DetectError(f"cannot save {type(model).__name__}: it has no .cfg with to_dict()")
    config = cfg.to_dict()
    fields = {
        "config": config,
        "names": config.get("names", []),
        "anchors": config.get("anchors", []),
        "imgsz": config.get("imgsz"),
        "training": {},
        **(meta or {}),
    }
    try:
        metadata = {k: json.dumps(v) for k, v in fields.items()}
    except (TypeError, ValueError) as e:
        raise DetectError(f"cannot save weights metadata to {path}: {e}") from None
    metadata["detect_format"] = FORMAT
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    return atomic_write_bytes(path, save(tensors, metadata=metadata))


def read_metadata(path: str | Path) -> dict[str, Any]:
    """The decoded metadata of a weights file, without building the model.

    Raises DetectError (naming the file) if it is missing, not safetensors, or not ours.
    """
    meta, _ = _read(Path(path), tensors=False)
    return meta


def load_weights(
    path: str | Path, device: str | torch.device = "cpu"
) -> tuple[nn.Module, dict[str, Any]]:
    """Build the model a weights file describes and load its tensors.

    Returns (model in eval mode on `device`, decoded metadata dict with "config", "names",
    "anchors", "imgsz", "training", ...). Any bad file (missing, truncated, foreign, tampered)
    raises a one-line DetectError naming the file.
    """
    path = Path(path)
    meta, tensors = _read(path, tensors=True)
    if meta.get("kind") == "backbone":
        raise DetectError(
            f"{path}: an ImageNet backbone, not a detector: train from it "
            f"(detect train DATA --weights {path})"
        )
    config = meta["config"]
    try:
        model = build_from_config(config)
    except DetectError as e:
        raise DetectError(f"{path}: bad model config in metadata: {e}") from None
    except (TypeError, ValueError, KeyError) as e:
        raise DetectError(f"{path}: bad model config in metadata: {e}") from None
    tensors = upgrade_keys(tensors, model)  # files saved before detectors had parts
    try:
        model.load_state_dict(tensors, strict=True)
    except RuntimeError as e:
        if config.get("arch") == "tiny" and "heads.0.weight" in tensors:  # arch name: a file
            # format's history, not a model choice
            raise DetectError(
                f"{path}: a tiny model with the old single-conv head (detect before the "
                "decoupled head); retrain it with this version"
            ) from None
        detail = " ".join(str(e).split())[:300]
        raise DetectError(f"{path}: tensors do not match the model ({detail})") from None
    return model.to(device).eval(), meta


def upgrade_keys(tensors: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """Names of weights saved before detectors were built from parts (`stem.conv.weight`,
    `lat5.conv.weight`) -> today's (`backbone.stem.conv.weight`, `neck.lat5.conv.weight`):
    a key whose first part is a backbone stage goes under `backbone.`, any other but the heads
    under `neck.`. Today's names, and models without a backbone (the window classifier), pass
    unchanged."""
    if not hasattr(model, "backbone"):
        return tensors
    stages = set(model.backbone.stage_names)
    out = {}
    for key, value in tensors.items():
        head = key.split(".", 1)[0]
        if head in ("backbone", "neck", "heads"):
            out[key] = value
        else:
            out[("backbone." if head in stages else "neck.") + key] = value
    return out


def init_from(model: nn.Module, path: str | Path, what: str) -> None:
    """Copy all the parameters of weights file `path` into `model` (the window classifier's
    fine-tuning start; detectors transfer what fits: detect.models.transfer).

    `what` names `model` in the error when shapes do not fit ("--model window with 6 classes").
    """
    init, _ = load_weights(path)
    try:
        model.load_state_dict(init.state_dict())
    except RuntimeError:
        raise DetectError(f"{path}: does not fit {what}") from None


def read_tensors(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(tensors, decoded metadata) of a detect weights file or ImageNet backbone file, without
    building a model (transfer learning matches them by name). DetectError naming the file."""
    meta, tensors = _read(Path(path), tensors=True)
    return tensors, meta


def _read(path: Path, tensors: bool) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    if not path.is_file():
        raise DetectError(f"weights file not found: {path}")
    out: dict[str, torch.Tensor] = {}
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            raw = f.metadata() or {}
            if tensors and raw.get("detect_format") == FORMAT:
                out = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (not a dict)
    except Exception as e:  # safetensors raises its own error types (and OSError)
        detail = " ".join(str(e).split())[:200]
        raise DetectError(f"{path}: not a readable safetensors file ({detail})") from None
    if raw.get("detect_format") is None:
        raise DetectError(f"{path}: not a detect weights file (no detect metadata)")
    if raw["detect_format"] != FORMAT:
        raise DetectError(f"{path}: unsupported weights format {raw['detect_format']!r}")
    meta: dict[str, Any] = {"detect_format": FORMAT}
    for key, value in raw.items():
        if key == "detect_format":
            continue
        try:
            meta[key] = json.loads(value)
        except json.JSONDecodeError:
            raise DetectError(f"{path}: metadata {key!r} is not valid JSON") from None
    if not isinstance(meta.get("config"), dict) and meta.get("kind") != "backbone":
        raise DetectError(f"{path}: metadata has no model config")
    return meta, out
