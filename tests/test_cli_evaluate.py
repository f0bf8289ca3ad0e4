"""`detect evaluate GT --pred PRED` end to end: JSON output, YOLO txt predictions, plots, errors,
and no torch import."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from test_metrics_coco import random_case, reference

CODE = """
import sys, runpy
sys.argv = ["detect"] + sys.argv[1:]
from detect.cli.main import run
try:
    run()
finally:
    print("TORCH" if "torch" in sys.modules else "NOTORCH", file=sys.stderr)
"""


def detect(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", CODE, *args], capture_output=True, text=True, timeout=120
    )


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    d = tmp_path_factory.mktemp("eval")
    gt, res = random_case(np.random.default_rng(3))
    while not res:
        gt, res = random_case(np.random.default_rng(4))
    (d / "gt.json").write_text(json.dumps(gt))
    (d / "pred.json").write_text(json.dumps(res))
    return d, gt, res


def test_json_to_stdout_equals_pycocotools_without_torch(case):
    d, gt, res = case
    r = detect("evaluate", str(d / "gt.json"), "--pred", str(d / "pred.json"), "--json", "-")
    assert r.returncode == 0, r.stderr
    assert r.stderr.strip().endswith("NOTORCH")
    out = json.loads(r.stdout)
    # the contract's keys, plus the operating points (no TIDE unless --tide)
    assert set(out) == {"coco", "voc07", "voc", "per_class", "images", "seconds",
                        "operating_points"}  # fmt: skip
    np.testing.assert_allclose(list(out["coco"].values()), reference(gt, res), atol=1e-12)
    assert out["images"] == len(gt["images"])
    assert [c["id"] for c in out["per_class"]] == [c["id"] for c in gt["categories"]]
    assert "AP50" in r.stderr  # the human summary went to stderr, stdout is pure JSON


def test_json_file_table_and_plots(case, tmp_path):
    d, gt, res = case
    pytest.importorskip("matplotlib")
    r = detect("evaluate", str(d / "gt.json"), "--pred", str(d / "pred.json"),
               "--json", str(tmp_path / "s.json"), "--plots", str(tmp_path / "plots"))  # fmt: skip
    assert r.returncode == 0, r.stderr
    out = json.loads((tmp_path / "s.json").read_text())
    assert "VOC07" in r.stdout and gt["categories"][0]["name"] in r.stdout
    pngs = sorted(p.name for p in (tmp_path / "plots").glob("*.png"))
    assert "pr_all.png" in pngs and "confusion_matrix.png" in pngs
    assert len(pngs) == len(gt["categories"]) + 2
    assert out["voc"]["mAP"] >= 0


def test_yolo_txt_folder_predictions(case, tmp_path):
    d, gt, res = case
    # the same predictions written as YOLO txt with confidence (normalised cx cy w h)
    cats = [c["id"] for c in gt["categories"]]
    size = {im["id"]: (im["width"], im["height"]) for im in gt["images"]}
    lines: dict = {}
    for p in res:
        W, H = size[p["image_id"]]
        x, y, w, h = p["bbox"]
        row = (cats.index(p["category_id"]), (x + w / 2) / W, (y + h / 2) / H, w / W, h / H)
        lines.setdefault(p["image_id"], []).append(
            " ".join([str(row[0])] + [f"{v:.17g}" for v in (*row[1:], p["score"])])
        )
    for img, ls in lines.items():
        (tmp_path / f"{img}.txt").write_text("\n".join(ls) + "\n")
    r = detect("evaluate", str(d / "gt.json"), "--pred", str(tmp_path), "--json", "-")
    assert r.returncode == 0, r.stderr
    np.testing.assert_allclose(
        list(json.loads(r.stdout)["coco"].values()), reference(gt, res), atol=1e-9
    )


@pytest.mark.parametrize(
    "content, message",
    [
        ('[{"image_id": 1, "category_id": ', "malformed JSON"),
        ('[{"image_id": 999999, "category_id": %(c)s, "bbox": [0, 0, 1, 1], "score": 1}]',
         "image"),
        ('[{"image_id": %(i)s, "category_id": 12345, "bbox": [0, 0, 1, 1], "score": 1}]',
         "category"),
        ('[{"image_id": %(i)s, "category_id": %(c)s, "bbox": [0, 0, -1, 1], "score": 1}]',
         "negative"),
        ('[{"image_id": %(i)s, "category_id": %(c)s, "bbox": [0, 0, 1, 1], "score": NaN}]',
         "pred.json"),
    ],
)  # fmt: skip
def test_bad_predictions_are_one_line_errors(case, tmp_path, content, message):
    d, gt, _ = case
    f = tmp_path / "pred.json"
    f.write_text(content % {"i": gt["images"][0]["id"], "c": gt["categories"][0]["id"]})
    r = detect("evaluate", str(d / "gt.json"), "--pred", str(f))
    assert r.returncode == 1
    err = r.stderr.strip().splitlines()
    assert len(err) == 2 and err[0].startswith("error: ") and message in err[0], r.stderr
    assert "pred.json" in err[0]


def test_empty_prediction_list_scores_zero(case, tmp_path):
    d, gt, _ = case
    (tmp_path / "pred.json").write_text("[]")
    r = detect("evaluate", str(d / "gt.json"), "--pred", str(tmp_path / "pred.json"),
               "--json", "-")  # fmt: skip
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert all(v in (0.0, -1.0) for v in out["coco"].values())
    assert out["coco"]["AP"] == 0.0 and out["voc"]["mAP"] == 0.0


def test_several_predictions_compare_without_torch(case, tmp_path):
    d, gt, res = case
    from test_metrics_tide import reference as tide_reference

    # a second run: every other score halved
    worse = [{**p, "score": p["score"] / 2 if i % 2 else p["score"]} for i, p in enumerate(res)]
    (tmp_path / "b.json").write_text(json.dumps(worse))
    r = detect("evaluate", str(d / "gt.json"), "--pred", str(d / "pred.json"), "--pred",
               str(tmp_path / "b.json"), "--tide", "--bootstrap", "30", "--at-precision", "0.5",
               "--json", "-", "--plots", str(tmp_path / "plots"))  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert r.stderr.strip().endswith("NOTORCH")
    out = json.loads(r.stdout)
    assert [run["name"] for run in out["runs"]] == ["pred", "b"]
    for run, preds in zip(out["runs"], (res, worse), strict=True):
        np.testing.assert_allclose(list(run["coco"].values()), reference(gt, preds), atol=1e-12)
        ap, dap, counts = tide_reference(gt, preds)
        assert run["tide"]["AP50"] == pytest.approx(ap, abs=1e-12)
        assert run["tide"]["dAP"] == pytest.approx(dap, abs=1e-12)
        assert run["operating_points"]["at_precision"] == 0.5
    (cmp,) = out["compare"]
    assert cmp["name"] == "b" and cmp["baseline"] == "pred"
    a, b = out["runs"][0]["coco"]["AP"], out["runs"][1]["coco"]["AP"]
    assert cmp["coco"]["AP"] == pytest.approx(b - a, abs=1e-12)
    bs = cmp["bootstrap"]["mAP50-95"]
    assert bs["ci"][0] <= bs["ci"][1] and cmp["bootstrap"]["n"] == 30
    assert "Δ b" in r.stderr and "paired bootstrap" in r.stderr and "FalsePos" in r.stderr
    assert (tmp_path / "plots" / "tide.png").is_file()
    assert (tmp_path / "plots" / "pred" / "pr_all.png").is_file()
    assert (tmp_path / "plots" / "b" / "pr_all.png").is_file()


def test_bad_new_options_are_one_line_errors(case):
    d, _, _ = case
    base = ["evaluate", str(d / "gt.json"), "--pred", str(d / "pred.json")]
    for extra, message in (
        (["--at-precision", "1.5"], "--at-precision"),
        (["--bootstrap", "-1"], "--bootstrap"),
        (["--weights", "w.safetensors"], "not both"),
    ):
        r = detect(*base, *extra)
        assert r.returncode == 1 and r.stderr.startswith("error: ") and message in r.stderr


@pytest.mark.slow
def test_weights_form_equals_pred_form(tmp_path):
    """`evaluate DATA --weights W` = predict_records on DATA's val split, then `--pred` on its
    COCO results JSON: the same scores."""
    pytest.importorskip("torch")
    from detect.data import load_dataset
    from detect.inference.dataset import predict_records
    from detect.models import build_model
    from detect.models.config import ModelConfig
    from detect.models.weights_file import save_weights
    from detect.synth import SynthConfig, make_synth

    make_synth(tmp_path / "d", SynthConfig(train=2, val=6, size=160))
    data = str(tmp_path / "d" / "data.yaml")
    rec = load_dataset(data, split="val")
    w = str(tmp_path / "w.safetensors")
    cfg = ModelConfig(arch="tiny", num_classes=6, names=rec.names, imgsz=160)
    save_weights(w, build_model(cfg))
    r = detect("evaluate", data, "--weights", w, "--device", "cpu", "--json", "-")
    assert r.returncode == 0, r.stderr
    dets = predict_records(rec, w, device="cpu")
    assert len(dets) > 0
    b = dets.boxes.astype(np.float64)
    res = [
        {"image_id": rec.images[i].id, "category_id": int(c), "score": float(s),
         "bbox": [b[j, 0], b[j, 1], b[j, 2] - b[j, 0], b[j, 3] - b[j, 1]]}
        for j, (i, c, s) in enumerate(zip(dets.image, dets.classes, dets.scores, strict=True))
    ]  # fmt: skip
    (tmp_path / "p.json").write_text(json.dumps(res))
    r2 = detect("evaluate", data, "--pred", str(tmp_path / "p.json"), "--json", "-")
    assert r2.returncode == 0, r2.stderr
    a, b2 = json.loads(r.stdout), json.loads(r2.stdout)
    assert a["coco"] == b2["coco"] and a["voc"] == b2["voc"] and a["per_class"] == b2["per_class"]


def test_a_class_that_found_nothing_is_flagged_and_counts_zero(tmp_path):
    """Issue 26: b has GT and no detection: P, R, F1 0 in its row and in the mean ("all"),
    and a line names it."""
    gt = {
        "images": [{"id": 1, "width": 100, "height": 100}],
        "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10], "area": 100,
             "iscrowd": 0},
            {"id": 2, "image_id": 1, "category_id": 2, "bbox": [0, 50, 10, 10], "area": 100,
             "iscrowd": 0},
        ],
    }  # fmt: skip
    res = [{"image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10], "score": 0.9}]
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    (tmp_path / "pred.json").write_text(json.dumps(res))
    r = detect("evaluate", str(tmp_path / "gt.json"), "--pred", str(tmp_path / "pred.json"))
    assert r.returncode == 0, r.stderr
    assert "found nothing in 1 class with ground truth: b (P, R, F1 0" in r.stdout
    assert "P 0.500  R 0.500  F1 0.500" in r.stdout  # the mean over a (1, 1, 1) and b (0, 0, 0)


def test_comparison_names_are_short():
    from detect.cli.evaluate import _names

    runs = ["runs/train/weights/best.safetensors", "runs/train-2/weights/best.safetensors"]
    assert _names([*runs, "x/last.safetensors"]) == ["train/best", "train-2/best", "last"]
    assert _names(["a.json", "b.json"]) == ["a", "b"]
    assert _names(["x/a.json", "x/a.json"]) == ["a", "a#2"]  # the same file twice
