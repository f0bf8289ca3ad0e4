"""Safe output: atomic writes, never-overwritten run folders, and one error for a failed write.

Every byte `detect` writes to a file itself goes through `_write`, and every temporary file is
renamed into place by `_replace` (the two points tests patch to inject faults); what libraries
write on their own (OpenCV's video writer, OpenVINO, convert's image copies) is wrapped in
`writing`, and a video is checked whole before its rename (`mp4_complete`). An OSError while
creating or writing an output becomes `WriteError` ("cannot write PATH: no space left on
device"), a DetectError that the CLI prints as one line; the temporary file is removed first, so
a failure leaves nothing half-written under the final name and no hidden `.*.tmp` file behind.
`check_writable` finds a read-only, unwritable or full destination before any work.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import struct
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from contextvars import ContextVar
from pathlib import Path
from typing import Any

from detect.errors import DetectError

# errno values only a write gives: an OSError carrying one is a failed output (detect.cli.main)
WRITE_ERRNOS = frozenset({errno.ENOSPC, errno.EROFS, errno.EDQUOT, errno.EFBIG})


class WriteError(DetectError):
    """An output that could not be written: `cannot write PATH: REASON[HINT]`.

    `path` is the file or folder asked for (never a temporary name), `reason` the system's
    words ("no space left on device", "read-only file system", "permission denied"), `errno`
    the OSError's number when there was one. `summary` is what a command finished before the
    failure, where it reports one (`run_predict` sets it to its PredictSummary).
    """

    def __init__(self, path: str | Path, reason: str | OSError = "", hint: str = "") -> None:
        self.path = Path(path)
        self.errno = reason.errno if isinstance(reason, OSError) else None
        self.reason = describe(reason) if isinstance(reason, OSError) else str(reason)
        self.hint = hint
        self.summary: Any = None
        super().__init__(f"cannot write {path}: {self.reason}{hint}")

    def __reduce__(self):  # picklable (e.g. across processes) despite the extra arguments
        return (type(self), (self.path, self.reason, self.hint))


def describe(e: OSError) -> str:
    """An OSError's reason in lower case ("no space left on device"), without the file name."""
    text = e.strerror or str(e) or type(e).__name__
    return text[:1].lower() + text[1:]


def write_error_from(e: OSError) -> WriteError | None:
    """A WriteError for an OSError that only a write gives (disk full, read-only file system,
    quota, file too large), naming the file it names (the final name for one of our temporary
    files); None for any other OSError."""
    if e.errno not in WRITE_ERRNOS:
        return None
    name = e.filename if isinstance(e.filename, str) else None
    if name is None:
        return WriteError("an output", e)
    path = Path(name)
    m = re.fullmatch(r"\.(.+?)(?:\.[A-Za-z0-9_]{8})?\.tmp(\.[A-Za-z0-9]+)?", path.name)
    if m:  # `.name.XXXXXXXX.tmp` (temp_beside) or `.stem.tmp.mp4` (a video being written)
        path = path.with_name(m[1] + (m[2] or ""))
    return WriteError(path, e)


@contextmanager
def writing(path: str | Path) -> Iterator[None]:
    """Inside, an OSError becomes WriteError naming `path` (the output the user asked for).

    For code that writes through other libraries or into a temporary folder (convert, synth,
    export): the error names the output, not the file deep inside it.
    """
    try:
        yield
    except WriteError:
        raise
    except OSError as e:
        raise WriteError(path, e) from None


def _write(f, data: bytes) -> None:
    """The one place output bytes are written (tests patch it to inject faults)."""
    f.write(data)


def _replace(src: str | Path, dst: str | Path) -> None:
    """The one place a temporary file is renamed into place (tests patch it)."""
    os.replace(src, dst)


def rename_into_place(tmp: str | Path, path: str | Path) -> None:
    """Rename a finished temporary file onto `path`; WriteError naming `path` if it fails."""
    with writing(path):
        _replace(tmp, path)


def put_bytes(path: str | Path, data: bytes) -> None:
    """Write a file directly, not atomically: for files inside a folder that is itself built
    under a temporary name (convert, synth). Raises OSError; wrap in `writing(OUT)`."""
    with open(path, "wb") as f:
        _write(f, data)


