"""Where the shipped data files are: `weights/` and `anchors/`.

In the repo they sit at the root; `pip install .` installs them as the packages `detect.weights`
and `detect.anchors` (see pyproject.toml), so the default weights are found from the installed
package whatever the working directory. An editable install maps only `detect/`, so fall back to
the source tree beside it.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path


def data_dir(name: str) -> Path:
    """The folder of shipped data `name` ("weights" or "anchors").

    Looked up by path, not by import: an editable install does not map the data folders to
    the `detect.weights` / `detect.anchors` packages.
    """
    installed = Path(__file__).resolve().parent / name
    if installed.is_dir():
        return installed
    return Path(__file__).resolve().parent.parent / name


def default_weights() -> Path:
    """The shipped default model: real objects (PASCAL VOC, 20 classes; weights/README.md).

    No fallback to the shapes model: a missing file fails where it is loaded, naming the path,
    instead of labelling a photo with shapes.
    """
    return data_dir("weights") / "voc-tiny.safetensors"


def default_predict_weights(device: str = "auto", half: bool = False) -> Path:
    """What `detect predict` runs without `--weights`: the default model exported to ONNX
    (`weights/voc-tiny.onnx`, ONNX Runtime on the CPU: no torch import, 2.81x `yolo predict`'s
    fastest CPU path in bench/README.md, Predict) where the model will run on the CPU, else
    the safetensors for PyTorch (a GPU, or `half`: fp16 is a CUDA path). Same model: the ONNX
    export records the SHA-256 of the safetensors it came from, and tests hold it to that file
    and to its outputs.

    The CPU is known without importing torch: `--device cpu`, or `auto` where no NVIDIA GPU
    is visible (`detect.device.select_device` makes the same choice for `auto`).
    """
    exported = data_dir("weights") / "voc-tiny.onnx"
    spec = (device or "auto").strip().lower()
    on_cpu = spec == "cpu" or (spec == "auto" and not nvidia_gpu_visible())
    return exported if on_cpu and not half and exported.is_file() else default_weights()


def nvidia_gpu_visible() -> bool:
    """Whether an NVIDIA GPU may serve CUDA here, known without importing torch: the driver
    lists one (Linux: /proc/driver/nvidia/gpus; elsewhere: `nvidia-smi` on PATH) and
    `CUDA_VISIBLE_DEVICES` does not hide every device. True means "maybe": torch decides."""
    if os.environ.get("CUDA_VISIBLE_DEVICES", "unset").strip() in ("", "-1"):
        return False
    if sys.platform.startswith("linux"):
        gpus = Path("/proc/driver/nvidia/gpus")
        return gpus.is_dir() and any(gpus.iterdir())
    return shutil.which("nvidia-smi") is not None


def shapes_weights() -> Path:
    """The shapes model: the six classes of `detect synth` (tests, demos, the sliding-window
    baselines of `detect bench`)."""
    return data_dir("weights") / "shapes-tiny.safetensors"
