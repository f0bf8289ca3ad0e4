"""`detect train DATA`: train a detector (or the window classifier) into a new run folder."""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from detect.cli.common import Device, Seed, Strict, Verbose, console, err_console
from detect.cli.text import plural
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

EXAMPLES = [
    "detect synth data/shapes && detect train data/shapes/data.yaml --epochs 10",
    "detect train VOC2007 --model yolov2 --time 30 --anchors auto",
    "detect train mydata.yaml --weights best.safetensors   # onto your classes",
    "detect train VOC2007 --model efficientnet-lite0 --time 60   # from ImageNet",
    "detect train --resume runs/train",
]  # the end of --help


def command(
    ctx: typer.Context,
    data: Annotated[
        str | None,
        typer.Argument(help="Data set: ultralytics YAML, COCO JSON or VOC folder."),
    ] = None,
    model: Annotated[
        Model | None,
        typer.Option(
            "--model",
            metavar="MODEL",
            help="tiny, yolov2, efficientnet-lite0|1|2 (ImageNet backbone), or window (the "
            "sliding-window classifier). Default: the architecture of --weights, else tiny.",
            show_default=False,
        ),
    ] = None,
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
    optimizer: Annotated[
        Optimizer, typer.Option("--optimizer", help="AdamW, or SGD with Nesterov momentum.")
    ] = Optimizer(R.optimizer),
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
        typer.Option(
            "--cache",
            help="Decode and resize each training image once: keep them in RAM, or on disk "
            "($DETECT_CACHE_DIR or ~/.cache/detect, reused by later runs).",
        ),
    ] = D.cache,
    fraction: Annotated[
        float,
        typer.Option("--fraction", metavar="F", help="Train on this fraction of the images."),
    ] = R.fraction,
    single_cls: Annotated[
        bool, typer.Option("--single-cls", help="Train every class as one, 'object'.")
    ] = R.single_cls,
    close_mosaic: Annotated[
        int, typer.Option("--close-mosaic", help="No mosaic in the last N epochs.")
    ] = D.close_mosaic_epochs,
    freeze: Annotated[
        str | None,
        typer.Option(
            "--freeze",
            help="Freeze the backbone's first N stages, or all of it: no updates, fixed "
            "BatchNorm statistics (default: the model's own when starting from trained weights).",
        ),
    ] = D.freeze,
    pretrained: Annotated[
        bool,
        typer.Option(
            "--pretrained/--no-pretrained",
            help="An ImageNet-backbone model (efficientnet-lite*) starts from ImageNet weights.",
        ),
    ] = D.pretrained,
    save_period: Annotated[
        int,
        typer.Option("--save-period", help="Also keep weights/epochN.safetensors every N epochs."),
    ] = R.save_period,
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
        Path | None,
        typer.Option(
            "--resume", help="Continue the run in this run folder, with its own settings."
        ),
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
    if resume is not None:
        ignored_by_resume(ctx)
    from detect.engine import train

    run = dict(
        data=data or "", epochs=epochs, time=time, lr=lr, optimizer=optimizer.value,
        patience=patience, val_every=val_every, seed=seed, strict=strict, device=device,
        weights=weights, train_split=train_split, val_split=val_split, out=out, name=name,
        resume=str(resume) if resume else None, command=shlex.join(["detect", *sys.argv[1:]]),
        fraction=fraction, single_cls=single_cls, save_period=save_period,
    )  # fmt: skip
    if model == Model.window:
        given = [o for o, v in (("--anchors", anchors), ("--cache", cache),
                                ("--multi-scale", multi_scale), ("--freeze", freeze),
                                ("--close-mosaic", close_mosaic)) if v]  # fmt: skip
        if given:
            raise DetectError(f"{', '.join(given)}: detector options, not for --model window")
        task = dict(batch=batch, **({"imgsz": imgsz} if imgsz is not None else {}))
    else:
        task = dict(
            batch=batch, workers=workers, imgsz=imgsz or D.imgsz, multi_scale=multi_scale,
            cache=cache.value if cache else None, anchors=anchors, assigner=assigner.value,
            close_mosaic_epochs=close_mosaic, freeze=freeze, pretrained=pretrained,
        )  # fmt: skip
    cfg = TrainConfig.create(model.value if model else None, **run, **task)
    show = os.environ.get("RANK", "0") == "0"  # under torchrun only rank 0 talks
    with _Progress(show, verbose) as progress:
        result = train(cfg, progress.callback)
    if not show:
        return
    if result.stopped == "interrupted":
        console.print(
            f"interrupted: state saved; continue with --resume {result.run_dir}",
            highlight=False,
            soft_wrap=True,
        )
        raise typer.Exit(130)
    if result.best_eval is not None:
        console.print(class_table(result.best_eval, result.best_epoch), highlight=False)
    if result.best_epoch > 0:
        console.print(
            f"best: epoch {result.best_epoch}, val mAP50 {result.map50:.4f}, "
            f"mAP50-95 {result.map:.4f}",
            highlight=False,
        )
    console.print(
        f"{plural(result.epochs, 'epoch')} in {result.seconds / 60:.1f} min "
        f"(stopped: {result.stopped})",
        highlight=False,
    )
    console.print(f"weights: {result.best}", highlight=False, soft_wrap=True)
    for line in closing_hints(result, anchors == "auto"):
        console.print(line, highlight=False, soft_wrap=True)


