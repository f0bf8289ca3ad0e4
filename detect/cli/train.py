"""`detect train DATA`: train a detector (or the window classifier) into a new run folder."""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path
from typing import Annotated

import typer

from detect.cli.common import Device, ImgSz, Seed, Strict, Verbose, console


def command(
    data: Annotated[
        str | None,
        typer.Argument(help="Data set: ultralytics YAML, COCO JSON or VOC folder."),
    ] = None,
    model: Annotated[
        str, typer.Option("--model", help="tiny | yolov2 | window (the sliding-window classifier).")
    ] = "tiny",
    epochs: Annotated[
        int | None,
        typer.Option("--epochs", help="Epochs (default 100; unlimited when --time is given)."),
    ] = None,
    time: Annotated[
        float | None,
        typer.Option("--time", help="Wall-clock budget in minutes; the LR cosine ends with it."),
    ] = None,
    batch: Annotated[int, typer.Option("--batch", help="Images per step (per process).")] = 8,
    workers: Annotated[int, typer.Option("--workers", help="DataLoader worker processes.")] = 2,
    lr: Annotated[
        float | None,
        typer.Option("--lr", help="Peak learning rate (default 0.001 AdamW, 0.01 SGD)."),
    ] = None,
    optimizer: Annotated[str, typer.Option("--optimizer", help="adamw | sgd.")] = "adamw",
    patience: Annotated[
        int, typer.Option("--patience", help="Stop after N validations without improvement.")
    ] = 50,
    val_every: Annotated[int, typer.Option("--val-every", help="Validate every N epochs.")] = 1,
    imgsz: ImgSz = 320,
    train_split: Annotated[
        str,
        typer.Option("--train-split", help="Split to train on (VOC: a list in ImageSets/Main)."),
    ] = "train",
    val_split: Annotated[
        str, typer.Option("--val-split", help="Split to validate on (VOC: e.g. val or test).")
    ] = "val",
    multi_scale: Annotated[
        bool, typer.Option("--multi-scale", help="Random input size 0.5-1.5 x imgsz per batch.")
    ] = False,
    cache: Annotated[
        str | None,
        typer.Option("--cache", help="ram: decode and resize each training image once."),
    ] = None,
    seed: Seed = 0,
    strict: Strict = False,
    verbose: Verbose = False,
    device: Device = "auto",
    anchors: Annotated[
        str | None,
        typer.Option(
            "--anchors", help="Anchors JSON file, or 'auto' (k-means on the train boxes)."
        ),
    ] = None,
    weights: Annotated[
        str | None, typer.Option("--weights", help="Start from these weights (fine-tune).")
    ] = None,
    assigner: Annotated[
        str,
        typer.Option(
            "--assigner",
            help="Target assignment: tal (task-aligned, YOLOv8's) | yolov2 (by anchor shape).",
        ),
    ] = "tal",
    resume: Annotated[
        Path | None, typer.Option("--resume", help="Continue the run in this run folder.")
    ] = None,
    out: Annotated[
        str, typer.Option("--out", help="Run folder (never overwritten).")
    ] = "runs/train",
    name: Annotated[
        str | None, typer.Option("--name", help="Run folder name (beside --out's folder).")
    ] = None,
) -> None:
    """Train a detector on DATA into a run folder (weights, results.csv, args.json, curves)."""
    from detect.errors import DetectError

    if data is None and resume is None:
        raise DetectError("give DATA (a data set) or --resume RUN_DIR")
    from detect.train import TrainConfig, train

    cfg = TrainConfig(
        data=data or "", model=model, epochs=epochs, time=time, batch=batch, workers=workers,
        lr=lr, optimizer=optimizer, patience=patience, val_every=val_every, imgsz=imgsz,
        multi_scale=multi_scale, cache=cache, strict=strict, seed=seed, device=device,
        anchors=anchors, weights=weights, assigner=assigner, train_split=train_split,
        val_split=val_split, resume=str(resume) if resume else None, out=out, name=name,
        command=shlex.join(["detect", *sys.argv[1:]]),
    )  # fmt: skip
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

    def callback(self, event: str, info: dict) -> None:
        if not self.show:
            return
        bar = self.bar
        if event == "start":
            where = f"{info['device']}" + (f" x{info['world']}" if info["world"] > 1 else "")
            budget = f"{info['time']} min" if info["time"] else f"{info['epochs'] or 100} epochs"
            resumed = (
                ""
                if info["resumed_epoch"] is None
                else f", resumed at epoch {info['resumed_epoch'] + 1}"
            )
            console.print(
                f"training on {info['train_images']} images (val {info['val_images']}), "
                f"{budget}, {where}{resumed} -> {info['run_dir']}"
            )
        elif event == "data":
            from detect.cli.common import print_report

            for split in ("train", "val"):
                print_report(info[f"{split}_report"], verbose=self.verbose, split=split,
                             saved="data-report.txt in the run")  # fmt: skip
        elif event == "cache":
            if self.task is None:
                self.task = bar.add_task("caching images", total=info["total"], info="")
            bar.update(self.task, completed=info["done"])
            if info["done"] == info["total"]:
                bar.remove_task(self.task)
                self.task = None
        elif event == "epoch":
            if self.task is not None:
                bar.remove_task(self.task)
            self.task = bar.add_task(
                f"epoch {info['epoch'] + 1}",
                total=info["batches"],
                completed=info["start"],
                info="",
            )
        elif event == "batch":
            text = (
                f"box {info['box']:.4f} obj {info['obj']:.4f} cls {info['cls']:.4f} "
                f"{info['images_per_s']:.1f} img/s"
            )
            bar.update(self.task, completed=info["batch"], info=text)
        elif event == "val_start":
            bar.update(self.task, description="validating", info="")
        elif event == "val_batch":
            bar.update(self.task, completed=info["done"], total=info["total"])
        elif event == "epoch_end":
            val = (
                f"val mAP50 {info['val_map50']:.4f} mAP50-95 {info['val_map']:.4f}"
                if info["val_map"] != ""
                else "not validated"
            )
            star = " *" if info["best"] and info["val_map"] != "" else ""
            console.print(
                f"epoch {info['epoch']}: box {info['box_loss']:.4f} obj {info['obj_loss']:.4f} "
                f"cls {info['cls_loss']:.4f}  {val}{star}  ({info['seconds']:.0f} s)"
            )
