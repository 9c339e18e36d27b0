#!/bin/bash
# Compiles every bundled cfg (models/darknet, models/darknet-twn), fully ternarized
# with random weights, into an object for each target (default: aarch64 and
# x86_64) at a small input size (64 px; 256 px for the P5 and 5-head models), and
# prints one line per cfg and target: ok or FAIL, and the time taken.
# Not part of `cargo test` (LLVM O3 over 37 models takes about 6 minutes here).
#
#   cargo build --release && tests/tools/compile_all.sh [TARGET...]
set -u
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
TERNC=${TERNC:-$ROOT/target/release/ternc}
TARGETS=${*:-aarch64 x86_64}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
fails=0
for f in "$ROOT"/models/darknet/*.cfg "$ROOT"/models/darknet-twn/*.cfg; do
  n=$(basename "$f" .cfg); d=$(basename "$(dirname "$f")")
  size=64; case $n in *p5*|*_5l*) size=256;; esac
  # [net] width/height set to the size, the rest of the cfg as is
  awk -v s="$size" '
    /^\[/ { if (sec == "net") { print "width=" s; print "height=" s } sec = tolower($0) ; sub(/^\[/, "", sec); sub(/\].*/, "", sec) }
    sec == "net" && /^[ \t]*(width|height)[ \t]*=/ { next }
    { print }' "$f" > "$WORK/$n.cfg"
  for t in $TARGETS; do
    start=$(date +%s.%N)
    if "$TERNC" compile "$WORK/$n.cfg" --layers all --target "$t" -o "$WORK/out" > "$WORK/log" 2>&1; then
      r=ok
    else
      r=FAIL; fails=$((fails + 1)); tail -1 "$WORK/log"
    fi
    printf '%-36s %-8s %-4s %5.1f s\n' "$d/$n" "$t" "$r" "$(echo "$(date +%s.%N) - $start" | bc)"
    rm -f "$WORK/out.o" "$WORK/out.h"
  done
done
echo "$fails failures"
[ "$fails" -eq 0 ]
