"""`detect evaluate`: score predictions (COCO, VOC07, VOC) against ground truth."""

from __future__ import annotations

from typing import Annotated

import typer

from detect.cli.common import (
    Device,
    Images,
    Iou,
    MaxDet,
    Split,
    Strict,
    Verbose,
    console,
    err_console,
    print_report,
)


def command(
    data: Annotated[
        str, typer.Argument(help="Ground truth: COCO instances JSON, data set YAML or VOC folder.")
    ],
    pred: Annotated[
        str | None,
        typer.Option(
            "--pred", help="COCO results JSON, or a folder of YOLO txt files with confidence."
        ),
    ] = None,
    json_out: Annotated[
        str | None, typer.Option("--json", help="Write the scores as JSON to FILE ('-': stdout).")
    ] = None,
    plots: Annotated[
        str | None,
        typer.Option("--plots", help="Folder for PR curves (per class, all) and confusion matrix."),
    ] = None,
    split: Split = "val",
    images: Images = None,
    weights: Annotated[
        str | None,
        typer.Option("--weights", help="Predict DATA's split with these weights, then score."),
    ] = None,
    conf: Annotated[
        float, typer.Option("--conf", help="Confidence threshold (--weights).")
    ] = 0.001,
    iou: Iou = 0.45,
    max_det: MaxDet = 300,
    imgsz: Annotated[
        int | None, typer.Option("--imgsz", help="Input size (--weights; default: the model's).")
    ] = None,
    device: Device = "auto",
    batch: Annotated[int, typer.Option("--batch", help="Images per batch (--weights).")] = 16,
    strict: Strict = False,
    verbose: Verbose = False,
) -> None:
    """Score predictions against ground truth: the 12 COCO numbers (as pycocotools), VOC07
    11-point mAP@0.5, VOC all-point mAP@0.5 and a per-class table. Give --pred PRED, or
    --weights W to predict DATA's split first."""
    from detect.data.types import ReadReport
    from detect.errors import DetectError
    from detect.metrics import evaluate
    from detect.metrics.predictions import load_ground_truth, read_predictions

    if pred is not None and weights is not None:
        raise DetectError("give either --pred or --weights, not both")
    report = ReadReport()
    if pred is not None:
        gt = load_ground_truth(data, split=split, images=images, report=report)
        dets = read_predictions(pred, gt, report)
    else:
        from rich.progress import Progress

        from detect.cli.common import default_weights
        from detect.data import load_dataset
        from detect.device import select_device
        from detect.inference import predict_records

        gt = load_dataset(data, split=split, images=images, report=report)
        with Progress(console=err_console, transient=True) as bar:
            task = bar.add_task("predicting", total=len(gt.images))
            dets = predict_records(
                gt, weights or default_weights(), imgsz=imgsz, conf=conf, iou=iou,
                max_det=max_det, device=select_device(device), batch=batch,
                callback=lambda done, total: bar.update(task, completed=done, total=total),
            )  # fmt: skip
    print_report(report, strict, verbose)
    result = evaluate(gt, dets)
    out = err_console if json_out == "-" else console  # keep stdout clean for the JSON
    print_result(result, out)
    if json_out is not None:
        import json

        from detect.files import atomic_write_json

        if json_out == "-":
            print(json.dumps(result.to_json()))
        else:
            atomic_write_json(json_out, result.to_json())
            out.print(f"scores written to {json_out}")
    if plots is not None:
        from detect.metrics.plots import save_plots

        written = save_plots(result, plots, gt, dets)
        out.print(f"{len(written)} plots written to {plots}")


def print_result(result, out) -> None:
    """The 12 COCO numbers, VOC07 / VOC mAP, then the per-class table."""
    from rich.table import Table

    from detect.metrics.coco import STAT_NAMES

    s = result.coco_stats
    out.print(
        "COCO  " + "  ".join(f"{n} {v:.4f}" for n, v in zip(STAT_NAMES[:6], s[:6], strict=True))
    )
    out.print(
        "      " + "  ".join(f"{n} {v:.4f}" for n, v in zip(STAT_NAMES[6:], s[6:], strict=True))
    )
    out.print(f"VOC07 mAP@0.5 (11-point) {result.voc.map07:.4f}   "
              f"VOC mAP@0.5 (all-point) {result.voc.map:.4f}")  # fmt: skip
    table = Table("id", "class", "AP", "AP50", "VOC07", "VOC", "gt", "pred")
    ap, ap50 = result.coco.per_class_ap()

    def f(v: float) -> str:
        return "-" if v < 0 else f"{v:.4f}"

    for k, name in enumerate(result.names):
        table.add_row(
            str(result.category_ids[k]), name, f(ap[k]), f(ap50[k]), f(result.voc.ap07[k]),
            f(result.voc.ap[k]), str(result.gt_count[k]), str(result.pred_count[k]),
        )  # fmt: skip
    out.print(table)
    out.print(f"{result.images} images, {result.seconds:.2f} s")
