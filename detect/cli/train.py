"""`detect train` (placeholder: its issue replaces this module)."""

from detect.errors import DetectError


def command() -> None:
    """Not implemented yet."""
    raise DetectError("'detect train' is not implemented yet")
