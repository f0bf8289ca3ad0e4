"""What the engine can train: each task brings its model, data, loss and validation."""

from detect.engine.tasks.detector import DetectorTask
from detect.engine.tasks.window import WindowTask

__all__ = ["DetectorTask", "WindowTask"]
