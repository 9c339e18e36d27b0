#!/usr/bin/env python3
"""Times ternc's reference interpreter against OpenCV's DNN module (fp32, CPU,
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


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", nargs="+", default=["yolov3-tiny", "yolov3-voc"],
                    help="model names under models/darknet (or cfg paths); default yolov3-tiny yolov3-voc")
    ap.add_argument("--size", type=int, default=416, help="network width=height (default 416)")
    ap.add_argument("--threads", type=int, default=2, help="threads for both engines (default 2)")
    ap.add_argument("--iters", type=int, default=10, help="timed runs per engine (default 10)")
    ap.add_argument("--warmup", type=int, default=2, help="untimed runs first (default 2)")
    ap.add_argument("--rounds", type=int, default=1,
                    help="alternate ternc/OpenCV blocks of --iters runs this many times (default 1)")
    ap.add_argument("--ternc", default=os.path.join(ROOT, "target", "release", "ternc"), help="ternc binary")
    ap.add_argument("--no-winograd", action="store_true", help="turn OpenCV's Winograd 3x3 convolution off")
    ap.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    args = ap.parse_args()
    if not os.access(args.ternc, os.X_OK):
        sys.exit(f"no ternc binary at {args.ternc} (cargo build --release, or pass --ternc)")

    load0 = os.getloadavg()[0]
    print(f"{cpu_name()}, {os.cpu_count()} logical CPUs; OpenCV {cv2.__version__} "
          f"(winograd {'off' if args.no_winograd else 'on'}); {args.threads} threads, "
          f"{args.size}x{args.size}, {args.warmup} warm-up + {args.iters} timed runs each")
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
            tmed, tmin, tmax, cmed, cmin, cmax = [], [], [], [], [], []
            for r in range(max(1, args.rounds)):
                print(f"  {tag}: ternc ...", end="", flush=True)
                tb = json.loads(run([args.ternc, "bench", cfg, "--weights", weights, "--threads", str(args.threads),
                                     "--iters", str(args.iters), "--warmup", str(args.warmup), "--json"]))
                tmed.append(tb["median_ms"]), tmin.append(tb["min_ms"]), tmax.append(tb["max_ms"])
                print(f" {tb['median_ms']:.1f} ms; OpenCV ...", end="", flush=True)
                c = bench_opencv(cfg, weights, args.size, args.threads, args.warmup, args.iters, not args.no_winograd)
                cmed.append(statistics.median(c)), cmin.append(min(c)), cmax.append(max(c))
                print(f" {statistics.median(c):.1f} ms", flush=True)
            tm, cm = statistics.median(tmed), statistics.median(cmed)
            rows.append({"model": tag, "bflops": bflops, "rounds": len(tmed),
                         "ternc_median_ms": tm, "ternc_min_ms": min(tmin), "ternc_max_ms": max(tmax),
                         "opencv_median_ms": cm, "opencv_min_ms": min(cmin), "opencv_max_ms": max(cmax),
                         "ternc_round_medians_ms": tmed, "opencv_round_medians_ms": cmed,
                         "ratio": tm / cm})
    finally:
        shutil.rmtree(work, ignore_errors=True)

    print(f"\n1-minute load average: {load0:.2f} before, {os.getloadavg()[0]:.2f} after")
    print(f"| {'model':<14} | {'BFLOPs':>7} | {'ternc median ms':>15} | {'OpenCV median ms':>16} | "
          f"{'ratio ternc/OpenCV':>18} | {'ternc min-max':>15} | {'OpenCV min-max':>15} |")
    print(f"|{'-' * 16}|{'-' * 9}|{'-' * 17}|{'-' * 18}|{'-' * 20}|{'-' * 17}|{'-' * 17}|")
    for r in rows:
        print(f"| {r['model']:<14} | {r['bflops']:>7.2f} | {r['ternc_median_ms']:>15.1f} | {r['opencv_median_ms']:>16.1f} | "
              f"{r['ratio']:>18.2f} | {r['ternc_min_ms']:>6.1f}-{r['ternc_max_ms']:<8.1f} | "
              f"{r['opencv_min_ms']:>6.1f}-{r['opencv_max_ms']:<8.1f} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"threads": args.threads, "size": args.size, "iters": args.iters,
                       "opencv": cv2.__version__, "winograd": not args.no_winograd, "results": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
