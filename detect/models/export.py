"""Export a detector's `predict` (decoded output) to ONNX, OpenVINO or TorchScript.

The exported graph maps `images: Tensor[B, 3, H, W]` float RGB in 0..1 to
`output: Tensor[B, N, 5+C]` rows (x1, y1, x2, y2 input pixels, objectness, C class probabilities):
the same decode as training and prediction; NMS (detect.boxes.postprocess, or the torch-free
detect.runtime.postprocess) stays outside. Batch, height and width are dynamic (H and W multiples
of the largest stride, 32), so a rectangular letterbox runs as is; N follows H and W.

Every export carries the weights' metadata, so `detect.runtime.load_exported` needs nothing else:
`format` ("detect-export"), `version`, `names`, `imgsz` (the letterbox side the model was trained
at), `anchors` (fractions of the input's long side), `strides`, `stride` (the largest),
`config` (the ModelConfig) and `training` (the training summary, when the weights have one).
ONNX holds them as `metadata_props` (JSON-encoded strings), OpenVINO as `metadata.json` in its
folder (`model.xml`, `model.bin`, f32 weights; the precision is chosen when it is loaded),
TorchScript as the extra file `meta.json`.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from detect.errors import DetectError
from detect.files import (
    WriteError,
    atomic_write_bytes,
    check_writable,
    check_writable_file,
    put_bytes,
    writing,
)

FORMATS = {"onnx": ".onnx", "torchscript": ".torchscript", "openvino": "_openvino"}
OPSET = 17
EXPORT_FORMAT = "detect-export"  # the `format` key that marks a file as ours
EXPORT_VERSION = 2  # 1: fixed S x S input (before metadata had format/version); 2: dynamic H, W
OPENVINO_META = "metadata.json"
OPENVINO_XML = "model.xml"


class DecodedOutput(nn.Module):
    """Wraps a Detector so its forward is `predict` (decoded boxes and probabilities)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: Tensor) -> Tensor:
        return self.model.predict(images)


def default_output(weights: str | Path, fmt: str) -> Path:
    """Where `detect export W --format FMT` writes without `--out`: beside W,
    `W.onnx`, `W.torchscript` or the folder `W_openvino/` (ultralytics' naming)."""
    weights = Path(weights)
    if fmt == "openvino":
        return weights.with_name(weights.stem + FORMATS[fmt])
    return weights.with_suffix(FORMATS[fmt])


def export_metadata(model: nn.Module, imgsz: int, meta: dict | None = None) -> dict[str, Any]:
    """The metadata an export carries (plain JSON values; ONNX stores each one JSON-encoded)."""
    cfg = model.cfg
    info: dict[str, Any] = {
        "format": EXPORT_FORMAT,
        "version": EXPORT_VERSION,
        "names": list(cfg.names),
        "imgsz": int(imgsz),
        "anchors": [[list(map(float, a)) for a in level] for level in cfg.anchors],
        "strides": [int(s) for s in model.strides],
        "stride": int(max(model.strides)),
        "config": cfg.to_dict(),
        "input": "images: float32 [B, 3, H, W] RGB 0..1, H and W multiples of stride",
        "output": "output: float32 [B, N, 5+C] x1,y1,x2,y2 (input pixels), objectness, "
        "class probabilities; NMS not applied",
    }
    if meta and meta.get("training"):
        info["training"] = meta["training"]
    if meta and meta.get("source"):  # the weights file it came from: {"file", "sha256"}
        info["source"] = meta["source"]
    return info


