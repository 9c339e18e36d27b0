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
            (new_coords=1: no logistic anywhere in the head, bw = tw^2*4*anchor_w/net_w,
            so tw = sqrt(bw*net_w/(4*anchor_w)); tw >= 0 as the conv before is logistic)
      obj = objectness                   (logistic)
      cls = score / objectness           (OpenCV stores obj*logistic(cls))
  [region] (yolov2; anchors are in grid units, softmax over the classes)
      as above with net_w/net_h replaced by cols/rows and cls = softmax.
  OpenCV's importer does not pass nms_threshold to a [region] layer, so OpenCV
  always runs NMS (0.4) there and zeroes suppressed class scores.

  Two numbers per head:
    * "head alone" (the one tested against --tol): OpenCV's head run by itself
      on ternc's own output of the layer before, so it measures the head's
      semantics only.  Classes come from a second such run whose objectness
      input is a constant (logistic(0) = 0.5) and whose x, y, tw, th make small
      boxes that do not overlap (so the NMS suppresses nothing): in Darknet the
      class outputs do not depend on those inputs, and this way every class
      entry can be recovered.
    * "end to end": OpenCV's head on OpenCV's own previous layer, as part of
      the full forward pass.  With random weights the previous layer can reach
      1e4..1e5, so its float32 rounding differences (~1e-6 of that) turn into
      1e-3-sized differences after the logistic; this is reported, not tested.
  Elements whose OpenCV value could not be inverted (in practice tw, th whose
  exp overflows in OpenCV; in the end-to-end numbers also class scores zeroed
  by NMS or underflow, objectness < 1e-30) are left out and counted ("masked").
  The inversion itself costs a few ulps of the coordinate (bx*cols - col), so
  these heads carry an extra ~1e-6 of normalised error.
  tw, th are the previous layer's values passed through unchanged, so their
  absolute error is that layer's: they are normalised by max|previous layer|
  (with random weights that can be 1e5 while x, y, obj, cls are <= 1).  The
  head's error is the larger of the two; the note column shows both.

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

OpenCV's layer fusion
---------------------
With fusion on (OpenCV's default), layers that OpenCV fuses into a following
Concat or Eltwise do not keep an output blob of their own: asking for them
returns zeros or stale memory (e.g. yolov2-voc layer 24, yolov4 layers 2, 8, 12,
enet-coco layer 112).  The script turns fusion off (net.enableFusion(False));
--fusion turns it back on.

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
Random He-initialised weights make deep nets' activations grow or shrink (to
1e5 in yolov3-voc), so the normalised error is the meaningful one.  float32
summation-order differences (im2col+GEMM blocking differs between ternc and
OpenCV) stay at 1e-6..5e-6 through 100-240-layer nets: they grow slowly with
depth, not exponentially; each model prints the worst error per quarter of its
layers.

When a layer's end-to-end error exceeds --tol, the script diagnoses it:
  1. it runs that layer ALONE in OpenCV on ternc's own output of the layer
     before (convolutional, maxpool, avgpool, upsample, reorg, softmax,
     connected).  If that agrees within --tol, the difference was inherited
     from earlier layers ("drift"; e.g. a logistic conv reading 1e4-sized
     inputs turns their 1e-6 relative differences into 1e-3 absolute ones).
  2. if a convolution still disagrees alone, a float64 numpy convolution of
     the same layer referees: ternc passes if its error against float64 is
     within --tol, within 4x OpenCV's own error against float64, or within the
     float32 rounding bound sqrt(K)*2^-24*max(sum|w*x|) of the layer
     ("rounding: ill-conditioned layer").
Such layers are printed with "<-- drift" and do not fail the run.

Exit status 1 if any compared layer's norm exceeds --tol without passing that
diagnosis (or a shape/mapping mismatch occurs), 0 otherwise.  Models OpenCV
cannot read or run are reported as skipped (not a failure).

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
    "darknet-twn/yolov3-tiny-voc_M3",
    "darknet-twn/yolov2-voc_M3",
    "darknet-twn/yolov3-voc_M2",
]

