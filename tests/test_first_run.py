"""First-run help (issue 26): what the end of `detect train` says to do next."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

from detect.cli.train import closing_hints


def test_training_ends_with_the_conf_to_predict_with_and_the_auto_anchors(tmp_path):
    anchors = [[[0.025, 0.05]], [[0.1, 0.2]], [[0.4, 0.3]]]  # fractions of the input, per level
    (tmp_path / "args.json").write_text(
        json.dumps(
            {
                "model": {"imgsz": 320, "anchors": anchors},
                "anchors": {"source": "auto", "avg_iou": 0.61234},
            }
        )  # fmt: skip
    )
    point = {"conf": 0.1234, "f1": 0.5, "precision": 0.6, "recall": 0.4286}
    best = Path("runs/train/weights/best.safetensors")
    ev = SimpleNamespace(operating=SimpleNamespace(all=point))
    result = SimpleNamespace(run_dir=tmp_path, best=best, best_eval=ev)
    lines = closing_hints(result, auto_anchors=True)
    assert lines[0] == (
        "anchors (auto, k-means on the train boxes, avg IoU 0.612), px at 320 by level: "
        "8x16 | 32x64 | 128x96"
    )
    assert lines[1].endswith("--weights runs/train/weights/best.safetensors --conf 0.123")
    assert "best F1 0.500 at conf 0.123 on val (P 0.600, R 0.429)" in lines[1]
    assert closing_hints(result, auto_anchors=False) == lines[1:]
    point["conf"] = float("nan")  # nothing found: no conf to suggest
    assert closing_hints(result, auto_anchors=False) == []