def check_writable(path: str | Path, inside: bool = False) -> None:
    """Raise WriteError now, before any work, if `path` (a file to write or a folder to make)
    cannot be created: the nearest existing folder above it is read-only, not writable by this
    user, not a folder, or on a file system with no space left. `path` itself may exist (it is
    replaced). With `inside`, `path` is a folder, perhaps existing, that files go into (a plots
    folder): it is checked itself when it exists.

    A check, not a promise: the disk can still fill up later, which the writes report.
    """
    path = Path(path)
    above = path if inside else path.parent
    while not above.is_dir():
        if above.exists() or above == above.parent:
            raise WriteError(path, f"{above} is not a folder")
        above = above.parent
    try:
        _probe(above)
        if _full(above):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    except OSError as e:
        raise WriteError(path, e) from None


def check_writable_file(path: str | Path) -> None:
    """`check_writable` for a single output file: also an error where `path` is a folder."""
    if Path(path).is_dir():
        raise WriteError(path, "it is a folder")
    check_writable(path)


def _probe(folder: Path) -> None:
    """Create and remove a hidden empty file in `folder`: OSError if none can be created there
    (read-only file system, no permission). Exact where os.access is not (ACLs, network)."""
    fd, name = tempfile.mkstemp(prefix=".detect-probe.", suffix=".tmp", dir=folder)
    os.close(fd)
    os.unlink(name)


def _full(folder: Path) -> bool:
    """True when `folder`'s file system has no block left for this user (root may use the
    blocks reserved for it). File systems that report no size at all count as not full."""
    if not hasattr(os, "statvfs"):
        return False
    st = os.statvfs(folder)
    free = st.f_bfree if hasattr(os, "geteuid") and os.geteuid() == 0 else st.f_bavail
    return st.f_blocks > 0 and free == 0


# Atomic writes committed together: see `all_or_nothing`.
_batch: ContextVar[list[tuple[str, Path]] | None] = ContextVar("detect_files_batch", default=None)


def atomic_write_bytes(path: str | Path, data: bytes, fsync: bool = True) -> Path:
    """Write `data` to `path` through a temporary file in the same folder, then rename.

    A reader never sees a half-written file, and an interrupted write leaves the old file intact.
    `fsync=False` skips the flush to disk (reproducible outputs written by the thousand, where
    it costs time: annotated images). Inside `all_or_nothing` the rename waits for the end.
    Raises WriteError naming `path` (the temporary file removed) when it cannot be written.
    """
    path = Path(path)
    with writing(path):
        fd, tmp = temp_beside(path)
    try:
        with os.fdopen(fd, "wb") as f:
            _write(f, data)
            f.flush()
            if fsync:
                os.fsync(f.fileno())
        batch = _batch.get()
        if batch is None:
            _replace(tmp, path)
        else:
            batch.append((tmp, path))
    except BaseException as e:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(e, OSError):
            raise WriteError(path, e) from None
        raise
    return path


@contextmanager
def all_or_nothing(folder: str | Path | None = None) -> Iterator[None]:
    """The atomic writes inside are kept or dropped together.

    Each is written to its temporary file as usual, but renamed into place only when the block
    ends without error, in the order written; on an error every temporary file is removed and
    no target changes (and `folder`, a run folder made for these files, is removed if empty).
    A process killed between the renames leaves every file whole, some old and some new: write
    last the file whose presence says the set is complete (training's resume state).
    """
    pending: list[tuple[str, Path]] = []
    token = _batch.set(pending)
    try:
        yield
    except BaseException:
        _drop(pending, folder)
        raise
    finally:
        _batch.reset(token)
    for i, (tmp, path) in enumerate(pending):
        try:
            _replace(tmp, path)
        except OSError as e:
            _drop(pending[i:], None)
            raise WriteError(path, e) from None


def _drop(pending: list[tuple[str, Path]], folder: str | Path | None) -> None:
    for tmp, _ in pending:
        Path(tmp).unlink(missing_ok=True)
    if folder is not None:
        with suppress(OSError):
            Path(folder).rmdir()  # only if empty


