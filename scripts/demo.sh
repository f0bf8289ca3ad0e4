#!/usr/bin/env bash
# `make demo`: detect real objects in the sample photographs scikit-image ships (a cat, a person,
# a motorbike ...) with the shipped PASCAL VOC model, then shapes in a synthetic clip with the
# shapes model; print what was found and where the annotated files are.
#
# usage: bash scripts/demo.sh <detect-binary> <outdir>
set -euo pipefail

DETECT=${1:?usage: bash scripts/demo.sh <detect-binary> <outdir>}
OUT=${2:?usage: bash scripts/demo.sh <detect-binary> <outdir>}
PY="$(dirname "$DETECT")/python"

# DEMO_WEIGHTS / DEMO_SHAPES_WEIGHTS override the shipped models.
# Without DEMO_WEIGHTS the photos go through `detect predict` with no --weights, as a user runs
# it (on a CPU: the shipped model's ONNX export).
WEIGHTS=${DEMO_WEIGHTS:-$("$PY" -c "from detect.resources import default_predict_weights as w; print(w())")}
WEIGHTS_OPT=()
if [ -n "${DEMO_WEIGHTS:-}" ]; then WEIGHTS_OPT=(--weights "$WEIGHTS"); fi
SHAPES=${DEMO_SHAPES_WEIGHTS:-$("$PY" -c "from detect.resources import shapes_weights; print(shapes_weights())")}
for w in "$WEIGHTS" "$SHAPES"; do
    if [ ! -f "$w" ]; then
        echo "demo: the shipped weights are missing: $w (see weights/README.md)" >&2
        exit 1
    fi
done

# 1. Real photos: scikit-image's bundled samples (installed with the dev tools; no download).
PHOTOS="$OUT/photos"
mkdir -p "$PHOTOS"
"$PY" - "$PHOTOS" <<'PYEOF'
import os, shutil, sys
import skimage
src = os.path.join(os.path.dirname(skimage.__file__), "data")
for name in ["astronaut.png", "chelsea.png", "motorcycle_left.png", "coffee.png", "camera.png"]:
    shutil.copy(os.path.join(src, name), os.path.join(sys.argv[1], name))
PYEOF
echo
echo "== detect predict $PHOTOS   (real photos, $(basename "$WEIGHTS"))"
"$DETECT" predict "$PHOTOS" "${WEIGHTS_OPT[@]}" --out "$OUT/photos-predict" \
    --save-json "$OUT/photos.json"
"$PY" - "$OUT/photos.json" "$WEIGHTS" <<'PYEOF'
import json, sys
from collections import defaultdict
from detect.runtime import is_exported, load_exported
rows = json.load(open(sys.argv[1]))
if is_exported(sys.argv[2]):  # the ONNX default on a CPU
    names = list(load_exported(sys.argv[2]).names)
else:
    from detect.models import read_metadata
    names = list(read_metadata(sys.argv[2])["names"])
found = defaultdict(list)
for r in rows:
    c = names[r["category_id"]] if r["category_id"] < len(names) else str(r["category_id"])
    found[r["file_name"]].append(f"{c} {r['score']:.2f}")
print("\nFound in the photos:")
for f in sorted(found):
    print(f"  {f:<22} {', '.join(found[f])}")
PYEOF

# 2. Shapes: 8 unseen synthetic images and a 60-frame clip, with the shapes model.
DATA="$OUT/synth"
if [ ! -f "$DATA/data.yaml" ]; then
    rm -rf "$DATA"
    "$DETECT" synth "$DATA" --train 1 --val 8 --seed 2026 --video --frames 60
fi
echo
echo "== detect predict $DATA/images/val $DATA/video.mp4   (shapes, $(basename "$SHAPES"))"
set +e
"$DETECT" predict "$DATA/images/val" "$DATA/video.mp4" --weights "$SHAPES" \
    --out "$OUT/predict" --save-txt --save-json "$OUT/predictions.json"
rc=$?
set -e
if [ $rc -ne 0 ]; then
    echo "demo: detect predict failed (exit code $rc)" >&2
    exit $rc
fi
RUN=$(ls -td "$OUT"/predict* | head -n 1)
PRUN=$(ls -td "$OUT"/photos-predict* | head -n 1)
echo
echo "Annotated photos:           $PRUN/"
echo "Annotated images and video: $RUN/   (open $RUN/video.mp4)"
echo "YOLO label files:           $RUN/labels/"
echo "COCO results lists:         $OUT/photos.json, $OUT/predictions.json"