def closing_hints(result, auto_anchors: bool) -> list[str]:
    """What a first run needs next: the anchors --anchors auto chose (pixels at the training
    size, per level, from args.json), and the confidence of the best F1 on the val split (the
    mean over classes, detect.metrics.operating) as the `--conf` to predict with: after a short
    training the default 0.25 may keep nothing."""
    import json

    lines = []
    args = result.run_dir / "args.json"
    if auto_anchors and args.is_file():
        d = json.loads(args.read_text())
        model, info = d.get("model") or {}, d.get("anchors") or {}
        size = int(model.get("imgsz") or 0)
        levels = [" ".join(f"{w * size:.0f}x{h * size:.0f}" for w, h in level)
                  for level in model.get("anchors") or []]  # fmt: skip
        if levels:
            fit = f", avg IoU {info['avg_iou']:.3f}" if "avg_iou" in info else ""
            lines.append(f"anchors (auto, k-means on the train boxes{fit}), px at {size} by "
                         f"level: {' | '.join(levels)}")  # fmt: skip
    op = getattr(result.best_eval, "operating", None)
    conf = None if op is None else op.all.get("conf")
    if conf is not None and conf == conf:
        lines.append(
            f"best F1 {op.all['f1']:.3f} at conf {conf:.3f} on val (P {op.all['precision']:.3f}, "
            f"R {op.all['recall']:.3f}): detect predict SOURCE --weights {result.best} "
            f"--conf {conf:.3f}"
        )
    return lines


# What --resume still takes from the command line: where and how verbosely it runs.
RESUME_TAKES = {"resume", "device", "workers", "verbose"}


def ignored_by_resume(ctx: typer.Context) -> list[str]:
    """Warn (stderr) about the options given with --resume that it ignores: a resumed run
    continues with the settings in its args.json. Returns their spellings."""
    ignored = []
    for p in ctx.command.params:
        if p.name in RESUME_TAKES:
            continue
        source = ctx.get_parameter_source(p.name)
        if getattr(source, "name", None) == "COMMANDLINE":
            ignored.append(p.opts[0] if p.opts[0].startswith("-") else p.name.upper())
    if ignored:
        err_console.print(
            f"[yellow]warning:[/] --resume continues with the run's own settings; ignored: "
            f"{', '.join(ignored)}",
            highlight=False,
            soft_wrap=True,
        )
    return ignored


