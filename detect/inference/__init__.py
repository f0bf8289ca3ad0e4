"""Inference: images in, boxes in original pixels out, whatever the model.

One `Predictor` fronts three backends (`backends.py`: the YOLO detector; the window classifier
slid by cropping or convolutionally, `sliding.py`). On top of it:
- `predict_images` / `predict_records` (`dataset.py`): a set of images -> `Detections`, for
  training validation, `detect evaluate DATA --weights` and `detect bench` (`bench_methods`);
- `run_predict` (`run.py`): `detect predict`, from SOURCE arguments (`sources.py`) to the files
  `outputs.py` writes (annotated images and videos, label files, a COCO results list).

Reading runs one step ahead in a background thread (`stream.py`) and nothing is accumulated: a
folder or a video of any length streams through in constant memory. Never prints.

This package's namespace imports no torch (`run_predict` of an exported model, `torchfree.py`,
never loads it): the PyTorch side is imported from its modules, `detect.inference.predictor`
(`Predictor`), `detect.inference.dataset` (`predict_images`, `predict_records`,
`bench_methods`), `detect.inference.loading`.
"""

from detect.inference.run import PredictSummary, SourceStats, make_predictor, run_predict
from detect.inference.torchfree import ExportedPredictor
from detect.settings import Merge, Method, PredictConfig

__all__ = [
    "ExportedPredictor",
    "Merge",
    "Method",
    "PredictConfig",
    "PredictSummary",
    "SourceStats",
    "make_predictor",
    "run_predict",
]
