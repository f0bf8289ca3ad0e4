"""detect: YOLO-style object detection from the terminal.

Importing the package stays light (no torch): the CLI imports heavy modules only in the commands
that need them, so `detect evaluate GT --pred PRED` and `detect --help` start fast.
"""

from detect.errors import DetectError

__version__ = "0.1.0"
__all__ = ["DetectError", "__version__"]
