#!/bin/sh
# The staged ternarization experiment (issue 9), one command from the repository root:
#
#   examples/staged/run.sh [OUT]        (default OUT: runs/staged-experiment)
#
# On a synthetic shapes set (2000 train, 500 valid images, 64x64) it trains the
# examples/synth model in float from scratch, then
#   (a) staged.toml:   M0 -> M1 -> M2 -> M3, each stage from the previous best.weights;
#   (b) unstaged.toml: all layers ternary at once, as many iterations as (a)'s M0..M3;
#   (c) remedies.toml: (a) with an EMA of the weights and QC after M3;
# (b) and (c) start from (a)'s fp32 model. It prints one table of mAP@0.5 on the valid
# images. About 15 minutes on 2 cores. Set TERNC to use a ternc binary already built.
set -eu
cd "$(dirname "$0")/../.."
OUT=${1:-runs/staged-experiment}
if [ -z "${TERNC:-}" ]; then
    cargo build --release --quiet
    TERNC=target/release/ternc
fi
SEED=${SEED:-1}
DATA=$OUT/data/synth.data
[ -f "$DATA" ] || "$TERNC" dataset synth --out "$OUT/data" --images 2500 --size 64 --seed 1 --valid-every 5
"$TERNC" train --stages examples/staged/staged.toml --data "$DATA" --out "$OUT/staged" --seed "$SEED" --resume
FP32="$OUT/staged/fp32/best.weights"
"$TERNC" train --stages examples/staged/unstaged.toml --data "$DATA" --weights "$FP32" \
    --out "$OUT/unstaged" --seed "$SEED" --resume
"$TERNC" train --stages examples/staged/remedies.toml --data "$DATA" --weights "$FP32" \
    --out "$OUT/remedies" --seed "$SEED" --resume
python3 examples/staged/table.py "$OUT" | tee "$OUT/table.md"
