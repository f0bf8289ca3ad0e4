"""`detect evaluate`: score predictions (COCO, VOC07, VOC, operating points, TIDE) against ground
truth, and compare several prediction sets side by side.

Prints plain text (detect.cli.text) and imports no rich, torch or plotting unless asked: the whole
process is what users wait for on COCO-sized files (bench/coco_eval.py)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from detect.cli.common import Device, Images, Iou, MaxDet, Seed, Split, Strict, Verbose
from detect.cli.text import num, plural, signed, table
from detect.settings import VAL_CONF, VAL_IOU, VAL_MAX_DET

EXAMPLES = [
    "detect evaluate instances_val.json --pred preds.json",
    "detect evaluate data.yaml --weights best.safetensors --json scores.json",
    "detect evaluate data.yaml --pred a.json --pred b.json --bootstrap 1000",
]  # the end of --help


def command(
    data: Annotated[
        str, typer.Argument(help="Ground truth: COCO instances JSON, data set YAML or VOC folder.")
    ],
    pred: Annotated[
        list[str] | None,
        typer.Option(
            "--pred",
            help="COCO results JSON, or a folder of YOLO txt files with confidence. Repeat to "
            "compare several (the first is the baseline).",
        ),
    ] = None,
    json_out: Annotated[
        str | None, typer.Option("--json", help="Write the scores as JSON to FILE ('-': stdout).")
    ] = None,
    plots: Annotated[
        str | None,
        typer.Option(
            "--plots", help="Folder for PR curves, confusion matrix and (--tide) TIDE bar charts."
        ),
    ] = None,
    tide: Annotated[
        bool,
        typer.Option("--tide", help="TIDE error breakdown (Bolya et al. 2020): dAP50 per error."),
    ] = False,
    at_precision: Annotated[
        float | None,
        typer.Option("--at-precision", help="Also give the recall (and conf) at this precision."),
    ] = None,
    bootstrap: Annotated[
        int,
        typer.Option(
            "--bootstrap",
            help="With several runs: N paired bootstrap draws over images, for 95% confidence "
            "intervals of the mAP differences (seeded by --seed).",
        ),
    ] = 0,
    seed: Seed = 0,
    split: Split = "val",
    images: Images = None,
    weights: Annotated[
        list[str] | None,
        typer.Option(
            "--weights", help="Predict DATA's split with these weights, then score (repeatable)."
        ),
    ] = None,
    conf: Annotated[
        float, typer.Option("--conf", help="Confidence threshold (--weights).")
    ] = VAL_CONF,
    iou: Iou = VAL_IOU,
    max_det: MaxDet = VAL_MAX_DET,
    imgsz: Annotated[
        int | None, typer.Option("--imgsz", help="Input size (--weights; default: the model's).")
    ] = None,
    device: Device = "auto",
    batch: Annotated[
        int | None,
        typer.Option(
            "--batch",
            help="Images per batch (--weights; default: the batch the weights were validated "
            "at in training, else 16: a batch shares one letterbox shape).",
        ),
    ] = None,
    strict: Strict = False,
    verbose: Verbose = False,
) -> None:
    """Score predictions against ground truth: the 12 COCO numbers (as pycocotools), VOC07
    11-point mAP@0.5, VOC all-point mAP@0.5, the best-F1 confidence (P, R, F1) per class and
    overall, and with --tide TIDE's error breakdown. Give --pred PRED, or --weights W to predict
    DATA's split first; several --pred (or --weights) print one side-by-side comparison.
    --weights uses training's validation settings (conf, NMS IoU, batch): the same weights on
    the same split score what the training table showed."""
    from detect.data.types import ReadReport
    from detect.errors import DetectError
    from detect.metrics.compare import compare_runs

    if pred and weights:
        raise DetectError("give either --pred or --weights, not both")
    if at_precision is not None and not 0 <= at_precision <= 1:
        raise DetectError(f"--at-precision {at_precision}: must be in [0, 1]")
    if bootstrap < 0:
        raise DetectError(f"--bootstrap {bootstrap}: must be >= 0")
    _check_outputs(json_out, plots)
    report = ReadReport()
    if pred:
        gt, dets = _read_predictions(data, pred, split, images, report)
    else:
        gt, dets = _predict(data, weights, split, images, conf, iou, max_det, imgsz, device, batch,
                            report)  # fmt: skip
    if report.entries:  # (rich loads only when there is something to say)
        from detect.cli.common import print_report

        print_report(report, strict, verbose)
    for name, d in dets.items():
        if len(d) == 0:
            sys.stderr.write(f"warning: {name}: no detections to score: every mAP is 0\n")
    bar = _progress("bootstrap") if bootstrap else None
    cmp = compare_runs(gt, dets, tide=tide, at_precision=at_precision, bootstrap=bootstrap,
                       seed=seed, callback=bar)  # fmt: skip
    out = sys.stderr if json_out == "-" else sys.stdout  # keep stdout clean for the JSON
    out.write(_report(cmp) + "\n")
    if json_out is not None:
        _write_json(json_out, cmp.to_json() if len(dets) > 1 else cmp.results[0].to_json(), out)
    if plots is not None:
        from detect.metrics.plots import save_comparison_plots

        written = save_comparison_plots(cmp, plots)
        out.write(f"{len(written)} plots written to {plots}\n")


def _check_outputs(json_out: str | None, plots: str | None) -> None:
    """A read-only, unwritable or full destination for --json or --plots: one error line now,
    before the scoring (or the predictions of --weights) takes its time."""
    from detect.files import check_writable, check_writable_file

    if json_out not in (None, "-"):
        check_writable_file(json_out)
    if plots is not None:
        check_writable(plots, inside=True)


def _names(paths: list[str]) -> list[str]:
    """Short run names for the tables: the file stems (`best`), a repeated stem led by the
    nearest folder that tells the files apart (`train/best`, `train-2/best` for
    runs/train*/weights/best.safetensors), a path given twice numbered (`best#2`)."""
    stems = [Path(p).stem or p for p in paths]
    names = list(stems)
    for stem in set(stems):
        same = [i for i, s in enumerate(stems) if s == stem]
        if len(same) < 2:
            continue
        parents = [Path(paths[i]).resolve().parent.parts[::-1] for i in same]
        depth = min(len(q) for q in parents)
        k = next((k for k in range(depth) if len({q[k] for q in parents}) > 1), None)
        for i, q in zip(same, parents, strict=True):
            names[i] = f"{q[k]}/{stem}" if k is not None else stem
    seen: dict[str, int] = {}
    for i, n in enumerate(names):
        seen[n] = seen.get(n, 0) + 1
        if seen[n] > 1:
            names[i] = f"{n}#{seen[n]}"
    return names


def _read_predictions(data, pred, split, images, report):
    from detect.metrics.predictions import load_ground_truth, read_predictions

    gt = load_ground_truth(data, split=split, images=images, report=report)
    runs = zip(_names(pred), pred, strict=True)
    return gt, {n: read_predictions(p, gt, report) for n, p in runs}


def _predict(data, weights, split, images, conf, iou, max_det, imgsz, device, batch, report):
    from detect.api import validation_batch
    from detect.cli.common import default_weights
    from detect.data import load_dataset
    from detect.device import select_device
    from detect.inference.dataset import predict_records

    gt = load_dataset(data, split=split, images=images, report=report)
    weights = weights or [default_weights()]
    dets = {}
    for name, w in zip(_names(weights), weights, strict=True):
        dets[name] = predict_records(
            gt, w, imgsz=imgsz, conf=conf, iou=iou, max_det=max_det,
            device=select_device(device), batch=batch or validation_batch(w),
            callback=_progress(f"predicting {name}"),
        )  # fmt: skip
    return gt, dets


def _progress(what: str):
    """A callback(done, total) drawing a progress bar on stderr (rich, imported on first call)."""
    state = {}

    def update(done: int, total: int) -> None:
        if "bar" not in state:
            from rich.progress import Progress

            from detect.cli.common import err_console

            state["bar"] = Progress(console=err_console, transient=True)
            state["bar"].start()
            state["task"] = state["bar"].add_task(what, total=total)
        state["bar"].update(state["task"], completed=done, total=total)
        if done >= total:
            state.pop("bar").stop()

    return update


def _write_json(path: str, obj: dict, out) -> None:
    import json

    if path == "-":
        print(json.dumps(obj))
    else:
        from detect.files import atomic_write_json

        atomic_write_json(path, obj)
        out.write(f"scores written to {path}\n")


def _diff(v, base) -> str:
    """v - base, '-' where either is undefined (None, NaN or pycocotools' -1)."""
    if num(v) == "-" or num(base) == "-":
        return "-"
    return signed(v - base)


def _report(cmp) -> str:
    if len(cmp.results) == 1:
        return _single(cmp.results[0])
    return _comparison(cmp)


def _single(r) -> str:
    """The 12 COCO numbers, VOC07 / VOC mAP, the per-class table, the operating point, TIDE."""
    from detect.metrics.coco import STAT_NAMES

    s = r.coco_stats
    lines = [
        "COCO  " + "  ".join(f"{n} {v:.4f}" for n, v in zip(STAT_NAMES[:6], s[:6], strict=True)),
        "      " + "  ".join(f"{n} {v:.4f}" for n, v in zip(STAT_NAMES[6:], s[6:], strict=True)),
        f"VOC07 mAP@0.5 (11-point) {r.voc.map07:.4f}   VOC mAP@0.5 (all-point) {r.voc.map:.4f}",
    ]
    op = r.operating
    at = op.at_precision is not None
    header = ["id", "class", "AP", "AP50", "VOC07", "VOC", "gt", "pred", "conf", "P", "R", "F1"]
    if at:
        header += [f"R@P{op.at_precision:g}", "conf@P"]
    ap, ap50 = r.coco.per_class_ap()
    rows = []
    for k, name in enumerate(r.names):
        row = [str(r.category_ids[k]), name, num(ap[k]), num(ap50[k]), num(r.voc.ap07[k]),
               num(r.voc.ap[k]), str(r.gt_count[k]), str(r.pred_count[k]), num(op.conf[k], 3),
               num(op.precision[k], 3), num(op.recall[k], 3), num(op.f1[k], 3)]  # fmt: skip
        if at:
            row += [num(op.recall_at[k], 3), num(op.conf_at[k], 3)]
        rows.append(row)
    lines.append(table(header, rows))
    missed = [n for k, n in enumerate(r.names) if r.gt_count[k] and op.conf[k] != op.conf[k]]
    if missed:  # best-F1 conf NaN: nothing kept scores an F1
        lines.append(
            f"found nothing in {plural(len(missed), 'class')} with ground truth: "
            f"{', '.join(missed)} (P, R, F1 0, in the mean over classes too)"
        )
    a = op.all
    lines.append(
        f"best F1 over all classes at conf {num(a['conf'], 3)}: P {num(a['precision'], 3)}  "
        f"R {num(a['recall'], 3)}  F1 {num(a['f1'], 3)}  (mean over classes; "
        f"detect predict --conf {num(a['conf'], 3)})"
    )
    if at:
        b = op.all_at
        lines.append(
            f"mean precision >= {op.at_precision:g} down to conf {num(b['conf'], 3)}: "
            f"P {num(b['precision'], 3)}  R {num(b['recall'], 3)}"
        )
    if r.tide is not None:
        lines.append(_tide_table([r.tide], ["value"]))
    lines.append(f"{plural(r.images, 'image')}, {r.seconds:.2f} s")
    return "\n".join(lines)


def _tide_table(tides, names) -> str:
    """TIDE's AP and dAP per error: one run with its counts, several with differences."""
    from detect.metrics.tide import ERROR_NAMES, MAIN_ERRORS, SPECIAL_ERRORS

    one = len(tides) == 1
    header = ["TIDE", *names, *(["count"] if one else [f"Δ {n}" for n in names[1:]])]

    def row(label, vals, count=""):
        rest = [count] if one else [_diff(v, vals[0]) for v in vals[1:]]
        return [label, *[num(v) for v in vals], *rest]

    rows = [row("AP50 (TIDE)", [t.ap for t in tides])]
    for e in (*MAIN_ERRORS, *SPECIAL_ERRORS):
        rows.append(row(f"dAP {ERROR_NAMES[e]}", [t.dap[e] for t in tides],
                        str(tides[0].counts[e])))  # fmt: skip
    title = "TIDE errors (IoU 0.5 foreground, 0.1 background): AP50 gained by fixing each"
    return table(header, rows, title=title)


def _comparison(cmp) -> str:
    """Side by side: summary metrics, per-class AP, TIDE, with differences to the first run."""
    names, rs = cmp.names, cmp.results
    delta = [f"Δ {n}" for n in names[1:]]
    header = ["metric", *names, *delta]

    def row(label, vals):
        return [label, *[num(v) for v in vals], *[_diff(v, vals[0]) for v in vals[1:]]]

    rows = [
        row("mAP50-95", [r.coco_stats[0] for r in rs]),
        row("mAP50", [r.coco_stats[1] for r in rs]),
        row("mAP75", [r.coco_stats[2] for r in rs]),
        row("AR100", [r.coco_stats[8] for r in rs]),
        row("VOC07 mAP", [r.voc.map07 for r in rs]),
        row("VOC mAP", [r.voc.map for r in rs]),
        row("best-F1 conf", [r.operating.all["conf"] for r in rs]),
        row("P at best F1", [r.operating.all["precision"] for r in rs]),
        row("R at best F1", [r.operating.all["recall"] for r in rs]),
        row("best F1", [r.operating.all["f1"] for r in rs]),
    ]
    if rs[0].operating.at_precision is not None:
        p = rs[0].operating.at_precision
        rows.append(row(f"R at P>={p:g}", [r.operating.all_at["recall"] for r in rs]))
    lines = [table(header, rows, title=f"{plural(rs[0].images, 'image')}; Δ: minus {names[0]}")]
    cls_rows = []
    aps = [r.coco.per_class_ap()[0] for r in rs]
    for k, name in enumerate(rs[0].names):
        cls_rows.append(row(name, [a[k] for a in aps]))
    lines.append(table(["class AP50-95", *names, *delta], cls_rows))
    if all(r.tide is not None for r in rs):
        lines.append(_tide_table([r.tide for r in rs], names))
    if cmp.bootstrap is not None:
        b = cmp.bootstrap
        pct = f"{100 * b.confidence:g}%"
        lines.append(f"paired bootstrap over images: {b.n} draws, seed {b.seed}")
        for i, n in enumerate(names[1:], 1):
            for j, metric in enumerate(("mAP50-95", "mAP50")):
                lines.append(
                    f"  {n} - {names[0]} {metric}: {signed(b.diff[i, j])}  {pct} CI "
                    f"[{signed(b.low[i, j])}, {signed(b.high[i, j])}]  "
                    f"P(diff <= 0) {num(b.p_not_better[i, j], 3)}"
                )
    lines.append(f"{sum(r.seconds for r in rs):.2f} s scoring")
    return "\n".join(lines)
