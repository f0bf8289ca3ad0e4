#!/usr/bin/env bash
# `make demo`: draw a few synthetic images and a short clip, detect the shapes in them with the
# shipped weights, print the summary and where the annotated files are.
#
# usage: bash scripts/demo.sh <detect-binary> <outdir>
set -euo pipefail

DETECT=${1:?usage: bash scripts/demo.sh <detect-binary> <outdir>}
OUT=${2:?usage: bash scripts/demo.sh <detect-binary> <outdir>}
PY="$(dirname "$DETECT")/python"

# DEMO_WEIGHTS overrides the shipped model (e.g. a run's weights/best.safetensors).
WEIGHTS=${DEMO_WEIGHTS:-$("$PY" -c "from detect.resources import default_weights; print(default_weights())")}
if [ ! -f "$WEIGHTS" ]; then
    echo "demo: the shipped weights are missing: $WEIGHTS" >&2
    echo "demo: train them first (see weights/README.md), then run 'make demo' again" >&2
    exit 1
fi

DATA="$OUT/synth"
if [ ! -f "$DATA/data.yaml" ]; then
    # A fresh seed (not the training data's): 8 unseen images and a 60-frame clip.
    rm -rf "$DATA"
    "$DETECT" synth "$DATA" --train 1 --val 8 --seed 2026 --video --frames 60
fi

echo
echo "== detect predict $DATA/images/val $DATA/video.mp4"
set +e
"$DETECT" predict "$DATA/images/val" "$DATA/video.mp4" --weights "$WEIGHTS" \
    --out "$OUT/predict" --save-txt --save-json "$OUT/predictions.json"
rc=$?
set -e
if [ $rc -ne 0 ]; then
    echo "demo: detect predict failed (exit code $rc)" >&2
    exit $rc
fi
RUN=$(ls -td "$OUT"/predict* | head -n 1)
echo
echo "Annotated images and video: $RUN/   (open $RUN/video.mp4)"
echo "YOLO label files:           $RUN/labels/"
echo "COCO results list:          $OUT/predictions.json"
