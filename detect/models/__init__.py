"""Models: the grid/anchor detectors (`tiny`, `yolov2`), the window classifier, their weights
files, export and the `detect info` figures.

`build_model(ModelConfig)` -> Detector (see detect.models.common); `load_weights(path)` builds
whatever a weights file holds.
"""

from detect.models.build import build_from_config, build_model
from detect.models.common import Detector
from detect.models.config import ModelConfig, default_anchors, split_anchors
from detect.models.weights_file import init_from, load_weights, read_metadata, save_weights
from detect.models.window import WindowClassifier, WindowConfig, build_window_model, to_conv

__all__ = [
    "Detector",
    "ModelConfig",
    "WindowClassifier",
    "WindowConfig",
    "build_from_config",
    "build_model",
    "build_window_model",
    "default_anchors",
    "init_from",
    "load_weights",
    "read_metadata",
    "save_weights",
    "split_anchors",
    "to_conv",
]
