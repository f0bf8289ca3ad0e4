"""Inference: images in, boxes in original pixels out, whatever the model.

One `Predictor` fronts three backends (`backends.py`: the YOLO detector; the window classifier
slid by cropping or convolutionally, `sliding.py`). On top of it:
- `predict_images` / `predict_records` (`dataset.py`): a set of images -> `Detections`, for
  training validation, `detect evaluate DATA --weights` and `detect bench` (`bench_methods`);
- `run_predict` (`run.py`): `detect predict`, from SOURCE arguments (`sources.py`) to the files
  `outputs.py` writes (annotated images and videos, label files, a COCO results list).

Reading runs one step ahead in a background thread (`stream.py`) and nothing is accumulated: a
folder or a video of any length streams through in constant memory. Never prints.
"""

from detect.inference.dataset import (
    BenchRow,
    ImagesResult,
    bench_methods,
    predict_images,
    predict_records,
)
from detect.inference.loading import check_class_names, load_model, model_imgsz, model_names
from detect.inference.predictor import Predictor
from detect.inference.run import PredictSummary, SourceStats, run_predict
from detect.settings import Method, PredictConfig

__all__ = [
    "BenchRow",
    "ImagesResult",
    "Method",
    "PredictConfig",
    "PredictSummary",
    "Predictor",
    "SourceStats",
    "bench_methods",
    "check_class_names",
    "load_model",
    "model_imgsz",
    "model_names",
    "predict_images",
    "predict_records",
    "run_predict",
]
