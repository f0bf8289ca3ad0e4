"""`detect predict` (placeholder: its issue replaces this module)."""

from detect.errors import DetectError


def command() -> None:
    """Not implemented yet."""
    raise DetectError("'detect predict' is not implemented yet")
