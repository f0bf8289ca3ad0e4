"""Export a detector's `predict` (decoded output) to ONNX or TorchScript, batch axis dynamic.

The exported graph maps `images: Tensor[B, 3, S, S]` float RGB in 0..1 to
`output: Tensor[B, N, 5+C]` rows (x1, y1, x2, y2 input pixels, objectness, C class probabilities):
the same decode as training and prediction; NMS (detect.boxes.postprocess) stays outside.
"""

from __future__ import annotations

import io
import json
import warnings
from pathlib import Path

import torch
from torch import Tensor, nn

from detect.errors import DetectError
from detect.files import atomic_write_bytes

FORMATS = {"onnx": ".onnx", "torchscript": ".torchscript"}
OPSET = 17


class DecodedOutput(nn.Module):
    """Wraps a Detector so its forward is `predict` (decoded boxes and probabilities)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: Tensor) -> Tensor:
        return self.model.predict(images)


def export_model(
    model: nn.Module,
    fmt: str,
    out: str | Path,
    imgsz: int,
    meta: dict | None = None,
    fuse: bool = True,
) -> Path:
    """Write `model.predict` at a fixed `imgsz` x `imgsz` input to `out` (atomically).

    Args:
        fmt: "onnx" (opset 17, TorchScript-based exporter) or "torchscript" (torch.jit.trace).
        meta: weights metadata; names, anchors, imgsz and config go into the ONNX metadata_props
            and the TorchScript extra file `meta.json`.
        fuse: fold BatchNorm into the convs first (faster, same outputs within float error).
    """
    if fmt not in FORMATS:
        raise DetectError(f"unknown export format {fmt!r} (expected onnx or torchscript)")
    if not hasattr(model, "predict"):
        raise DetectError("only grid detectors (tiny, yolov2) can be exported")
    if imgsz < 32 or imgsz % 32:
        raise DetectError(f"imgsz must be a positive multiple of 32, got {imgsz}")
    model = model.eval().to("cpu")
    if fuse:
        model.fuse()
    wrapper = DecodedOutput(model).eval()
    example = torch.zeros(1, 3, imgsz, imgsz)
    info = {
        "names": json.dumps(list(model.cfg.names)),
        "imgsz": str(imgsz),
        "config": json.dumps(model.cfg.to_dict()),
        "output": "x1,y1,x2,y2,objectness,class probabilities (input pixels)",
    }
    if meta and meta.get("training"):
        info["training"] = json.dumps(meta["training"])
    buf = io.BytesIO()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about constant shapes: intended
        if fmt == "onnx":
            _onnx(wrapper, example, buf, info)
        else:
            traced = torch.jit.trace(wrapper, example, check_trace=False)
            torch.jit.save(traced, buf, _extra_files={"meta.json": json.dumps(info)})
    return atomic_write_bytes(out, buf.getvalue())


def _onnx(wrapper: nn.Module, example: Tensor, buf: io.BytesIO, info: dict[str, str]) -> None:
    import onnx

    tmp = io.BytesIO()
    torch.onnx.export(
        wrapper,
        (example,),
        tmp,
        dynamo=False,  # the dynamo exporter needs onnxscript; this one needs nothing extra
        opset_version=OPSET,
        input_names=["images"],
        output_names=["output"],
        dynamic_axes={"images": {0: "batch"}, "output": {0: "batch"}},
    )
    proto = onnx.load_from_string(tmp.getvalue())
    for key, value in info.items():
        proto.metadata_props.add(key=key, value=value)
    buf.write(proto.SerializeToString())
