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
#   (d) m3-long.toml:  (a)'s last stage, M3, for 3000 iterations instead of 1000;
#   (e) m3-long-remedies.toml: (c)'s last stage for 3000 iterations (EMA, then QC);
# (b) and (c) start from (a)'s fp32 model, (d) from (a)'s M2, (e) from (c)'s M2. It prints one table of mAP@0.5 on the valid
# images. About 30 minutes on 2 idle cores. Set TERNC to use a ternc binary already built.
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
"$TERNC" train --stages examples/staged/m3-long.toml --data "$DATA" --weights "$OUT/staged/M2/best.weights" \
    --out "$OUT/m3-long" --seed "$SEED" --resume
"$TERNC" train --stages examples/staged/m3-long-remedies.toml --data "$DATA" \
    --weights "$OUT/remedies/M2/best.weights" --out "$OUT/m3-long-remedies" --seed "$SEED" --resume
python3 examples/staged/table.py "$OUT" | tee "$OUT/table.md"
