"""The ImageNet check of a converted backbone: classify one of scikit-image's sample photos.

Used by scripts/convert_efficientnet_lite.py when it writes a backbone file and by the tests
that hold the shipped files to ImageNet (Egyptian cat 285 / tabby 281 / tiger cat 282 for
`chelsea`, espresso 967 for `coffee`).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch

from detect.models.efficientnet import VARIANTS, EfficientNetLite
from detect.models.weights_file import read_tensors


def classify_photo(model: EfficientNetLite, photo: np.ndarray) -> tuple[int, float]:
    """(top-1 ImageNet class, its probability) of an RGB uint8 photo `[H, W, 3]` (e.g.
    scikit-image's `skimage.data.chelsea()`), resized to the variant's ImageNet side (bicubic)."""
    side = VARIANTS[model.variant][2]
    x = cv2.resize(photo, (side, side), interpolation=cv2.INTER_CUBIC)
    t = torch.from_numpy(x).permute(2, 0, 1)[None].float() / 255
    with torch.no_grad():
        p = model.eval().classify(t).softmax(1)[0]
    return int(p.argmax()), float(p.max())


def load_classifier(path: str | Path, variant: str) -> EfficientNetLite:
    """The ImageNet classifier stored in a backbone file (its `backbone.*` tensors)."""
    tensors, _ = read_tensors(path)  # the one reader of weights files (checks its metadata)
    model = EfficientNetLite(variant, classifier=True)
    prefix = "backbone."
    model.load_state_dict({k[len(prefix) :]: v for k, v in tensors.items()}, strict=True)
    return model.eval()
