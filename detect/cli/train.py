"""`detect train DATA`: train a detector (or the window classifier) into a new run folder."""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from detect.cli.common import Device, Seed, Strict, Verbose, console
from detect.settings import (
    Assigner,
    Cache,
    DetectorConfig,
    Model,
    Optimizer,
    RunConfig,
    TrainConfig,
    WindowTrainConfig,
)

R, D, W = RunConfig, DetectorConfig, WindowTrainConfig  # the defaults below are theirs


def command(
    data: Annotated[
        str | None,
        typer.Argument(help="Data set: ultralytics YAML, COCO JSON or VOC folder."),
    ] = None,
    model: Annotated[
        Model,
        typer.Option("--model", help="A detector, or window (the sliding-window classifier)."),
    ] = Model(D.model),
    epochs: Annotated[
        int | None,
        typer.Option(
            "--epochs",
            help=f"Epochs (default {D.default_epochs}, window {W.default_epochs}; unlimited "
            "when --time is given).",
        ),
    ] = R.epochs,
    time: Annotated[
        float | None,
        typer.Option("--time", help="Wall-clock budget in minutes; the LR cosine ends with it."),
    ] = R.time,
    batch: Annotated[
        int, typer.Option("--batch", help="Images per step (per process; window: crops).")
    ] = D.batch,
    workers: Annotated[
        int, typer.Option("--workers", help="DataLoader worker processes.")
    ] = D.workers,
    lr: Annotated[
        float | None,
        typer.Option("--lr", help="Peak learning rate (default 0.001 AdamW, 0.01 SGD)."),
    ] = R.lr,
    optimizer: Annotated[Optimizer, typer.Option("--optimizer")] = Optimizer(R.optimizer),
    patience: Annotated[
        int, typer.Option("--patience", help="Stop after N validations without improvement.")
    ] = R.patience,
    val_every: Annotated[
        int, typer.Option("--val-every", help="Validate every N epochs.")
    ] = R.val_every,
    imgsz: Annotated[
        int | None,
        typer.Option(
            "--imgsz",
            help=f"Input size in pixels, multiple of 32 (default {D.imgsz}); for --model window "
            f"the window side (default {W.window}).",
        ),
    ] = None,
    train_split: Annotated[
        str,
        typer.Option("--train-split", help="Split to train on (VOC: a list in ImageSets/Main)."),
    ] = R.train_split,
    val_split: Annotated[
        str, typer.Option("--val-split", help="Split to validate on (VOC: e.g. val or test).")
    ] = R.val_split,
    multi_scale: Annotated[
        bool, typer.Option("--multi-scale", help="Random input size 0.5-1.5 x imgsz per batch.")
    ] = D.multi_scale,
    cache: Annotated[
        Cache | None,
        typer.Option("--cache", help="ram: decode and resize each training image once."),
    ] = D.cache,
    seed: Seed = R.seed,
    strict: Strict = R.strict,
    verbose: Verbose = False,
    device: Device = R.device,
    anchors: Annotated[
        str | None,
        typer.Option(
            "--anchors", help="Anchors JSON file, or 'auto' (k-means on the train boxes)."
        ),
    ] = D.anchors,
    weights: Annotated[
        str | None, typer.Option("--weights", help="Start from these weights (fine-tune).")
    ] = R.weights,
    assigner: Annotated[
        Assigner,
        typer.Option(
            "--assigner", help="Target assignment: tal (task-aligned, YOLOv8's) or yolov2."
        ),
    ] = Assigner(D.assigner),
    resume: Annotated[
        Path | None, typer.Option("--resume", help="Continue the run in this run folder.")
    ] = None,
    out: Annotated[str, typer.Option("--out", help="Run folder (never overwritten).")] = R.out,
    name: Annotated[
        str | None, typer.Option("--name", help="Run folder name (beside --out's folder).")
    ] = R.name,
) -> None:
    """Train a detector on DATA into a run folder (weights, results.csv, args.json, curves)."""
    from detect.errors import DetectError

    if data is None and resume is None:
        raise DetectError("give DATA (a data set) or --resume RUN_DIR")
    from detect.engine import train

    run = dict(
        data=data or "", epochs=epochs, time=time, lr=lr, optimizer=optimizer.value,
        patience=patience, val_every=val_every, seed=seed, strict=strict, device=device,
        weights=weights, train_split=train_split, val_split=val_split, out=out, name=name,
        resume=str(resume) if resume else None, command=shlex.join(["detect", *sys.argv[1:]]),
    )  # fmt: skip
    if model == Model.window:
        given = [o for o, v in (("--anchors", anchors), ("--cache", cache),
                                ("--multi-scale", multi_scale)) if v]  # fmt: skip
        if given:
            raise DetectError(f"{', '.join(given)}: detector options, not for --model window")
        task = dict(batch=batch, **({"imgsz": imgsz} if imgsz is not None else {}))
    else:
        task = dict(
            batch=batch, workers=workers, imgsz=imgsz or D.imgsz, multi_scale=multi_scale,
            cache=cache.value if cache else None, anchors=anchors, assigner=assigner.value,
        )  # fmt: skip
    cfg = TrainConfig.create(model.value, **run, **task)
    show = os.environ.get("RANK", "0") == "0"  # under torchrun only rank 0 talks
    with _Progress(show, verbose) as progress:
        result = train(cfg, progress.callback)
    if not show:
        return
    if result.stopped == "interrupted":
        console.print(f"interrupted: state saved; continue with --resume {result.run_dir}")
        raise typer.Exit(130)
    if result.best_epoch > 0:
        console.print(
            f"best: epoch {result.best_epoch}, val mAP50 {result.map50:.4f}, "
            f"mAP50-95 {result.map:.4f}"
        )
    console.print(
        f"{result.epochs} epochs in {result.seconds / 60:.1f} min (stopped: {result.stopped}); "
        f"weights: {result.best}"
    )