# OpenCV layer types that the darknet importer emits for a Darknet activation=...
ACTIVATION_TYPES = {
    "ReLU", "ReLU6", "Swish", "Mish", "Sigmoid", "TanH", "ELU", "HardSwish",
    "HardSigmoid", "Power", "AbsVal", "BNLL", "Exp", "GELU", "Softplus",
}


# Layers that read only the layer before and can be run alone in OpenCV.
ALONE_TYPES = {"convolutional", "maxpool", "avgpool", "upsample", "reorg", "softmax", "connected"}

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
    return n_bn, n_tern, data


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


def yolo_from_opencv(det: np.ndarray, shape, anchors_wh, net_wh, region: bool, new_coords: bool = False,
                     exact_zeros: bool = False):
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
        if new_coords:  # bw = tw^2*4*anchor/net_w, tw = logistic output >= 0
            out[..., 2] = np.sqrt(d[..., 2] * nw / (4 * aw))
            out[..., 3] = np.sqrt(d[..., 3] * nh / (4 * ah))
        else:
            out[..., 2] = np.log(d[..., 2] * nw / aw)
            out[..., 3] = np.log(d[..., 3] * nh / ah)
        obj = d[..., 4]
        out[..., 4] = obj
        out[..., 5:] = d[..., 5:] / obj[..., None]
    ok[..., 2:4] = np.isfinite(out[..., 2:4])
    # A zero class score is "suppressed or thresholded" unless the caller knows
    # neither happened (exact_zeros: then it is a class probability that is 0).
    ok[..., 5:] = (obj[..., None] > 1e-30) & (exact_zeros | (np.abs(d[..., 5:]) > 1e-30))
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


def head_errors(t, o, mask, n_anchors: int, raw_scale: float):
    """Errors of a rebuilt [yolo]/[region] output, split into the activated
    entries (x, y, obj, classes; scale ~1) and the passed-through tw, th, whose
    error is normalised by raw_scale (0: by their own max)."""
    c = t.shape[-3]
    entries = c // n_anchors
    raw = np.zeros(t.shape, dtype=bool)
    for a in range(n_anchors):
        raw[..., a * entries + 2: a * entries + 4, :, :] = True
    n_act, r_act, m_act = errors(t, o, mask & ~raw)
    n_raw, r_raw, m_raw = errors(t, o, mask & raw)
    if raw_scale > 0:
        d = np.abs(t.astype(np.float64) - o)[mask & raw]
        n_raw = float(d.max() / raw_scale) if d.size else 0.0
    return n_act, n_raw, max(r_act, r_raw), m_act


# float64 activations for the referee below (Darknet's definitions).
ACT_F64 = {
    "linear": lambda v: v,
    "leaky": lambda v: np.where(v > 0, v, 0.1 * v),
    "relu": lambda v: np.maximum(v, 0),
    "logistic": lambda v: 1 / (1 + np.exp(-v)),
    "tanh": np.tanh,
    "swish": lambda v: v / (1 + np.exp(-v)),
    "mish": lambda v: v * np.tanh(np.where(v > 20, v, np.where(v < -20, np.exp(v), np.log1p(np.exp(v))))),
}