class AtomicFile:
    """A file written in pieces (a streamed COCO list) under a hidden temporary name beside
    `path`, renamed onto it by `commit()`, so it appears whole or not at all; `discard()`
    removes it. An OSError removes the temporary file and raises WriteError naming `path`."""

    def __init__(self, path: str | Path, fsync: bool = True) -> None:
        self.path, self.fsync, self.closed = Path(path), fsync, False
        with writing(self.path):
            fd, self.tmp = temp_beside(self.path)
        self.f = os.fdopen(fd, "wb")

    def write(self, data: bytes) -> None:
        try:
            _write(self.f, data)
        except OSError as e:
            self.discard()
            raise WriteError(self.path, e) from None

    def commit(self) -> Path:
        try:
            self.f.flush()
            if self.fsync:
                os.fsync(self.f.fileno())
            self.f.close()
            _replace(self.tmp, self.path)
        except OSError as e:
            self.discard()
            raise WriteError(self.path, e) from None
        self.closed = True
        return self.path

    def discard(self) -> None:
        if self.closed:
            return
        self.closed = True
        with suppress(OSError):  # its flush may fail on a full disk; the file is closed anyway
            self.f.close()
        Path(self.tmp).unlink(missing_ok=True)


def temp_beside(path: Path) -> tuple[int, str]:
    """(fd, name) of a new hidden temporary file in `path`'s folder (made if missing), with the
    mode of any other new file (mkstemp's 0600 would make outputs private after the rename).
    Raises OSError."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, 0o666 & ~_umask())
    except OSError:
        os.close(fd)
        os.unlink(tmp)
        raise
    return fd, tmp


def temp_dir_beside(path: Path) -> Path:
    """A new hidden temporary folder beside `path` (`.NAME.XXXXXXXX.tmp`; its parent made if
    missing) to build a folder output in, then rename: with the mode of any other new folder
    (mkdtemp's 0700 would make the output private after the rename). Raises OSError."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    os.chmod(tmp, 0o777 & ~_umask())
    return tmp


def remove_temps(folder: str | Path) -> list[Path]:
    """Remove the hidden temporary files `temp_beside` makes (`.NAME.XXXXXXXX.tmp`) directly in
    `folder`: left by a process killed while writing (SIGKILL, power loss). Returns them."""
    gone = []
    for p in Path(folder).glob(".*.tmp"):
        if p.is_file() and re.fullmatch(r"\..+\.[A-Za-z0-9_]{8}\.tmp", p.name):
            p.unlink(missing_ok=True)
            gone.append(p)
    return gone


def remove_empty_dirs(root: str | Path) -> bool:
    """Remove the empty folders under `root` (deepest first), then `root` if it is empty: what a
    failed run made but never filled. True when `root` is gone."""
    root = Path(root)
    for folder in sorted((p for p in root.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
        with suppress(OSError):
            folder.rmdir()  # only if empty
    try:
        root.rmdir()
    except OSError:
        return False
    return True


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, obj: Any, indent: int | None = 2) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=indent) + "\n")


def new_run_dir(path: str | Path) -> Path:
    """Create and return a fresh run folder: `path`, else `path-2`, `path-3`, ...

    An existing folder is never reused, so no earlier run is overwritten. Creation is atomic
    (`mkdir` without `exist_ok`), so two processes started together get different folders.
    Raises WriteError when the folder cannot be made (read-only, no permission, no space).
    """
    path = Path(path)
    with writing(path):
        path.parent.mkdir(parents=True, exist_ok=True)
    n = 1
    while True:
        candidate = path if n == 1 else path.with_name(f"{path.name}-{n}")
        try:
            candidate.mkdir()
            return candidate
        except FileExistsError:
            n += 1
        except OSError as e:
            raise WriteError(candidate, e) from None


def short_write(folder: str | Path) -> OSError:
    """The OSError for a file that a library wrote without reporting an error but left cut
    short (OpenCV's VideoWriter): "no space left on device" when `folder`'s disk is full."""
    if _full(Path(folder)):
        return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    return OSError(errno.EIO, "the file came out incomplete")


def mp4_complete(path: str | Path) -> bool:
    """Whether an MP4 file's top-level boxes run exactly to its end and include its index
    (`moov`): False for a video cut short (the disk filled up while it was written; OpenCV's
    VideoWriter reports no error)."""
    size = os.path.getsize(path)
    pos, kinds = 0, set()
    with open(path, "rb") as f:
        while pos < size:
            f.seek(pos)
            head = f.read(16)
            if len(head) < 8:
                return False
            n, kind = struct.unpack(">I4s", head[:8])
            if n == 1:
                if len(head) < 16:
                    return False
                n = struct.unpack(">Q", head[8:16])[0]
            elif n == 0:
                n = size - pos
            if n < 8:
                return False
            kinds.add(kind)
            pos += n
    return pos == size and b"moov" in kinds


def file_sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes (read in 1 MiB blocks)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