def export_model(
    model: nn.Module,
    fmt: str,
    out: str | Path,
    imgsz: int,
    meta: dict | None = None,
    fuse: bool = True,
) -> Path:
    """Write `model.predict` to `out` (a file, or for OpenVINO a folder), atomically.

    Args:
        model: a grid detector (tiny, yolov2); it is moved to the CPU and (with `fuse`) fused.
        fmt: "onnx" (opset 17, TorchScript-based exporter), "openvino" (the ONNX graph converted
            by `openvino.convert_model`, f32 weights) or "torchscript" (torch.jit.trace).
        out: the file (onnx, torchscript) or folder (openvino) to write; replaced if present.
        imgsz: the trace's input side and the `imgsz` recorded in the metadata (a multiple of
            32); batch, height and width stay dynamic.
        meta: the weights' metadata; its training summary is carried along.
        fuse: fold BatchNorm into the convs first (faster, same outputs within float error).
    Returns:
        The path written.
    Raises:
        DetectError: unknown format, a model that is not a grid detector, a bad `imgsz`, or
        OpenVINO not installed. WriteError (`cannot write OUT: reason`) before any work when
        `out`'s folder is read-only, unwritable or full, and when writing fails (nothing is
        left half-written: a file or folder is replaced only when complete).
    """
    if fmt not in FORMATS:
        raise DetectError(f"unknown export format {fmt!r} (expected {', '.join(FORMATS)})")
    if not hasattr(model, "predict"):
        raise DetectError("only grid detectors (tiny, yolov2) can be exported")
    if imgsz < 32 or imgsz % 32:
        raise DetectError(f"imgsz must be a positive multiple of 32, got {imgsz}")
    if fmt == "openvino":
        check_writable(out)
    else:
        check_writable_file(out)
    model = model.eval().to("cpu")
    if fuse:
        model.fuse()
    wrapper = DecodedOutput(model).eval()
    example = torch.zeros(1, 3, imgsz, imgsz)
    info = export_metadata(model, imgsz, meta)
    if fmt == "torchscript":
        buf = io.BytesIO()
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # jit deprecation notices
            traced = torch.jit.trace(wrapper, example, check_trace=False)
            torch.jit.save(traced, buf, _extra_files={"meta.json": json.dumps(info)})
        return atomic_write_bytes(out, buf.getvalue())
    onnx_bytes = _onnx(wrapper, example, info)
    if fmt == "onnx":
        return atomic_write_bytes(out, onnx_bytes)
    return _openvino(onnx_bytes, info, Path(out))


def _onnx(wrapper: nn.Module, example: Tensor, info: dict[str, Any]) -> bytes:
    try:
        import onnx
    except ImportError:
        raise DetectError("export needs the onnx package (pip install onnx)") from None

    tmp = io.BytesIO()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the legacy exporter's deprecation notice
        torch.onnx.export(
            wrapper,
            (example,),
            tmp,
            dynamo=False,  # the dynamo exporter needs onnxscript; this one needs nothing extra
            opset_version=OPSET,
            input_names=["images"],
            output_names=["output"],
            dynamic_axes={
                "images": {0: "batch", 2: "height", 3: "width"},
                "output": {0: "batch", 1: "boxes"},
            },
        )
    proto = onnx.load_from_string(tmp.getvalue())
    for key, value in info.items():
        proto.metadata_props.add(
            key=key, value=value if isinstance(value, str) else json.dumps(value)
        )
    return proto.SerializeToString()


def _openvino(onnx_bytes: bytes, info: dict[str, Any], out: Path) -> Path:
    try:
        import openvino as ov
    except ImportError:
        raise DetectError(
            "--format openvino needs the openvino package (pip install openvino)"
        ) from None

    work = None
    try:
        with writing(out):
            out.parent.mkdir(parents=True, exist_ok=True)
            work = Path(tempfile.mkdtemp(prefix=f".{out.name}-", suffix=".tmp", dir=out.parent))
            src = work / "model.onnx"
            put_bytes(src, onnx_bytes)
            folder = work / out.name
            folder.mkdir()
            ov_model = ov.convert_model(str(src))
            try:
                ov.save_model(ov_model, str(folder / OPENVINO_XML), compress_to_fp16=False)
            except RuntimeError as e:  # OpenVINO's own error for a failed write
                check_writable(out)  # names a full or read-only disk
                why = (str(e).strip().splitlines() or ["no reason given"])[-1]
                raise WriteError(out, f"OpenVINO could not save the model ({why})") from None
            put_bytes(folder / OPENVINO_META, (json.dumps(info, indent=1) + "\n").encode())
            _replace_dir(folder, out)
    finally:
        if work is not None:
            shutil.rmtree(work, ignore_errors=True)
    return out


def _replace_dir(new: Path, dst: Path) -> None:
    """Move folder `new` to `dst` (same file system); an old `dst` is swapped out, then removed,
    so a reader sees the old export or the new one, never a mix."""
    if dst.is_dir():
        old = Path(tempfile.mkdtemp(prefix=f".{dst.name}-old-", dir=dst.parent))
        os.rename(dst, old / dst.name)
        os.rename(new, dst)
        shutil.rmtree(old, ignore_errors=True)
    elif dst.exists():
        raise DetectError(f"{dst}: exists and is not a folder; remove it or pick another --out")
    else:
        os.rename(new, dst)
