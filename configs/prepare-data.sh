#!/usr/bin/env bash
# Build the manifests configs/radscribe-tiny.yaml trains on, from ../shared/data (or $RADSCRIBE_DATA).
# Validation splits are carved by image with a fixed seed: CADMA valid/ is the spine validation set;
# 15% of the NIH images and of the VQA-RAD images are held out here.
set -euo pipefail
src="${RADSCRIBE_DATA:-../shared/data}"
radscribe="${RADSCRIBE:-radscribe}"
"$radscribe" data import cadma "$src/spine-cadma" --out data/cadma/cadma.jsonl
"$radscribe" annotate spine data/cadma/cadma.jsonl --out data/cadma/spine.jsonl
"$radscribe" data import nih-cxr14 "$src/nih-cxr14-621" --out data/nih/nih.jsonl
"$radscribe" annotate chest data/nih/nih.jsonl --out data/nih/chest-all.jsonl
"$radscribe" data split data/nih/chest-all.jsonl --out data/nih/chest.jsonl --valid 0.15 --seed 0
"$radscribe" data import vqa-rad "$src/vqa-rad" --out data/vqa-rad/all.jsonl
"$radscribe" data split data/vqa-rad/all.jsonl --out data/vqa-rad/vqa.jsonl --valid 0.15 --seed 0
