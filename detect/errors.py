"""The one exception the library raises; the CLI turns it into `error: ...` and exit code 1."""


class DetectError(Exception):
    """A user-facing error: bad input, bad file, impossible request.

    The message is one line and names the file (and line) at fault when there is one.
    """
