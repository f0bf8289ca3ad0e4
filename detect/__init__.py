"""detect: YOLO-style object detection from the terminal.

Importing the package stays light (no torch): the CLI imports heavy modules only in the commands
that need them, so `detect evaluate GT --pred PRED` and `detect --help` start fast.
"""

from detect.errors import DetectError

__version__ = "0.1.0"
__all__ = ["Detector", "DetectError", "Result", "__version__"]


def __getattr__(name: str):
    """`detect.Detector` and `detect.Result` (detect.api) load on first use: `import detect`
    stays light (no torch, no OpenCV)."""
    if name in ("Detector", "Result"):
        from detect import api

        return getattr(api, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
