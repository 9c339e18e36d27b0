#!/usr/bin/env python3
"""Layer-by-layer conformance of ternc's reference interpreter against OpenCV's
DNN module, an independent implementation of Darknet inference.

For every model it:
  1. writes a copy of the cfg with [net] width/height set to --size,
  2. makes random Darknet weights with `ternc init --seed` (He-normal weights,
     batchnorm statistics near identity),
  3. makes a deterministic random input in [0, 1) ([1,c,h,w] float32 .npy),
  4. runs `ternc run --dump DIR` (DIR/NNN.npy = Darknet layer NNN's output),
  5. runs the same cfg/weights through cv2.dnn.readNetFromDarknet and fetches
     every layer's output in ONE net.forward(names) call,
  6. maps each Darknet layer to the OpenCV layer that produces its output and
     compares them.

Mapping Darknet layers to OpenCV layers
---------------------------------------
OpenCV's importer (modules/dnn/src/darknet/darknet_io.cpp) emits, per Darknet
layer i, one or more OpenCV layers named "<kind>_<i>" (conv_i, bn_i, pool_i,
concat_i, identity_i, slice_i, shortcut_i, upsample_i, reorg_i, avgpool_i,
scale_channels_i, permute_i, yolo_i, ...), and THEN increments its counter, so
the activation that belongs to Darknet layer i is named "<act>_<i+1>"
(leaky_1 after conv_0/bn_0).  A [region] layer is named "detection_out" and is
preceded by permute_<i>.  We therefore group the OpenCV layers by Darknet index
(activation layers -> suffix-1, permute/yolo/everything else -> suffix,
detection_out -> the index of the permute before it); the LAST OpenCV layer of a
group is the Darknet layer's output (this is the importer's own
`fused_layer_names` bookkeeping).  The mapping is checked: every Darknet layer
must get exactly one OpenCV output with the same number of elements.

Detection heads
---------------
OpenCV has no layer whose output is Darknet's [yolo]/[region] output: it turns
the head into a detection matrix (rows = cells x anchors in (y, x, anchor)
order, columns = [bx, by, bw, bh, objectness, class scores]).  We convert that
matrix back into Darknet's channel-major layout and compare that:

  [yolo]   (OpenCV's cfg copy gets thresh=0 and nms_threshold=0 so no score is
            zeroed and no NMS runs)
      x   = bx*cols - col          (= logistic(tx)*scale_x_y - (scale_x_y-1)/2)
      y   = by*rows - row
      tw  = log(bw * net_w / anchor_w)   (Darknet leaves tw, th untouched)
      th  = log(bh * net_h / anchor_h)
      obj = objectness                   (logistic)
      cls = score / objectness           (OpenCV stores obj*logistic(cls))
  [region] (yolov2; anchors are in grid units, softmax over the classes)
      as above with net_w/net_h replaced by cols/rows and cls = softmax.
  OpenCV's importer does not pass nms_threshold to a [region] layer, so OpenCV
  always runs NMS (0.4) there and zeroes suppressed class scores.
  Elements whose OpenCV value could not be inverted (class score exactly 0,
  objectness < 1e-30, non-finite tw/th) are left out and counted ("masked").
  The inversion itself costs a few ulps of the coordinate (bx*cols - col), so
  these heads carry an extra ~1e-6 of normalised error.

Batchnorm epsilon
-----------------
OpenCV's importer uses eps = 1e-6 (Darknet's unfused CPU normalize_cpu:
sqrt(variance + .000001f)).  AlexeyAB's Darknet fuses batchnorm into the
convolution before inference (fuse_conv_batchnorm: sqrt(variance + .00001)), and
ternc follows that (eps = 1e-5).  With variances near 1 the difference is
~5e-6 relative per layer.  By default the OpenCV weights file gets
variance += 9e-6 so both sides compute sqrt(variance + 1e-5); --no-eps-fix
turns that off (then expect ~5e-6..1e-5 of error from this alone).

Ternary (darknet-twn) cfgs
--------------------------
OpenCV ignores the `ternary=1` key.  For a cfg with ternary layers, OpenCV gets
a weights file in which the weights of those layers are ternarized here, in
numpy, with the Ternary Weight Networks rule the darknetTWN fork uses per
layer: delta = 0.7*mean|W|, t = sign(W) where |W| > delta else 0,
alpha = mean(|W| : |W| > delta), W' = alpha*t.  ternc gets the raw random
weights and ternarizes them itself, so this also checks ternc's ternarization.

OpenCV's Winograd convolution
-----------------------------
OpenCV (4.7+) computes 3x3 stride-1 convolutions with Winograd F(6,3) by
default; that alone costs ~3e-6 of normalised error per layer (measured on
yolov3-tiny layer 0 against a float64 numpy convolution: Winograd 3.0e-6,
direct 3.0e-7, ternc 2.1e-7).  The script turns it off (net.enableWinograd(False));
--winograd turns it back on.

Errors
------
  norm  = max|ternc - opencv| / max(max|opencv|, 1e-6)      (the tolerance test)
  rel   = max over elements of |ternc - opencv| / max(|opencv|, 1e-3*max|opencv|)
          (relative error, with a floor so that values ~0 do not dominate)
Random He-initialised weights make deep nets' activations grow or shrink, so the
normalised error is the meaningful one.  In deep nets float32 summation-order
differences (im2col+GEMM blocking differs between ternc and OpenCV) grow with
depth; the table shows that growth layer by layer.

Exit status 1 if any compared layer's norm exceeds --tol (or a shape/mapping
mismatch occurs), 0 otherwise.  Models OpenCV cannot read are reported as
skipped (not a failure).

Usage (from the repository root, after `cargo build --release`):
    python3 tests/tools/opencv_conformance.py
    python3 tests/tools/opencv_conformance.py --models yolov3-tiny yolov4 --size 160 --tol 1e-4
    python3 tests/tools/opencv_conformance.py --models darknet-twn/yolov3-tiny-voc_M1 --keep /tmp/conf

Requires python3 with numpy and cv2 (opencv-python) only.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

import numpy as np

try:
    import cv2
except ImportError:  # pragma: no cover
    sys.exit("opencv_conformance.py needs OpenCV's python bindings (pip install opencv-python)")

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
MODEL_DIRS = ["darknet", "darknet-twn"]

DEFAULT_MODELS = [
    "yolov2-tiny-voc",
    "yolov3-tiny",
    "yolov3-tiny-prn",
    "yolov4-tiny",
    "yolov4-tiny-3l",
    "yolov2-voc",
    "yolov3-voc",
    "yolov3-spp",
    "yolov4",
    "enet-coco",
    "darknet-twn/yolov3-tiny-voc_M1",
]

# OpenCV layer types that the darknet importer emits for a Darknet activation=...
ACTIVATION_TYPES = {
    "ReLU", "ReLU6", "Swish", "Mish", "Sigmoid", "TanH", "ELU", "HardSwish",
    "HardSigmoid", "Power", "AbsVal", "BNLL", "Exp", "GELU", "Softplus",
}


# --------------------------------------------------------------------------
# cfg handling
# --------------------------------------------------------------------------

def find_cfg(name: str) -> str:
    """A model name (yolov3-tiny, darknet-twn/yolov3-tiny-voc_M1) or a path."""
    if os.path.isfile(name):
        return name
    base = name if name.endswith(".cfg") else name + ".cfg"
    cands = [os.path.join(ROOT, "models", base)] + [os.path.join(ROOT, "models", d, base) for d in MODEL_DIRS]
    for c in cands:
        if os.path.isfile(c):
            return c
    raise FileNotFoundError(f"no cfg for {name!r} (looked in models/darknet, models/darknet-twn)")


def read_sections(path: str) -> list[tuple[str, list[str]]]:
    """[(section_name, [raw lines])], the [net] section included, in file order."""
    sections: list[tuple[str, list[str]]] = []
    with open(path) as f:
        for line in f:
            s = line.strip()
            if s.startswith("["):
                sections.append((s[1:s.index("]")].strip().lower(), []))
            elif sections:
                sections[-1][1].append(line.rstrip("\n"))
    return sections


def options(lines: list[str]) -> dict[str, str]:
    out = {}
    for line in lines:
        s = line.split("#", 1)[0].strip()
        if "=" in s and not s.startswith(";"):
            k, v = s.split("=", 1)
            out[k.strip()] = v.strip()
    return out


def write_cfg(sections, path: str, size: int | None, head_overrides: dict[str, str] | None):
    """Writes the cfg with [net] width/height = size and, for [yolo]/[region],
    the given keys replaced."""
    key = re.compile(r"^\s*([A-Za-z_0-9]+)\s*=")
    with open(path, "w") as f:
        for name, lines in sections:
            f.write(f"[{name}]\n")
            drop: set[str] = set()
            extra: dict[str, str] = {}
            if name == "net" and size:
                drop, extra = {"width", "height"}, {"width": str(size), "height": str(size)}
            elif name in ("yolo", "region") and head_overrides:
                drop, extra = set(head_overrides), dict(head_overrides)
            for line in lines:
                m = key.match(line)
                if m and m.group(1) in drop:
                    continue
                f.write(line + "\n")
            for k, v in extra.items():
                f.write(f"{k}={v}\n")
            f.write("\n")


# --------------------------------------------------------------------------
# weights file
# --------------------------------------------------------------------------

def read_weights(path: str):
    with open(path, "rb") as f:
        raw = f.read()
    major, minor, rev = np.frombuffer(raw[:12], dtype="<i4")
    hdr = 12 + (8 if major * 10 + minor >= 2 else 4)
    return raw[:hdr], np.frombuffer(raw[hdr:], dtype="<f4").copy()


def twn_ternarize(w: np.ndarray, threshold: float = 0.7) -> np.ndarray:
    a = np.abs(w.astype(np.float64))
    delta = np.float32(threshold * a.mean())
    keep = np.abs(w) > delta
    alpha = np.float32(a[keep].mean()) if keep.any() else np.float32(0.0)
    return (np.sign(w) * keep).astype(np.float32) * alpha


def opencv_weights(src: str, dst: str, layers: list[dict], sections, eps_fix: bool) -> tuple[int, int]:
    """Copies src to dst, adjusting batchnorm variances (eps fix) and
    ternarizing the weights of `ternary=1` conv layers.  Returns
    (#bn layers adjusted, #layers ternarized)."""
    hdr, data = read_weights(src)
    total = sum(int(l.get("params", 0)) for l in layers)
    if total != data.size:
        raise RuntimeError(f"weights file has {data.size} floats, inspect says {total}")
    layer_secs = [s for s in sections if s[0] != "net"]
    at, n_bn, n_tern = 0, 0, 0
    for l, (kind, lines) in zip(layers, layer_secs):
        p = int(l.get("params", 0))
        if kind in ("convolutional", "conv") and p:
            o = options(lines)
            n = int(l["output"][0])
            bn = int(o.get("batch_normalize", "0") or 0) == 1
            w_at = at + n * (4 if bn else 1)
            if bn and eps_fix:
                var = data[at + 3 * n: at + 4 * n]
                data[at + 3 * n: at + 4 * n] = (var.astype(np.float64) + 9e-6).astype(np.float32)
                n_bn += 1
            if int(o.get("ternary", "0") or 0) == 1:
                data[w_at: at + p] = twn_ternarize(data[w_at: at + p])
                n_tern += 1
        at += p
    with open(dst, "wb") as f:
        f.write(hdr)
        f.write(data.astype("<f4").tobytes())
    return n_bn, n_tern


# --------------------------------------------------------------------------
# OpenCV side
# --------------------------------------------------------------------------

def group_opencv_layers(net) -> dict[int, list[tuple[str, str]]]:
    """Darknet layer index -> [(opencv name, opencv type)] in creation order."""
    groups: dict[int, list[tuple[str, str]]] = {}
    prev_idx, prev_type = -1, None
    for name in net.getLayerNames():
        typ = net.getLayer(net.getLayerId(name)).type
        m = re.search(r"_(\d+)$", name)
        if m is None:
            # detection_out ([region]): same Darknet index as the permute before it
            idx = prev_idx if prev_type == "Permute" else prev_idx + 1
        elif typ in ACTIVATION_TYPES:
            idx = int(m.group(1)) - 1
        else:
            idx = int(m.group(1))
        groups.setdefault(idx, []).append((name, typ))
        prev_idx, prev_type = idx, typ
    return groups


def yolo_from_opencv(det: np.ndarray, shape, anchors_wh, net_wh, region: bool):
    """Darknet [A*(5+C), h, w] rebuilt from OpenCV's detection matrix, and a mask
    of the elements that could be inverted."""
    c, h, w = shape
    a = len(anchors_wh)
    entries = c // a
    d = det.reshape(h, w, a, entries).astype(np.float64)
    col = np.arange(w, dtype=np.float64)[None, :, None]
    row = np.arange(h, dtype=np.float64)[:, None, None]
    aw = np.array([x[0] for x in anchors_wh], dtype=np.float64)[None, None, :]
    ah = np.array([x[1] for x in anchors_wh], dtype=np.float64)[None, None, :]
    nw, nh = (w, h) if region else net_wh
    out = np.empty_like(d)
    ok = np.ones(d.shape, dtype=bool)
    out[..., 0] = d[..., 0] * w - col
    out[..., 1] = d[..., 1] * h - row
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        out[..., 2] = np.log(d[..., 2] * nw / aw)
        out[..., 3] = np.log(d[..., 3] * nh / ah)
        obj = d[..., 4]
        out[..., 4] = obj
        out[..., 5:] = d[..., 5:] / obj[..., None]
    ok[..., 2:4] = np.isfinite(out[..., 2:4])
    ok[..., 5:] = (d[..., 5:] != 0) & (obj[..., None] > 1e-30)
    # [h, w, a, e] -> [a, e, h, w] -> [a*e, h, w]
    tr = lambda x: np.transpose(x, (2, 3, 0, 1)).reshape(c, h, w)
    return tr(out), tr(ok)


def head_anchors(opts: dict[str, str], kind: str):
    vals = [float(v) for v in opts.get("anchors", "").replace(" ", "").split(",") if v]
    pairs = list(zip(vals[0::2], vals[1::2]))
    if kind == "yolo":
        mask = [int(v) for v in opts.get("mask", "").replace(" ", "").split(",") if v]
        if not mask:
            mask = list(range(int(opts.get("num", len(pairs)))))
        return [pairs[m] for m in mask]
    return pairs


# --------------------------------------------------------------------------
# comparison
# --------------------------------------------------------------------------

def errors(t: np.ndarray, o: np.ndarray, mask: np.ndarray | None = None):
    t = t.astype(np.float64).ravel()
    o = o.astype(np.float64).ravel()
    if mask is not None:
        m = mask.ravel()
        t, o = t[m], o[m]
    if o.size == 0:
        return 0.0, 0.0, 0.0
    diff = np.abs(t - o)
    if not np.all(np.isfinite(diff)):
        return float("inf"), float("inf"), float(np.max(np.abs(o[np.isfinite(o)]), initial=0.0))
    scale = float(np.max(np.abs(o)))
    norm = float(diff.max() / max(scale, 1e-6))
    rel = float(np.max(diff / np.maximum(np.abs(o), max(1e-3 * scale, 1e-30))))
    return norm, rel, scale


def run_model(model: str, args, work: str) -> dict:
    cfg_src = find_cfg(model)
    tag = os.path.splitext(os.path.basename(cfg_src))[0]
    if os.path.basename(os.path.dirname(cfg_src)) != "darknet":
        tag = os.path.basename(os.path.dirname(cfg_src)) + "_" + tag
    d = os.path.join(work, tag)
    os.makedirs(d, exist_ok=True)
    sections = read_sections(cfg_src)
    cfg = os.path.join(d, "model.cfg")
    cfg_cv = os.path.join(d, "model.opencv.cfg")
    write_cfg(sections, cfg, args.size, None)
    write_cfg(sections, cfg_cv, args.size, {"thresh": "0", "nms_threshold": "0"})
    weights = os.path.join(d, "model.weights")
    weights_cv = os.path.join(d, "model.opencv.weights")
    inp = os.path.join(d, "input.npy")
    dump = os.path.join(d, "ternc")

    def sh(cmd):
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed ({r.returncode}):\n{r.stderr.strip()}")
        return r.stdout

    info = json.loads(sh([args.ternc, "inspect", cfg, "--json"]))
    layers = info["layers"]
    sh([args.ternc, "init", cfg, "-o", weights, "--seed", str(args.seed)])
    n_bn, n_tern = opencv_weights(weights, weights_cv, layers, sections, not args.no_eps_fix)
    c, h, w = layers[0]["input"]
    x = np.random.default_rng(args.seed).random((1, c, h, w), dtype=np.float32)
    np.save(inp, x)
    cmd = [args.ternc, "run", cfg, "--weights", weights, "--input", inp, "--dump", dump]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    sh(cmd)

    res = {"model": tag, "layers": [], "skipped": None, "failed": False, "notes": []}
    if n_tern:
        res["notes"].append(f"{n_tern} ternary conv layers ternarized (numpy TWN) for OpenCV")
    try:
        net = cv2.dnn.readNetFromDarknet(cfg_cv, weights_cv)
    except cv2.error as e:
        msg = str(e).strip().splitlines()
        res["skipped"] = "OpenCV cannot read it: " + (msg[-1] if msg else "cv2.error")
        return res
    net.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
    net.setPreferableTarget(cv2.dnn.DNN_TARGET_CPU)
    if args.no_fusion:
        net.enableFusion(False)
    if not args.winograd and hasattr(net, "enableWinograd"):
        net.enableWinograd(False)
    groups = group_opencv_layers(net)
    names = []
    for i in range(len(layers)):
        g = groups.get(i)
        if not g:
            raise RuntimeError(f"{tag}: no OpenCV layer for Darknet layer {i} ({layers[i]['type']})")
        names.append(g[-1][0])
    extra = sorted(set(groups) - set(range(len(layers))))
    if extra:
        raise RuntimeError(f"{tag}: OpenCV layers map to unknown Darknet indices {extra}")
    net.setInput(x)
    outs = net.forward(names)

    layer_secs = [s for s in sections if s[0] != "net"]
    net_wh = (w, h)
    for i, (l, o) in enumerate(zip(layers, outs)):
        kind = l["type"]
        shape = tuple(int(v) for v in l["output"])
        t = np.load(os.path.join(dump, f"{i:03d}.npy"))
        row = {"index": i, "type": kind, "shape": shape, "opencv": "+".join(n for n, _ in groups[i]),
               "norm": None, "rel": None, "max": None, "note": ""}
        mask = None
        if kind in ("yolo", "region"):
            opts = options(layer_secs[i][1])
            if kind == "yolo" and int(opts.get("new_coords", "0") or 0):
                row["note"] = "skipped: new_coords head"
                res["layers"].append(row)
                continue
            anchors = head_anchors(opts, kind)
            o, mask = yolo_from_opencv(np.asarray(o), shape, anchors, net_wh, kind == "region")
            masked = int(mask.size - mask.sum())
            row["note"] = "from detection matrix" + (f", {masked} masked" if masked else "")
        if t.size != np.asarray(o).size:
            row["note"] = f"SIZE MISMATCH: ternc {t.shape} vs opencv {np.asarray(o).shape}"
            row["norm"] = float("inf")
            res["failed"] = True
            res["layers"].append(row)
            continue
        o = np.asarray(o).reshape(t.shape)
        row["norm"], row["rel"], row["max"] = errors(t, o, mask)
        if not row["norm"] <= args.tol:
            res["failed"] = True
        res["layers"].append(row)
    if not args.no_eps_fix and n_bn:
        res["notes"].append(f"bn eps fix applied to {n_bn} layers")
    return res


def print_result(res: dict, tol: float):
    print(f"\n=== {res['model']} ===")
    for n in res["notes"]:
        print(f"  note: {n}")
    if res["skipped"]:
        print(f"  SKIPPED: {res['skipped']}")
        return
    print(f"  {'idx':>4} {'type':<15} {'shape':<16} {'max|opencv|':>11} {'norm err':>10} {'rel err':>10}  opencv layer(s) / note")
    for r in res["layers"]:
        shape = "x".join(str(v) for v in r["shape"])
        if r["norm"] is None:
            print(f"  {r['index']:>4} {r['type']:<15} {shape:<16} {'':>11} {'-':>10} {'-':>10}  {r['note']}")
            continue
        flag = " <-- FAIL" if not r["norm"] <= tol else ""
        mx = f"{r['max']:.3e}" if r["max"] is not None else ""
        rel = f"{r['rel']:.2e}" if r["rel"] is not None else "-"
        print(f"  {r['index']:>4} {r['type']:<15} {shape:<16} {mx:>11} {r['norm']:>10.2e} {rel:>10}  "
              f"{r['opencv']}{'  [' + r['note'] + ']' if r['note'] else ''}{flag}")
    cmp = [r for r in res["layers"] if r["norm"] is not None]
    if cmp:
        worst = max(cmp, key=lambda r: r["norm"])
        print(f"  worst: layer {worst['index']} ({worst['type']}) norm {worst['norm']:.2e} rel {worst['rel']:.2e}"
              f"  -> {'FAIL' if res['failed'] else 'ok'} at tol {tol:g}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=DEFAULT_MODELS,
                    help="model names (looked up in models/darknet, models/darknet-twn; "
                         "prefix darknet-twn/ for the TWN cfgs) or cfg paths")
    ap.add_argument("--size", type=int, default=160, help="network width=height (multiple of 32; default 160)")
    ap.add_argument("--tol", type=float, default=1e-4, help="max normalised error per layer (default 1e-4)")
    ap.add_argument("--ternc", default=os.path.join(ROOT, "target", "release", "ternc"), help="ternc binary")
    ap.add_argument("--keep", metavar="DIR", help="keep cfgs, weights, input and dumps under DIR")
    ap.add_argument("--seed", type=int, default=1, help="seed for ternc init and the input (default 1)")
    ap.add_argument("--threads", type=int, default=0, help="ternc run --threads (default: ternc's)")
    ap.add_argument("--no-eps-fix", action="store_true",
                    help="give OpenCV the batchnorm variances unchanged (its eps is 1e-6, ternc's 1e-5)")
    ap.add_argument("--no-fusion", action="store_true", help="net.enableFusion(False) in OpenCV")
    ap.add_argument("--winograd", action="store_true",
                    help="let OpenCV use Winograd for 3x3 convolutions (its default; ~10x larger rounding error)")
    ap.add_argument("--json", metavar="FILE", help="also write all results as JSON")
    args = ap.parse_args()

    if not os.access(args.ternc, os.X_OK):
        sys.exit(f"no ternc binary at {args.ternc} (cargo build --release, or pass --ternc)")
    print(f"OpenCV {cv2.__version__}, numpy {np.__version__}, size {args.size}, tol {args.tol:g}, "
          f"eps fix {'off' if args.no_eps_fix else 'on'}, winograd {'on' if args.winograd else 'off'}, "
          f"fusion {'off' if args.no_fusion else 'on'}, ternc {args.ternc}")
    work = args.keep or tempfile.mkdtemp(prefix="ternc_opencv_")
    os.makedirs(work, exist_ok=True)
    results, failed = [], False
    try:
        for m in args.models:
            try:
                res = run_model(m, args, work)
            except (RuntimeError, FileNotFoundError) as e:
                res = {"model": m, "layers": [], "skipped": None, "failed": True, "notes": [f"ERROR: {e}"]}
            print_result(res, args.tol)
            sys.stdout.flush()
            results.append(res)
            failed |= res["failed"]
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)

    print("\n=== summary ===")
    print(f"  {'model':<34} {'layers':>6} {'worst layer':<24} {'norm err':>10} {'rel err':>10}  result")
    for res in results:
        cmp = [r for r in res["layers"] if r["norm"] is not None]
        if res["skipped"] or not cmp:
            why = res["skipped"] or "; ".join(res["notes"])
            print(f"  {res['model']:<34} {'-':>6} {'-':<24} {'-':>10} {'-':>10}  "
                  f"{'FAIL' if res['failed'] else 'skipped'}: {why}")
            continue
        wr = max(cmp, key=lambda r: r["norm"])
        wl = f"{wr['index']} {wr['type']}"
        rel = f"{wr['rel']:.2e}" if wr["rel"] is not None else "-"
        print(f"  {res['model']:<34} {len(cmp):>6} {wl:<24} {wr['norm']:>10.2e} {rel:>10}  "
              f"{'FAIL' if res['failed'] else 'ok'}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1, default=float)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