def conv_f64(opts: dict[str, str], params: np.ndarray, x: np.ndarray, bn_eps: float) -> np.ndarray | None:
    """A float64 numpy [convolutional] (im2col + matmul, batchnorm, activation)
    on x [1,c,h,w]: the referee when ternc and OpenCV disagree on one layer
    run alone.  Returns (output, bound): bound = sqrt(K)*2^-24*max(sum|w||x|)
    (BN factor folded in), the usual size of float32 rounding in the layer's
    K-term dot products before the activation.  None for options it does not model."""
    act = ACT_F64.get(opts.get("activation", "logistic").strip())
    if act is None:
        return None
    gi = lambda k, d: int(float(opts.get(k, d)))
    n, k, g, dil = gi("filters", 1), gi("size", 1), gi("groups", 1), gi("dilation", 1)
    sy, sx = gi("stride_y", gi("stride", 1)), gi("stride_x", gi("stride", 1))
    pad = k // 2 if gi("pad", 0) else gi("padding", 0)
    bn = gi("batch_normalize", 0) == 1
    _, c, h, w = x.shape
    p = params.astype(np.float64)
    bias, at = p[:n], n
    if bn:
        scale, mean, var = p[n:2 * n], p[2 * n:3 * n], p[3 * n:4 * n]
        at = 4 * n
    wts = p[at:].reshape(n, c // g, k, k)
    ke = (k - 1) * dil + 1
    oh, ow = (h + 2 * pad - ke) // sy + 1, (w + 2 * pad - ke) // sx + 1
    xp = np.pad(x[0].astype(np.float64), ((0, 0), (pad, pad), (pad, pad)))
    out = np.empty((n, oh, ow))
    mag = np.empty((n, oh, ow))
    cg, ng = c // g, n // g
    for gr in range(g):
        cols = np.stack([xp[gr * cg + ci, ky * dil: ky * dil + sy * (oh - 1) + 1: sy,
                            kx * dil: kx * dil + sx * (ow - 1) + 1: sx]
                         for ci in range(cg) for ky in range(k) for kx in range(k)]).reshape(cg * k * k, -1)
        wg = wts[gr * ng:(gr + 1) * ng].reshape(ng, -1)
        out[gr * ng:(gr + 1) * ng] = (wg @ cols).reshape(ng, oh, ow)
        mag[gr * ng:(gr + 1) * ng] = (np.abs(wg) @ np.abs(cols)).reshape(ng, oh, ow)
    if bn:
        f = scale / np.sqrt(var + bn_eps)
        out = (out - mean[:, None, None]) * f[:, None, None]
        mag = mag * np.abs(f)[:, None, None]
    out += bias[:, None, None]
    bound = float(np.sqrt(cg * k * k) * 2.0 ** -24 * mag.max())
    with np.errstate(over="ignore"):
        return act(out)[None], bound


def opencv_layer_alone(section, prev: np.ndarray, params: np.ndarray, base: str,
                      head_overrides: dict[str, str] | None = None) -> np.ndarray:
    """Runs one Darknet layer alone in OpenCV on `prev` ([1,c,h,w], here ternc's
    own output of the layer before): a cfg whose [net] is the layer's input and
    a weights file holding just this layer's parameters.  Returns the output of
    the last OpenCV layer (for [yolo]/[region] the detection matrix; a head's
    box normaliser net_w/net_h becomes the grid size)."""
    _, c, h, w = prev.shape
    kind, lines = section
    write_cfg([("net", [f"width={w}", f"height={h}", f"channels={c}"]), (kind, lines)],
              base + ".cfg", None, head_overrides)
    with open(base + ".weights", "wb") as f:
        f.write(np.array([0, 2, 0], dtype="<i4").tobytes() + np.zeros(1, dtype="<u8").tobytes())
        f.write(np.asarray(params, dtype="<f4").tobytes())
    net = cv2.dnn.readNetFromDarknet(base + ".cfg", base + ".weights")
    net.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
    net.setPreferableTarget(cv2.dnn.DNN_TARGET_CPU)
    net.enableFusion(False)
    if hasattr(net, "enableWinograd"):
        net.enableWinograd(False)
    net.setInput(np.ascontiguousarray(prev, dtype=np.float32))
    return np.asarray(net.forward())


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
    n_bn, n_tern, cv_params = opencv_weights(weights, weights_cv, layers, sections, not args.no_eps_fix)
    offsets = np.cumsum([0] + [int(l.get("params", 0)) for l in layers])
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
    if not args.fusion:
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
    try:
        outs = net.forward(names)
    except cv2.error as e:
        msg = [m for m in str(e).strip().splitlines() if m.strip()]
        res["skipped"] = "OpenCV cannot run it: " + (msg[-1].strip() if msg else "cv2.error")
        return res

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
            newc = kind == "yolo" and int(opts.get("new_coords", "0") or 0) == 1
            if i == 0 or layers[i - 1]["output"] != l["input"]:
                raise RuntimeError(f"{tag}: head {i} does not read layer {i - 1}")
            anchors = head_anchors(opts, kind)
            region = kind == "region"
            # end to end: OpenCV's head on OpenCV's own previous layer
            o, mask = yolo_from_opencv(np.asarray(o), shape, anchors, net_wh, region, newc)
            t = t.reshape(o.shape)
            prev_scale = float(np.max(np.abs(np.asarray(outs[i - 1]))))
            e_act, e_raw, e_rel, _ = head_errors(t, o, mask, len(anchors), prev_scale)
            # the head alone: OpenCV's head on ternc's previous layer
            prev_t = np.load(os.path.join(dump, f"{i - 1:03d}.npy"))
            det = opencv_layer_alone(layer_secs[i], prev_t, np.zeros(0, np.float32),
                                     os.path.join(d, f"alone{i:03d}"), {"thresh": "0", "nms_threshold": "0"})
            o2, mask2 = yolo_from_opencv(det, shape, anchors, (shape[2], shape[1]), region, newc)
            # Classes again from a second run whose objectness input is a benign
            # constant (OpenCV reports obj*class, unrecoverable where obj is ~0) and,
            # for the logistic/softmax heads, whose boxes are tiny (no overlaps, so
            # the NMS OpenCV always runs for [region] suppresses nothing).  Classes
            # do not depend on those inputs in Darknet.
            ent = shape[0] // len(anchors)
            prev_b = prev_t.copy()
            cls = np.zeros(shape, dtype=bool)
            na = len(anchors)
            for a in range(na):
                prev_b[0, a * ent + 4] = 0.5 if newc else 0.0
                if not newc:
                    # centres spread along the cell diagonal, 1/(na*cells) apart, boxes
                    # half that wide (not tinier: OpenCV's NMS counts boxes whose areas
                    # sum to < DBL_EPSILON as identical)
                    q = (a + 0.5) / na
                    prev_b[0, a * ent: a * ent + 2] = np.log(q / (1 - q))
                    prev_b[0, a * ent + 2] = np.log(0.5 / (na * anchors[a][0]))
                    prev_b[0, a * ent + 3] = np.log(0.5 / (na * anchors[a][1]))
                cls[a * ent + 5:(a + 1) * ent] = True
            det_b = opencv_layer_alone(layer_secs[i], prev_b, np.zeros(0, np.float32),
                                       os.path.join(d, f"alone{i:03d}b"), {"thresh": "0", "nms_threshold": "0"})
            o3, mask3 = yolo_from_opencv(det_b, shape, anchors, (shape[2], shape[1]), region, newc, True)
            o2[cls], mask2[cls] = o3[cls], mask3[cls]
            h_act, h_raw, h_rel, h_max = head_errors(t, o2, mask2, len(anchors), 0.0)
            row["norm"], row["rel"], row["max"] = max(h_act, h_raw), h_rel, h_max
            masked = int(mask2.size - mask2.sum())
            row["note"] = (f"head alone on ternc's layer {i - 1}: x,y,obj,cls {h_act:.1e}, tw,th {h_raw:.1e}"
                           f"{f', {masked} masked' if masked else ''}; end to end: x,y,obj,cls {e_act:.1e}"
                           f" (rel {e_rel:.1e}), tw,th {e_raw:.1e} of layer {i - 1}'s max")
            row["e2e"] = max(e_act, e_raw)
            if not row["norm"] <= args.tol:
                res["failed"] = True
            res["layers"].append(row)
            continue
        if t.size != np.asarray(o).size:
            row["note"] = f"SIZE MISMATCH: ternc {t.shape} vs opencv {np.asarray(o).shape}"
            row["norm"] = float("inf")
            res["failed"] = True
            res["layers"].append(row)
            continue
        o = np.asarray(o).reshape(t.shape)
        row["norm"], row["rel"], row["max"] = errors(t, o)
        if not row["norm"] <= args.tol and kind in ALONE_TYPES and \
                (i == 0 or layers[i - 1]["output"] == l["input"]):
            # Diagnose: run this layer alone in OpenCV on ternc's own input.  If
            # that agrees, the end-to-end error is inherited from earlier layers.
            prev_t = x if i == 0 else np.load(os.path.join(dump, f"{i - 1:03d}.npy"))
            try:
                alone = opencv_layer_alone(layer_secs[i], prev_t, cv_params[offsets[i]:offsets[i + 1]],
                                           os.path.join(d, f"alone{i:03d}"))
                a_norm, a_rel, _ = errors(t, alone.reshape(t.shape))
            except cv2.error:
                a_norm = None
            if a_norm is not None:
                row["alone"] = a_norm
                row["note"] = f"alone on ternc's input: {a_norm:.1e} (rel {a_rel:.1e})"
                if a_norm <= args.tol:
                    row["note"] += "; end-to-end error inherited from earlier layers"
                    row["drift"] = True
                elif kind == "convolutional":
                    # Still apart: let a float64 computation of the same layer decide
                    # whether this is rounding (an ill-conditioned layer) or a bug.
                    got = conv_f64(options(layer_secs[i][1]), cv_params[offsets[i]:offsets[i + 1]], prev_t, 1e-6)
                    if got is not None:
                        ref, bound = got
                        scale = max(float(np.max(np.abs(ref))), 1e-6)
                        e_t = float(np.max(np.abs(t.astype(np.float64) - ref.reshape(t.shape)))) / scale
                        e_o = float(np.max(np.abs(alone.astype(np.float64).reshape(t.shape) - ref.reshape(t.shape)))) / scale
                        e_b = bound / scale
                        row["note"] += (f"; vs float64: ternc {e_t:.1e}, opencv {e_o:.1e},"
                                        f" float32 rounding bound {e_b:.1e}")
                        if e_t <= max(args.tol, 4 * e_o, e_b):
                            row["note"] += " (rounding: ill-conditioned layer)"
                            row["drift"] = True
        if not row["norm"] <= args.tol and not row.get("drift"):
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
        flag = (" <-- drift" if r.get("drift") else " <-- FAIL") if not r["norm"] <= tol else ""
        mx = f"{r['max']:.3e}" if r["max"] is not None else ""
        rel = f"{r['rel']:.2e}" if r["rel"] is not None else "-"
        print(f"  {r['index']:>4} {r['type']:<15} {shape:<16} {mx:>11} {r['norm']:>10.2e} {rel:>10}  "
              f"{r['opencv']}{'  [' + r['note'] + ']' if r['note'] else ''}{flag}")
    cmp = [r for r in res["layers"] if r["norm"] is not None]
    if len(cmp) >= 8:
        q = [cmp[k * len(cmp) // 4:(k + 1) * len(cmp) // 4] for k in range(4)]
        prof = "  ".join(f"{g[0]['index']}-{g[-1]['index']}: {max(r['norm'] for r in g):.1e}" for g in q)
        print(f"  error by depth (max norm per quarter of the layers): {prof}")
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
    ap.add_argument("--fusion", action="store_true",
                    help="keep OpenCV's layer fusion on (its default).  Off by default: with fusion on, "
                         "the outputs of layers fused into a following concat/eltwise come back as "
                         "zeros or stale memory")
    ap.add_argument("--winograd", action="store_true",
                    help="let OpenCV use Winograd for 3x3 convolutions (its default; ~10x larger rounding error)")
    ap.add_argument("--json", metavar="FILE", help="also write all results as JSON")
    args = ap.parse_args()

    if not os.access(args.ternc, os.X_OK):
        sys.exit(f"no ternc binary at {args.ternc} (cargo build --release, or pass --ternc)")
    print(f"OpenCV {cv2.__version__}, numpy {np.__version__}, size {args.size}, tol {args.tol:g}, "
          f"eps fix {'off' if args.no_eps_fix else 'on'}, winograd {'on' if args.winograd else 'off'}, "
          f"fusion {'on' if args.fusion else 'off'}, ternc {args.ternc}")
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
    print(f"  {'model':<34} {'layers':>6} {'worst layer':<24} {'norm err':>10} {'rel err':>10} {'heads e2e':>10}  result")
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
        e2e = [r["e2e"] for r in cmp if "e2e" in r]
        e2e = f"{max(e2e):.2e}" if e2e else "-"
        drift = sum(1 for r in cmp if r.get("drift"))
        print(f"  {res['model']:<34} {len(cmp):>6} {wl:<24} {wr['norm']:>10.2e} {rel:>10} {e2e:>10}  "
              f"{'FAIL' if res['failed'] else 'ok'}{f' ({drift} layers: inherited/rounding drift)' if drift else ''}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1, default=float)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