class _Progress:
    """Rich bar per epoch (loss terms, images/s), a line per epoch with val mAP."""

    def __init__(self, show: bool, verbose: bool = False) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        self.show, self.verbose = show, verbose
        self.bar = Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[info]}"), TimeElapsedColumn(),
            console=console, transient=True,
        )  # fmt: skip
        self.task = None

    def __enter__(self) -> _Progress:
        if self.show:
            self.bar.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        if self.show:
            self.bar.__exit__(*exc)

    def callback(self, event: Any) -> None:
        """Show one detect.engine.events event."""
        from detect.cli.common import print_report
        from detect.engine import events as E

        if not self.show:
            return
        bar = self.bar
        match event:
            case E.RunStart():
                where = f"{event.device}" + (f" x{event.world}" if event.world > 1 else "")
                budget = f"{event.time} min" if event.time else f"{event.epochs or 100} epochs"
                resumed = (
                    ""
                    if event.resumed_epoch is None
                    else f", resumed at epoch {event.resumed_epoch + 1}"
                )
                console.print(
                    f"training on {event.train_images} images (val {event.val_images}), "
                    f"{budget}, {where}{resumed} -> {event.run_dir}"
                )
            case E.DataRead():
                for split, report in (("train", event.train_report), ("val", event.val_report)):
                    print_report(report, verbose=self.verbose, split=split,
                                 saved="data-report.txt in the run")  # fmt: skip
            case E.CacheProgress():
                if self.task is None:
                    self.task = bar.add_task("caching images", total=event.total, info="")
                bar.update(self.task, completed=event.done)
                if event.done == event.total:
                    bar.remove_task(self.task)
                    self.task = None
            case E.EpochStart():
                if self.task is not None:
                    bar.remove_task(self.task)
                self.task = bar.add_task(
                    f"epoch {event.epoch + 1}", total=event.batches, completed=event.start, info=""
                )
            case E.StepEnd():
                terms = " ".join(
                    f"{k} {event.terms.get(k, 0.0):.4f}" for k in ("box", "obj", "cls")
                )
                bar.update(self.task, completed=event.batch,
                           info=f"{terms} {event.images_per_s:.1f} img/s")  # fmt: skip
            case E.ValStart():
                bar.update(self.task, description="validating", info="")
            case E.ValProgress():
                bar.update(self.task, completed=event.done, total=event.total)
            case E.EpochEnd():
                r = event.row
                val = (
                    f"val mAP50 {r['val_map50']:.4f} mAP50-95 {r['val_map']:.4f}"
                    if r["val_map"] != ""
                    else "not validated"
                )
                star = " *" if event.best and r["val_map"] != "" else ""
                console.print(
                    f"epoch {r['epoch']}: box {r['box_loss']:.4f} obj {r['obj_loss']:.4f} "
                    f"cls {r['cls_loss']:.4f}  {val}{star}  ({r['seconds']:.0f} s)"
                )
