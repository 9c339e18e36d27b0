#!/usr/bin/env python3
"""Times ternc (JIT W2A32 on fully ternarized weights, and/or the reference
interpreter or the float JIT) against OpenCV's DNN module (fp32, CPU,
DNN_BACKEND_OPENCV / DNN_TARGET_CPU) on the same cfg and the same weights file,
in the same run, with the same number of threads.

For every model:
  1. a copy of the cfg with [net] width/height = --size is written to a temp dir,
  2. `ternc init --seed 1` writes random weights (timing does not depend on
     the values, but both engines read the same file),
  3. `ternc bench CFG --weights W --threads T --iters N --warmup K --json`
     (ternc's own timer around one whole forward pass; median over N),
  4. OpenCV: cv2.setNumThreads(T), readNetFromDarknet(CFG, W), K untimed
     forwards, then N timed net.forward(getUnconnectedOutLayersNames()) calls
     on a fixed random [1,3,size,size] input in [0,1); median over N.
     OpenCV runs with its defaults (layer fusion and, for 3x3 convolutions,
     Winograd on); --no-winograd turns Winograd off for comparison.

With --rounds R > 1, steps 3 and 4 alternate R times (ternc block, OpenCV
block, ternc block, ...), so that load from other processes on the machine
hits both alike; the reported median is then the median of the R per-round
medians (ternc bench reports only median/min/max per call), min/max over all.

Prints a table: model, BFLOPs (from `ternc inspect`), ternc median ms,
OpenCV median ms, ratio ternc/OpenCV (> 1: ternc is slower), plus min/max,
and the 1-minute load average before and after (timings are only meaningful
when it is below the thread count's worth of other work).

Engines: reference (the interpreter, float weights), jit-f32 (the JIT, float
weights), jit-w2a32 (the JIT, ternary weights, float activations), jit-w2a8
(the JIT, ternary weights, int8 activations: `--act i8`).

Usage (from the repository root, after `cargo build --release`):
    python3 tests/tools/bench_opencv.py
    python3 tests/tools/bench_opencv.py --models yolov3-tiny --iters 20 --threads 2
    python3 tests/tools/bench_opencv.py --json /tmp/bench.json

Requires python3 with numpy and cv2 (opencv-python) only.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

try:
    import cv2
except ImportError:  # pragma: no cover
    sys.exit("bench_opencv.py needs OpenCV's python bindings (pip install opencv-python)")

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))


def find_cfg(name: str) -> str:
    if os.path.isfile(name):
        return name
    base = name if name.endswith(".cfg") else name + ".cfg"
    for d in ("", "darknet", "darknet-twn"):
        p = os.path.join(ROOT, "models", d, base)
        if os.path.isfile(p):
            return p
    raise FileNotFoundError(f"no cfg for {name!r}")


def sized_cfg(src: str, dst: str, size: int):
    """Copy of src with width/height in [net] set to size."""
    out, section = [], None
    for line in open(src):
        s = line.strip()
        if s.startswith("["):
            if section == "net":
                out += [f"width={size}\n", f"height={size}\n"]
            section = s[1:s.index("]")].strip().lower()
        elif section == "net" and s.split("=", 1)[0].strip() in ("width", "height"):
            continue
        out.append(line if line.endswith("\n") else line + "\n")
    with open(dst, "w") as f:
        f.writelines(out)


def cpu_name() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def run(cmd) -> str:
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({r.returncode}):\n{r.stderr.strip()}")
    return r.stdout


def bench_opencv(cfg: str, weights: str, size: int, threads: int, warmup: int, iters: int, winograd: bool):
    cv2.setNumThreads(threads)
    net = cv2.dnn.readNetFromDarknet(cfg, weights)
    net.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
    net.setPreferableTarget(cv2.dnn.DNN_TARGET_CPU)
    if not winograd and hasattr(net, "enableWinograd"):
        net.enableWinograd(False)
    outs = net.getUnconnectedOutLayersNames()
    x = np.random.default_rng(0).random((1, 3, size, size), dtype=np.float32)
    times = []
    for it in range(warmup + iters):
        net.setInput(x)
        t0 = time.perf_counter()
        net.forward(outs)
        dt = (time.perf_counter() - t0) * 1e3
        if it >= warmup:
            times.append(dt)
    return times


ENGINES = {
    # name: (which cfg/weights, ternc bench flags)
    "reference": ("float", ["--backend", "reference"]),
    "jit-f32": ("float", ["--backend", "jit"]),
    "jit-w2a32": ("ternary", ["--backend", "jit"]),
    # int8 activations into every ternary layer, calibrated on 4 random inputs
    "jit-w2a8": ("ternary", ["--backend", "jit", "--act", "i8"]),
}


def cpu_ghz() -> float:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("cpu MHz"):
                return float(line.split(":", 1)[1]) / 1e3
    except (OSError, ValueError):
        pass
    return 0.0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", nargs="+", default=["yolov3-tiny", "yolov4-tiny", "yolov3-voc"],
                    help="model names under models/darknet (or cfg paths); default yolov3-tiny yolov4-tiny yolov3-voc")
    ap.add_argument("--engines", nargs="+", default=["jit-w2a8", "jit-w2a32", "reference"],
                    choices=sorted(ENGINES), help="ternc engines to time (default jit-w2a8 jit-w2a32 reference)")
    ap.add_argument("--size", type=int, default=416, help="network width=height (default 416)")
    ap.add_argument("--threads", type=int, default=2, help="threads for both engines (default 2)")
    ap.add_argument("--iters", type=int, default=20, help="timed runs per engine (default 20)")
    ap.add_argument("--warmup", type=int, default=2, help="untimed runs first (default 2)")
    ap.add_argument("--rounds", type=int, default=1,
                    help="alternate ternc/OpenCV blocks of --iters runs this many times (default 1)")
    ap.add_argument("--ternc", default=os.path.join(ROOT, "target", "release", "ternc"), help="ternc binary")
    ap.add_argument("--no-winograd", action="store_true", help="turn OpenCV's Winograd 3x3 convolution off")
    ap.add_argument("--ghz", type=float, default=0.0,
                    help="clock for the peak estimate (default: /proc/cpuinfo's current MHz)")
    ap.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    args = ap.parse_args()
    if not os.access(args.ternc, os.X_OK):
        sys.exit(f"no ternc binary at {args.ternc} (cargo build --release, or pass --ternc)")

    ghz = args.ghz or cpu_ghz()
    # AVX2 + FMA, no AVX-512: 2 FMA units x 8 f32 lanes x 2 flops per cycle and core
    peak = 32 * ghz * args.threads
    load0 = os.getloadavg()[0]
    print(f"{cpu_name()}, {os.cpu_count()} logical CPUs, {ghz:.2f} GHz; OpenCV {cv2.__version__} "
          f"(winograd {'off' if args.no_winograd else 'on'}); {args.threads} threads, "
          f"{args.size}x{args.size}, {args.warmup} warm-up + {args.iters} timed runs each; "
          f"fp32 FMA peak {peak:.0f} GFLOP/s")
    work = tempfile.mkdtemp(prefix="ternc_bench_")
    rows = []
    try:
        for m in args.models:
            tag = os.path.splitext(os.path.basename(m))[0]
            cfg = os.path.join(work, tag + ".cfg")
            weights = os.path.join(work, tag + ".weights")
            sized_cfg(find_cfg(m), cfg, args.size)
            info = json.loads(run([args.ternc, "inspect", cfg, "--json"]))
            bflops = sum(float(l.get("bflops", 0)) for l in info["layers"])
            run([args.ternc, "init", cfg, "-o", weights, "--seed", "1"])
            # every weight layer ternarized; the .weights hold alpha*code, which
            # OpenCV (ignoring ternary=1) runs as ordinary fp32 weights
            tern = os.path.join(work, tag + "-ternary")
            run([args.ternc, "ternarize", cfg, "--weights", weights, "--layers", "all", "-o", tern])
            files = {"float": (cfg, weights), "ternary": (tern + ".cfg", tern + ".weights")}
            med = {e: [] for e in args.engines + ["opencv"]}
            lo = {e: float("inf") for e in med}
            hi = {e: 0.0 for e in med}
            compile_ms = {}
            for r in range(max(1, args.rounds)):
                print(f"  {tag}:", end="", flush=True)
                for e in args.engines:
                    c, w = files[ENGINES[e][0]]
                    tb = json.loads(run([args.ternc, "bench", c, "--weights", w, *ENGINES[e][1],
                                         "--threads", str(args.threads), "--iters", str(args.iters),
                                         "--warmup", str(args.warmup), "--json"]))
                    med[e].append(tb["median_ms"])
                    lo[e], hi[e] = min(lo[e], tb["min_ms"]), max(hi[e], tb["max_ms"])
                    if tb.get("compile_ms") is not None:
                        compile_ms[e] = tb["compile_ms"]
                    print(f" {e} {tb['median_ms']:.1f} ms;", end="", flush=True)
                c = bench_opencv(*files["ternary"], args.size, args.threads, args.warmup, args.iters,
                                 not args.no_winograd)
                med["opencv"].append(statistics.median(c))
                lo["opencv"], hi["opencv"] = min(lo["opencv"], min(c)), max(hi["opencv"], max(c))
                print(f" opencv {statistics.median(c):.1f} ms", flush=True)
            for e in med:
                ms = statistics.median(med[e])
                rows.append({"model": tag, "engine": e, "bflops": bflops, "median_ms": ms,
                             "min_ms": lo[e], "max_ms": hi[e], "round_medians_ms": med[e],
                             "gflops_per_s": bflops / (ms / 1e3), "percent_of_peak": 100 * bflops / (ms / 1e3) / peak,
                             "speedup_vs_opencv": statistics.median(med["opencv"]) / ms,
                             "compile_ms": compile_ms.get(e)})
    finally:
        shutil.rmtree(work, ignore_errors=True)

    print(f"\n1-minute load average: {load0:.2f} before, {os.getloadavg()[0]:.2f} after")
    print("GFLOP/s counts the dense float work (2 flops per weight and output), whatever the engine does.")
    print(f"| {'model':<14} | {'engine':<10} | {'BFLOPs':>7} | {'median ms':>9} | {'min-max ms':>15} | "
          f"{'GFLOP/s':>7} | {'% peak':>6} | {'OpenCV/this':>11} | {'compile ms':>10} |")
    print(f"|{'-' * 16}|{'-' * 12}|{'-' * 9}|{'-' * 11}|{'-' * 17}|{'-' * 9}|{'-' * 8}|{'-' * 13}|{'-' * 12}|")
    for r in rows:
        cm = "" if r["compile_ms"] is None else f"{r['compile_ms']:.0f}"
        print(f"| {r['model']:<14} | {r['engine']:<10} | {r['bflops']:>7.2f} | {r['median_ms']:>9.1f} | "
              f"{r['min_ms']:>6.1f}-{r['max_ms']:<8.1f} | {r['gflops_per_s']:>7.1f} | {r['percent_of_peak']:>6.1f} | "
              f"{r['speedup_vs_opencv']:>11.2f} | {cm:>10} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"threads": args.threads, "size": args.size, "iters": args.iters, "ghz": ghz,
                       "peak_gflops": peak, "opencv": cv2.__version__, "winograd": not args.no_winograd,
                       "results": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
