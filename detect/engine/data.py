"""The training data of a run: both splits read, every image header checked up front."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from detect.data import DatasetRecords, image_size, load_dataset
from detect.data.types import REPORT_KINDS
from detect.errors import DetectError
from detect.files import atomic_write_text


def load_training_data(
    data: str,
    splits: tuple[str, str],
    max_images: int | None,
    strict: bool,
    on_read: Callable[[object, object], None],
) -> tuple[DatasetRecords, DatasetRecords]:
    """(train, val) DatasetRecords of `cfg.data`, with every image's header read first.

    An image that is missing or unreadable is dropped from its split and reported (a count,
    fast: headers only), so a bad file is named before the first epoch instead of failing a
    DataLoader worker mid-run. `on_read(train_report, val_report)` (ReadReports) is called
    before any `strict` refusal, for the caller to show them. Raises DetectError with `strict`
    when anything was skipped or mended, or when a split has no readable image.
    """
    out = []
    for split in splits:
        rec = _subset(load_dataset(data, split), max_images)
        good = []
        for im in rec.images:
            try:
                if im.path is None:
                    raise DetectError(f"image {im.id}: no file name")
                image_size(im.path)
                good.append(im)
            except DetectError as e:
                rec.report.add("bad_image", f"{e}, skipped")
        if not good:
            raise DetectError(
                f"{data}: none of the {len(rec.images)} images of split '{split}' can be read"
                f" (first: {rec.report.entries['bad_image'][0]})"
            )
        out.append(replace(rec, images=good) if len(good) < len(rec.images) else rec)
    train_rec, val_rec = out
    if train_rec.names != val_rec.names:
        raise DetectError(
            f"{data}: the train split's classes ({', '.join(train_rec.names[:6])}, ...) are "
            f"not the val split's ({', '.join(val_rec.names[:6])}, ...)"
        )
    on_read(train_rec.report, val_rec.report)
    problems = train_rec.report.warnings() + val_rec.report.warnings()
    if strict and problems:
        raise DetectError(f"--strict: {problems} data problems (listed above)")
    return train_rec, val_rec


def write_data_report(run_dir: Path, train_rec: DatasetRecords, val_rec: DatasetRecords) -> None:
    """`data-report.txt`: every entry the readers logged, per split and kind (the terminal
    shows the first few)."""
    lines = []
    for rec in (train_rec, val_rec):
        for kind, (level, what) in REPORT_KINDS.items():
            entries = rec.report.entries.get(kind, [])
            if entries:
                lines.append(f"[{rec.split}] {level}: {len(entries)} {what}")
                lines += [f"  {m}" for m in entries]
    atomic_write_text(run_dir / "data-report.txt", "\n".join(lines) + "\n" if lines else "")


def _subset(records: DatasetRecords, n: int | None) -> DatasetRecords:
    if n is None or n >= len(records.images):
        return records
    return replace(records, images=records.images[:n])