def class_table(res, epoch: int) -> str:
    """Per class on the val split, of the best weights (as ultralytics closes a run): boxes,
    detections, P and R at the best-F1 confidence, mAP50, mAP50-95; 'all' first."""
    from detect.cli.text import num, table

    op = res.operating
    ap, ap50 = res.coco.per_class_ap()
    a = op.all if op is not None else {}

    def pr(p, r) -> list[str]:  # nothing found: no precision to speak of (as the epoch line)
        return [num(0.0 if r == 0 else p, 3), num(r, 3)]

    boxes, found = str(int(res.gt_count.sum())), str(int(res.pred_count.sum()))
    rows = [["all", boxes, found, *pr(a.get("precision"), a.get("recall")), num(res.map50, 3),
             num(res.map, 3)]]  # fmt: skip
    for k, name in enumerate(res.names):
        p, r = (op.precision[k], op.recall[k]) if op is not None else (None, None)
        rows.append([name, str(int(res.gt_count[k])), str(int(res.pred_count[k])), *pr(p, r),
                     num(ap50[k], 3), num(ap[k], 3)])  # fmt: skip
    title = f"val split, best weights (epoch {epoch}), {plural(res.images, 'image')}:"
    return table(["class", "boxes", "detections", "P", "R", "mAP50", "mAP50-95"], rows, title)


EPOCH_HEADER = (
    f"{'epoch':>5} {'box':>7} {'obj':>7} {'cls':>7} {'P':>6} {'R':>6} {'mAP50':>6} "
    f"{'mAP50-95':>8} {'time':>6}"
)


def epoch_line(r: dict, best: bool) -> str:
    """One epoch as a row under EPOCH_HEADER: mean losses, then val precision, recall, mAP50
    and mAP50-95 ('-' when not validated), seconds, and * when these became the best weights."""

    def val(key: str, width: int) -> str:
        v = r.get(key, "")
        return f"{v:>{width}.3f}" if v != "" else f"{'-':>{width}}"

    star = " *" if best and r.get("val_map", "") != "" else ""
    return (
        f"{r['epoch']:>5} {r['box_loss']:>7.4f} {r['obj_loss']:>7.4f} {r['cls_loss']:>7.4f} "
        f"{val('val_precision', 6)} {val('val_recall', 6)} {val('val_map50', 6)} "
        f"{val('val_map', 8)} {r['seconds']:>5.0f}s{star}"
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
            TimeRemainingColumn,
        )

        self.show, self.verbose = show, verbose
        self.bar = Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[info]}"), TimeElapsedColumn(), TextColumn("eta"),
            TimeRemainingColumn(),
            console=console, transient=True,
        )  # fmt: skip
        self.task = None
        self.header_shown = False

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
                budget = f"{event.time} min" if event.time else plural(event.epochs or 100, "epoch")
                resumed = (
                    ""
                    if event.resumed_epoch is None
                    else f", resumed at epoch {event.resumed_epoch + 1}"
                )
                console.print(
                    f"training on {plural(event.train_images, 'image')} (val {event.val_images}), "
                    f"{budget}, {where}{resumed} -> {event.run_dir}",
                    highlight=False,
                    soft_wrap=True,  # a path split over two lines cannot be copied
                )
            case E.DataRead():
                for split, report in (("train", event.train_report), ("val", event.val_report)):
                    print_report(report, verbose=self.verbose, split=split,
                                 saved="data-report.txt in the run")  # fmt: skip
            case E.Transferred():
                frozen = f"; frozen: {', '.join(event.frozen)}" if event.frozen else ""
                console.print(event.line + frozen, highlight=False, soft_wrap=True)
            case E.Cached(report=r):
                where = "in RAM" if r.folder is None else f"in {r.folder}"
                reused = f", {r.reused} from an earlier run" if r.reused else ""
                console.print(
                    f"cached {plural(r.images, 'image')} {where} "
                    f"({r.bytes / 2**20:.0f} MiB{reused})",
                    highlight=False,
                    soft_wrap=True,
                )
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
                if not self.header_shown:
                    console.print(EPOCH_HEADER, style="bold", highlight=False)
                    self.header_shown = True
                console.print(epoch_line(event.row, event.best), highlight=False)
